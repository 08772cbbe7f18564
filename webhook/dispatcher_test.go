package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/store/storetest"
	"github.com/tokenbroker/tokenbroker/webhook"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, func() error { return goleak.Find() }))
}

// request is one request a receiver got.
type request struct {
	ID      string
	Body    []byte
	Payload webhook.Payload
	Err     error // the reference library's verdict on the signature
}

// receiver is a webhook receiver on loopback that checks every signature
// with the Standard Webhooks reference library and answers with answer
// (default 204). It reports each request on got.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	wh     *standardwebhooks.Webhook
	// ignoreTime verifies without the timestamp tolerance, for tests whose
	// dispatcher runs on a far-off injected clock.
	ignoreTime bool
	answer     func(r *request, n int) int // n: 1-based count of requests with this id
	got        chan *request

	mu    sync.Mutex
	count map[string]int
}

func newReceiver(t *testing.T, answer func(r *request, n int) int) *receiver {
	t.Helper()
	rc := &receiver{t: t, secret: webhook.NewSecret(), answer: answer, got: make(chan *request, 1000), count: map[string]int{}}
	var err error
	if rc.wh, err = standardwebhooks.NewWebhook(rc.secret); err != nil {
		t.Fatal(err)
	}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := &request{ID: r.Header.Get(webhook.HeaderID), Body: body}
	if rc.ignoreTime {
		req.Err = rc.wh.VerifyIgnoringTimestamp(body, r.Header)
	} else {
		req.Err = rc.wh.Verify(body, r.Header)
	}
	if err := json.Unmarshal(body, &req.Payload); err != nil && req.Err == nil {
		req.Err = err
	}
	rc.mu.Lock()
	rc.count[req.ID]++
	n := rc.count[req.ID]
	rc.mu.Unlock()
	status := http.StatusNoContent
	if rc.answer != nil {
		status = rc.answer(req, n)
	}
	rc.got <- req
	w.WriteHeader(status)
}

// next waits for the next request.
func (rc *receiver) next(ctx context.Context) *request {
	rc.t.Helper()
	select {
	case r := <-rc.got:
		if r.Err != nil {
			rc.t.Fatalf("request %s: signature or body rejected: %v", r.ID, r.Err)
		}
		return r
	case <-ctx.Done():
		rc.t.Fatalf("no webhook request arrived: %v", ctx.Err())
		return nil
	}
}

func (rc *receiver) endpoint(id string, events ...string) webhook.EndpointConfig {
	return webhook.EndpointConfig{ID: id, URL: rc.srv.URL + "/hooks", Secret: rc.secret, Events: events}
}

func endpoints(t *testing.T, ecs ...webhook.EndpointConfig) []*webhook.Endpoint {
	t.Helper()
	eps, err := webhook.Config{Webhooks: ecs}.Endpoints()
	if err != nil {
		t.Fatal(err)
	}
	return eps
}

// fastOptions are options for tests: short backoff and polls on the real
// clock, so that a retry comes quickly.
func fastOptions(owner string, m *webhook.Metrics) webhook.Options {
	return webhook.Options{
		Owner: owner, Concurrency: 4, Timeout: 5 * time.Second, PollInterval: 20 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Metrics: m,
		Jitter: func() float64 { return 0.5 },
	}
}

