package fakeidp_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
)

func TestRateLimitHasRetryAfter(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{P429: 1, RetryAfter: 1500 * time.Millisecond}})
	tok := MustIssue(t, s, "alice")
	r := Refresh(t, s, tok.RefreshToken)
	wantError(t, r, http.StatusTooManyRequests, "rate_limited")
	if got := r.Header.Get("Retry-After"); got != "2" {
		t.Fatalf("Retry-After = %q, want 2 (1.5s rounded up)", got)
	}
	// Nothing was consumed: with the fault gone the token still works.
	s.SetFaults(fakeidp.Faults{})
	wantStatus(t, Refresh(t, s, tok.RefreshToken), http.StatusOK)
	st := s.Stats()
	if st.Faults["429"] != 1 || st.RefreshCalls != 2 || st.Rotations != 1 || st.ReuseDetections != 0 ||
		st.Families[tok.Family].RefreshCalls != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestServerErrorFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		faults fakeidp.Faults
		status int
	}{
		{fakeidp.Faults{P500: 1}, http.StatusInternalServerError},
		{fakeidp.Faults{P502: 1}, http.StatusBadGateway},
		{fakeidp.Faults{P503: 1}, http.StatusServiceUnavailable},
		{fakeidp.Faults{P503: 1, RetryAfter: 5 * time.Second}, http.StatusServiceUnavailable},
	} {
		s := MustStart(t, fakeidp.Config{Faults: tc.faults})
		tok := MustIssue(t, s, "alice")
		r := Refresh(t, s, tok.RefreshToken)
		wantStatus(t, r, tc.status)
		if want := map[bool]string{true: "5", false: ""}[tc.faults.RetryAfter > 0]; r.Header.Get("Retry-After") != want {
			t.Errorf("%d: Retry-After = %q, want %q", tc.status, r.Header.Get("Retry-After"), want)
		}
		s.SetFaults(fakeidp.Faults{})
		wantStatus(t, Refresh(t, s, tok.RefreshToken), http.StatusOK)
		if st := s.Stats(); st.Faults[strconv.Itoa(tc.status)] != 1 || st.Rotations != 1 {
			t.Fatalf("%d: stats %+v", tc.status, st)
		}
	}
}

func TestFaultProbabilityIsDrawnFromRand(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{P503: 0.5}})
	tok := MustIssue(t, s, "alice")
	n503 := 0
	for range 200 {
		if Refresh(t, s, "fakeidp_rt_unknown").Status == http.StatusServiceUnavailable {
			n503++
		}
	}
	if n503 < 60 || n503 > 140 {
		t.Fatalf("%d of 200 requests got 503 with p=0.5", n503)
	}
	if st := s.Stats(); st.Faults["503"] != int64(n503) {
		t.Fatalf("Faults[503] = %d, want %d", st.Faults["503"], n503)
	}
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusOK)
}

func TestHangUntilClientGivesUp(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{Hang: true}})
	tok := MustIssue(t, s, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoints().Token,
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(fakeidp.DefaultClientID, fakeidp.DefaultClientSecret)
	_, err := http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging request: err = %v, want deadline exceeded", err)
	}
	s.SetFaults(fakeidp.Faults{})
	wantStatus(t, Refresh(t, s, tok.RefreshToken), http.StatusOK)
	if st := s.Stats(); st.Faults["hang"] != 1 || st.Rotations != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestCloseEndsHangingRequests(t *testing.T) {
	t.Parallel()
	events := make(chan string, 10)
	s, err := fakeidp.Start(fakeidp.Config{Faults: fakeidp.Faults{Hang: true}, Logger: slog.New(&eventHandler{events})})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(s.Endpoints().Token, "application/x-www-form-urlencoded", strings.NewReader("grant_type=refresh_token"))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	// Close as soon as the request hangs.
	for ev := range events {
		if ev == "fakeidp: injecting fault" {
			break
		}
	}
	s.Close()
	if err := <-done; err == nil {
		t.Fatal("request to a hanging server that closed succeeded")
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{Latency: 50 * time.Millisecond, Jitter: 10 * time.Millisecond}})
	tok := MustIssue(t, s, "alice")
	start := time.Now()
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusOK)
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("answer after %v, want at least 50ms", d)
	}
	start = time.Now()
	wantStatus(t, MustGet(t, s, fakeidp.PathStats), http.StatusOK)
	if d := time.Since(start); d >= 50*time.Millisecond {
		t.Errorf("stats answer after %v: latency must not hit the stats endpoint", d)
	}
	if st := s.Stats(); st.Faults["latency"] != 1 {
		t.Fatalf("faults: %v", st.Faults)
	}
}

func TestConsumeThenFail(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{ConsumeThenFailNext: 1}})
	tok := MustIssue(t, s, "alice")
	wantError(t, Refresh(t, s, tok.RefreshToken), http.StatusInternalServerError, "server_error")
	// The rotation happened: the family moved on, and the client's token is
	// now a used one, so presenting it again is a reuse.
	fam, _ := s.FamilyOf(tok.RefreshToken)
	if fam.Generation != 2 {
		t.Fatalf("generation after consume-then-fail = %d, want 2", fam.Generation)
	}
	if f := s.Faults(); f.ConsumeThenFailNext != 0 {
		t.Fatalf("counter did not count down: %+v", f)
	}
	wantError(t, Refresh(t, s, tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
	st := s.Stats()
	if st.ConsumedThenFailed != 1 || st.Rotations != 1 || st.RefreshSuccesses != 0 || st.ReuseDetections != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestConsumeThenFailProbability(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{ConsumeThenFail: 1}})
	tok := MustIssue(t, s, "alice")
	wantStatus(t, Refresh(t, s, tok.RefreshToken), http.StatusInternalServerError)
	if st := s.Stats(); st.ConsumedThenFailed != 1 || st.Rotations != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestConsumeThenDrop(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{ConsumeThenDropNext: 1}})
	tok := MustIssue(t, s, "alice")
	req, _ := http.NewRequest(http.MethodPost, s.Endpoints().Token,
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(fakeidp.DefaultClientID, fakeidp.DefaultClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("dropped connection answered %d", resp.StatusCode)
	}
	fam, _ := s.FamilyOf(tok.RefreshToken)
	st := s.Stats()
	if fam.Generation != 2 || st.ConsumedThenDropped != 1 || st.Rotations != 1 {
		t.Fatalf("family %+v; stats %+v", fam, st)
	}
	// The next refresh (with the lost token's family) is unaffected.
	wantError(t, Refresh(t, s, tok.RefreshToken), http.StatusBadRequest, "invalid_grant")
}

func TestFaultTargets(t *testing.T) {
	t.Parallel()
	// TargetRefresh: code and device flows are not hit.
	s := MustStart(t, fakeidp.Config{Faults: fakeidp.Faults{P503: 1, Target: fakeidp.TargetRefresh}})
	tok := MustIssue(t, s, "alice")
	r := MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, defaultAuth)
	wantError(t, r, http.StatusBadRequest, "invalid_grant")
	wantStatus(t, Refresh(t, s, tok.RefreshToken), http.StatusServiceUnavailable)
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusOK)

	// TargetAll: userinfo too.
	s.SetFaults(fakeidp.Faults{P503: 1, Target: fakeidp.TargetAll})
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusServiceUnavailable)
	// Default (token endpoint): every grant, not userinfo.
	s.SetFaults(fakeidp.Faults{P503: 1})
	r = MustPost(t, s, fakeidp.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, defaultAuth)
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantStatus(t, Userinfo(t, s, tok.AccessToken), http.StatusOK)
}

func TestAdminFaultsEndpoint(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	put := func(body string) Resp {
		req, _ := http.NewRequest(http.MethodPut, s.Endpoints().AdminFaults, strings.NewReader(body))
		return Do(t, req)
	}
	r := put(`{"latency":"5ms","p429":1,"retry_after":"3s","consume_then_fail_next":2,"target":"refresh"}`)
	wantStatus(t, r, http.StatusOK)
	want := fakeidp.Faults{Latency: 5 * time.Millisecond, P429: 1, RetryAfter: 3 * time.Second, ConsumeThenFailNext: 2, Target: fakeidp.TargetRefresh}
	if got := s.Faults(); got != want {
		t.Fatalf("faults = %+v, want %+v", got, want)
	}
	g := MustGet(t, s, fakeidp.PathAdminFaults)
	if g.Str("latency") != "5ms" || g.JSON["p429"] != 1.0 || g.Str("target") != "refresh" {
		t.Fatalf("GET faults: %s", g.Body)
	}
	tok := MustIssue(t, s, "alice")
	if r := Refresh(t, s, tok.RefreshToken); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "3" {
		t.Fatalf("refresh under PUT faults: %d %q", r.Status, r.Header.Get("Retry-After"))
	}
	for _, bad := range []string{`{"p500":1.5}`, `{"p500":0.6,"p503":0.6}`, `{"latency":"soon"}`, `{"target":"x"}`, `{"nope":1}`, `{`} {
		wantStatus(t, put(bad), http.StatusBadRequest)
	}
	wantStatus(t, put(`{}`), http.StatusOK)
	if got := s.Faults(); got != (fakeidp.Faults{}) {
		t.Fatalf("faults after PUT {} = %+v", got)
	}
}

// eventHandler sends the message of every log record to a channel, so a
// test can wait for what the server is doing.
type eventHandler struct{ ch chan<- string }

func (h *eventHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *eventHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r.Message:
	default:
	}
	return nil
}
func (h *eventHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *eventHandler) WithGroup(string) slog.Handler      { return h }