func start(t *testing.T, st tokenbroker.OutboxStore, eps []*webhook.Endpoint, opts webhook.Options) *webhook.Dispatcher {
	t.Helper()
	d, err := webhook.New(st, eps, opts)
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(d.Close)
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitStats waits until the outbox's gauges satisfy ok. The dispatcher
// records an outcome just after the receiver answered, so there is no
// event to wait on but the store's own state; the wait is bounded.
func waitStats(t *testing.T, ctx context.Context, st tokenbroker.OutboxStore, ok func(tokenbroker.OutboxStats) bool) tokenbroker.OutboxStats {
	t.Helper()
	for {
		s, err := st.OutboxStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok(s) {
			return s
		}
		select {
		case <-ctx.Done():
			t.Fatalf("outbox never reached the wanted state; last %+v", s)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestDeliversSignedEventsToTheEndpointsThatWantThem(t *testing.T) {
	ctx := testCtx(t)
	st := testdb.SQLite(t)
	all, filtered := newReceiver(t, nil), newReceiver(t, nil)
	reg := prometheus.NewRegistry()
	m := webhook.NewMetrics(reg, st, nil)
	start(t, st, endpoints(t, all.endpoint("all"), filtered.endpoint("pager", "link.reauth_required")), fastOptions("r1", m))

	storetest.MustEnqueue(t, st,
		tokenbroker.Event{Type: tokenbroker.EventLinkCreated, UserID: "alice", ProviderID: "github"},
		tokenbroker.Event{Type: tokenbroker.EventLinkReauthRequired, UserID: "alice", ProviderID: "github",
			Reason: "revoked", Detail: "invalid_grant: The refresh token was revoked"},
		tokenbroker.Event{Type: tokenbroker.EventProviderMisconfigured, ProviderID: "gitlab", Reason: "invalid_client"},
	)
	seen := map[tokenbroker.EventType]*request{}
	for range 3 {
		r := all.next(ctx)
		seen[r.Payload.Type] = r
		if r.ID == "" || r.ID != r.Payload.Data.EventID {
			t.Fatalf("webhook-id %q, payload event_id %q", r.ID, r.Payload.Data.EventID)
		}
	}
	re := seen[tokenbroker.EventLinkReauthRequired]
	if re == nil || re.Payload.Data.UserID != "alice" || re.Payload.Data.ProviderID != "github" ||
		re.Payload.Data.Reason != "revoked" || re.Payload.Timestamp.IsZero() {
		t.Fatalf("link.reauth_required payload = %s", re.Body)
	}
	if p := seen[tokenbroker.EventProviderMisconfigured]; p == nil || p.Payload.Data.UserID != "" || p.Payload.Data.ProviderID != "gitlab" {
		t.Fatalf("provider.misconfigured payload missing or wrong: %v", seen)
	}
	if r := filtered.next(ctx); r.Payload.Type != tokenbroker.EventLinkReauthRequired || r.ID != re.ID {
		t.Fatalf("the filtered endpoint got %s %s", r.Payload.Type, r.ID)
	}
	waitStats(t, ctx, st, func(s tokenbroker.OutboxStats) bool { return s.Pending == 0 })
	if len(all.got)+len(filtered.got) != 0 {
		t.Fatalf("extra requests: %d and %d", len(all.got), len(filtered.got))
	}
	if n := counter(t, reg, "all", "delivered"); n != 3 {
		t.Fatalf("delivered{all} = %v, want 3", n)
	}
}

// counter reads tokenbroker_webhook_deliveries_total{endpoint, outcome}.
func counter(t *testing.T, reg *prometheus.Registry, endpoint, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tokenbroker_webhook_deliveries_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["endpoint"] == endpoint && labels["outcome"] == outcome {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestRetriesAfter500(t *testing.T) {
	ctx := testCtx(t)
	st := testdb.SQLite(t)
	rc := newReceiver(t, func(r *request, n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	reg := prometheus.NewRegistry()
	start(t, st, endpoints(t, rc.endpoint("crm")), fastOptions("r1", webhook.NewMetrics(reg, st, nil)))
	storetest.MustEnqueue(t, st, storetest.NewEvent(tokenbroker.EventLinkRecovered, "alice", "github"))

	first, second := rc.next(ctx), rc.next(ctx)
	if first.ID != second.ID || string(first.Body) != string(second.Body) {
		t.Fatalf("the retry differs: %s %s / %s %s", first.ID, first.Body, second.ID, second.Body)
	}
	waitStats(t, ctx, st, func(s tokenbroker.OutboxStats) bool { return s.Pending == 0 })
	if s := waitStats(t, ctx, st, func(tokenbroker.OutboxStats) bool { return true }); s.Dead != 0 {
		t.Fatalf("stats = %+v; want no dead letter", s)
	}
	for outcome, want := range map[string]float64{"retry": 1, "delivered": 1} {
		if n := counter(t, reg, "crm", outcome); n != want {
			t.Errorf("deliveries{%s} = %v, want %v", outcome, n, want)
		}
	}
}

func TestGoneStopsAtOnce(t *testing.T) {
	ctx := testCtx(t)
	st := testdb.SQLite(t)
	rc := newReceiver(t, func(*request, int) int { return http.StatusGone })
	start(t, st, endpoints(t, rc.endpoint("crm")), fastOptions("r1", nil))
	storetest.MustEnqueue(t, st, storetest.NewEvent(tokenbroker.EventLinkDeleted, "alice", "github"))

	r := rc.next(ctx)
	waitStats(t, ctx, st, func(s tokenbroker.OutboxStats) bool { return s.Dead == 1 && s.Pending == 0 })
	dead, err := st.ListDeadLetters(ctx, tokenbroker.DeadLetterFilter{})
	if err != nil || len(dead) != 1 {
		t.Fatalf("ListDeadLetters = %v, %v", dead, err)
	}
	if d := dead[0]; d.Event.ID != r.ID || d.LastStatus != http.StatusGone || d.Attempts != 1 || !strings.Contains(d.LastError, "410") {
		t.Fatalf("dead letter = %+v; want the event after one attempt, status 410", d)
	}
	// A dead letter is never claimed again: the one request is all.
	if len(rc.got) != 0 {
		t.Fatalf("%d more requests after 410", len(rc.got))
	}
}

// clock is a settable clock for the retry window.
type clock struct{ t atomic.Int64 }

func newClock(t time.Time) *clock    { c := &clock{}; c.t.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time      { return time.Unix(0, c.t.Load()) }
func (c *clock) Add(d time.Duration) { c.t.Add(int64(d)) }

func TestDeadLetterAfterTheRetryWindow(t *testing.T) {
	ctx := testCtx(t)
	st := testdb.SQLite(t)
	clk := newClock(time.Now())
	rc := newReceiver(t, func(r *request, n int) int {
		if n == 2 {
			// The second attempt fails a day after the event: past the
			// window, so it is the last.
			clk.Add(25 * time.Hour)
		}
		return http.StatusServiceUnavailable
	})
	rc.ignoreTime = true
	reg := prometheus.NewRegistry()
	opts := fastOptions("r1", webhook.NewMetrics(reg, st, nil))
	opts.Now = clk.Now
	opts.MinBackoff, opts.MaxBackoff = 10*time.Millisecond, 10*time.Millisecond
	start(t, st, endpoints(t, rc.endpoint("crm")), opts)
	storetest.MustEnqueue(t, st, storetest.NewEvent(tokenbroker.EventLinkDegraded, "alice", "github"))

	first, second := rc.next(ctx), rc.next(ctx)
	if first.ID != second.ID {
		t.Fatalf("ids %s, %s", first.ID, second.ID)
	}
	waitStats(t, ctx, st, func(s tokenbroker.OutboxStats) bool { return s.Dead == 1 && s.Pending == 0 })
	dead, err := st.ListDeadLetters(ctx, tokenbroker.DeadLetterFilter{Endpoint: "crm"})
	if err != nil || len(dead) != 1 || dead[0].Attempts != 2 || dead[0].LastStatus != 503 ||
		!strings.Contains(dead[0].LastError, "retry window") {
		t.Fatalf("dead letters = %+v, %v", dead, err)
	}
	for outcome, want := range map[string]float64{"retry": 1, "dead": 1} {
		if n := counter(t, reg, "crm", outcome); n != want {
			t.Errorf("deliveries{%s} = %v, want %v", outcome, n, want)
		}
	}
	text, err := testutil.GatherAndCount(reg, "tokenbroker_webhook_dead_letters", "tokenbroker_webhook_outbox_pending")
	if err != nil || text != 2 {
		t.Fatalf("outbox gauges: %d series, %v", text, err)
	}
}

// A receiver that hangs holds one worker until the attempt's timeout; the
// other endpoint's deliveries go on meanwhile.
func TestHangingReceiverDoesNotHoldUpOthers(t *testing.T) {
	ctx := testCtx(t)
	st := testdb.SQLite(t)
	release := make(chan struct{})
	hanging := newReceiver(t, func(*request, int) int { <-release; return http.StatusOK })
	t.Cleanup(func() { close(release) }) // before the server closes (cleanups run last-in first)
	ok := newReceiver(t, nil)
	start(t, st, endpoints(t, hanging.endpoint("slow"), ok.endpoint("fast")), fastOptions("r1", nil))
	for _, u := range []string{"alice", "bob", "carol"} {
		storetest.MustEnqueue(t, st, storetest.NewEvent(tokenbroker.EventLinkCreated, u, "github"))
	}
	for range 3 {
		ok.next(ctx)
	}
}

// freezer is a transport that sends a request, lets the receiver answer,
// and then never returns, like a replica that died between the
// receiver's answer and recording it: the outbox still says pending and
// the lease is the only thing that tells the others to wait.
type freezer struct {
	froze   chan string   // the webhook-id of each frozen request
	release chan struct{} // closed at cleanup
}

func (f *freezer) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	f.froze <- r.Header.Get(webhook.HeaderID)
	<-f.release
	return nil, context.Canceled
}

func TestSeveralDispatchersOnePostgresEachEventOnceAtATime(t *testing.T) {
	ctx := testCtx(t)
	stores := testdb.PostgresReplicas(t, 3, "")
	var (
		mu       sync.Mutex
		inFlight = map[string]bool{}
	)
	rc := newReceiver(t, func(r *request, n int) int {
		mu.Lock()
		defer mu.Unlock()
		if inFlight[r.ID] {
			t.Errorf("event %s sent by two dispatchers at once", r.ID)
		}
		inFlight[r.ID] = true
		return http.StatusOK
	})
	done := func(id string) { mu.Lock(); delete(inFlight, id); mu.Unlock() }
	eps := endpoints(t, rc.endpoint("crm"))

	fz := &freezer{froze: make(chan string, 10), release: make(chan struct{})}
	opts := func(owner string) webhook.Options {
		o := fastOptions(owner, nil)
		o.Timeout, o.LeaseTTL = time.Second, 1500*time.Millisecond
		return o
	}
	// The doomed replica starts first and alone, so it holds some events
	// when it freezes.
	doomed := opts("doomed")
	doomed.Client = webhook.NewClient(fz)
	doomed.Concurrency = 1
	start(t, stores[0], eps, doomed)
	t.Cleanup(func() { close(fz.release) }) // before the doomed dispatcher's Close

	const events = 20
	var evs []tokenbroker.Event
	for i := range events {
		evs = append(evs, storetest.NewEvent(tokenbroker.EventLinkCreated, "user"+string(rune('a'+i)), "github"))
	}
	storetest.MustEnqueue(t, stores[0], evs...)
	r := rc.next(ctx)
	done(r.ID)
	frozen := <-fz.froze // the receiver answered; the doomed replica never records it
	if frozen != r.ID {
		t.Fatalf("froze %s, the receiver saw %s", frozen, r.ID)
	}
	start(t, stores[1], eps, opts("r1"))
	start(t, stores[2], eps, opts("r2"))

	seen := map[string]int{r.ID: 1}
	for len(seen) < events || seen[frozen] < 2 {
		r := rc.next(ctx)
		done(r.ID)
		seen[r.ID]++
	}
	waitStats(t, ctx, stores[1], func(s tokenbroker.OutboxStats) bool { return s.Pending == 0 && s.Dead == 0 })
	for id, n := range seen {
		if n != 1 && id != frozen {
			t.Errorf("event %s delivered %d times; only the frozen holder's event may come twice", id, n)
		}
	}
	if seen[frozen] != 2 {
		t.Errorf("the frozen holder's event came %d times, want 2 (once from it, once after its lease ended)", seen[frozen])
	}
	if len(rc.got) != 0 {
		t.Fatalf("%d requests more than expected", len(rc.got))
	}
}
