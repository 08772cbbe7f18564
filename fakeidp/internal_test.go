package fakeidp

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"
)

func TestDecidePre(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Faults
		u    float64
		want preFault
	}{
		{"none", Faults{}, 0, noFault},
		{"hang flag", Faults{Hang: true}, 0.99, faultHang},
		{"p_hang", Faults{PHang: 0.1, P429: 0.2}, 0.05, faultHang},
		{"p429", Faults{PHang: 0.1, P429: 0.2}, 0.25, fault429},
		{"beyond", Faults{PHang: 0.1, P429: 0.2}, 0.31, noFault},
		{"p500", Faults{P500: 0.5, P502: 0.25, P503: 0.25}, 0.4, fault500},
		{"p502", Faults{P500: 0.5, P502: 0.25, P503: 0.25}, 0.6, fault502},
		{"p503", Faults{P500: 0.5, P502: 0.25, P503: 0.25}, 0.99, fault503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			draws := 0
			got := tc.f.decidePre(func() float64 { draws++; return tc.u })
			if got != tc.want {
				t.Fatalf("decidePre = %v, want %v", got, tc.want)
			}
			if tc.name == "none" && draws != 0 {
				t.Fatal("drew randomness without faults")
			}
		})
	}
}

func TestDecidePost(t *testing.T) {
	f := Faults{ConsumeThenDropNext: 1, ConsumeThenFailNext: 2}
	never := func() float64 { t.Fatal("drew randomness for counted faults"); return 0 }
	for i, want := range []postFault{consumeThenDrop, consumeThenFail, consumeThenFail, noPostFault} {
		if got := f.decidePost(never); got != want {
			t.Fatalf("call %d: %v, want %v", i, got, want)
		}
	}
	f = Faults{ConsumeThenFail: 0.3, ConsumeThenDrop: 0.3}
	for _, tc := range []struct {
		u    float64
		want postFault
	}{{0.1, consumeThenFail}, {0.5, consumeThenDrop}, {0.7, noPostFault}} {
		if got := f.decidePost(func() float64 { return tc.u }); got != tc.want {
			t.Fatalf("u=%v: %v, want %v", tc.u, got, tc.want)
		}
	}
}

func TestFaultsValidate(t *testing.T) {
	for _, bad := range []Faults{
		{P500: -0.1}, {P503: 1.1}, {P500: 0.5, P429: 0.6}, {ConsumeThenFail: 0.6, ConsumeThenDrop: 0.5},
		{Latency: -1}, {ConsumeThenFailNext: -1}, {Target: "nope"},
	} {
		if bad.Validate() == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
	if err := (Faults{P500: 0.5, P503: 0.5, Target: TargetAll, Latency: time.Second}).Validate(); err != nil {
		t.Errorf("valid faults: %v", err)
	}
}

func TestFaultsJSONRoundTrip(t *testing.T) {
	in := Faults{Latency: 250 * time.Millisecond, Jitter: time.Second, P429: 0.25, RetryAfter: 2 * time.Second,
		PHang: 0.1, ConsumeThenDrop: 0.5, ConsumeThenFailNext: 3, Target: TargetRefresh}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Faults
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("round trip: %+v != %+v (%s)", out, in, b)
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{{0, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {30 * time.Second, 30}} {
		if got := (&Faults{RetryAfter: tc.d}).retryAfterSeconds(); got != tc.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, bad := range []Config{
		{AccessTokenTTL: 500 * time.Millisecond},
		{Flavor: "gitlab"},
		{ClientAuth: "jwt"},
		{OverlappingRefresh: "retry"},
		{RedirectURIs: []string{"/relative"}},
		{RedirectURIs: []string{"http://x/cb#frag"}},
		{BaseURL: "ftp://x"},
		{Users: []User{{ID: "1", Login: "a"}, {ID: "1", Login: "b"}}},
		{Users: []User{{ID: "1"}}},
		{AutoApprove: "nobody"},
		{ReuseGracePeriod: -1},
		{Faults: Faults{P500: 2}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientID != DefaultClientID || c.ClientSecret != DefaultClientSecret || c.AccessTokenTTL != time.Hour ||
		c.Flavor != FlavorStandard || c.ClientAuth != ClientAuthBoth || c.OverlappingRefresh != OverlapReuse || len(c.Users) != 3 || c.DeviceInterval != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if c, _ := (Config{PublicClient: true}).withDefaults(); c.ClientSecret != "" {
		t.Fatal("a public client got the default secret")
	}
}

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want User
		ok   bool
	}{
		{"42", User{ID: "42", Login: "42", Email: "42@example.com"}, true},
		{"42:zoe", User{ID: "42", Login: "zoe", Email: "zoe@example.com"}, true},
		{"42:zoe:z@corp.test", User{ID: "42", Login: "zoe", Email: "z@corp.test"}, true},
		{"", User{}, false},
		{"1:2:3:4", User{}, false},
	} {
		got, err := ParseUser(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseUser(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func TestNormalizeUserCode(t *testing.T) {
	for in, want := range map[string]string{"BCDF-GHJK": "BCDFGHJK", "bcdf ghjk": "BCDFGHJK", " b-c-d-f ": "BCDF", "": ""} {
		if got := normalizeUserCode(in); got != want {
			t.Errorf("normalizeUserCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidVerifier(t *testing.T) {
	for v, want := range map[string]bool{
		"": false, "short": false,
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ":  true,  // 43
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP":   false, // 42
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN-._~": true,
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP+":  false,
	} {
		if got := validVerifier(v); got != want {
			t.Errorf("validVerifier(%q) = %v", v, got)
		}
	}
}

func TestIsLoopbackRedirect(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1/cb": true, "http://127.0.0.1:8080/cb": true, "https://localhost:1/x": true,
		"http://[::1]:9/cb": true, "http://127.1.2.3/cb": true,
		"http://example.com/cb": false, "http://127.0.0.1/cb#x": false, "myapp://127.0.0.1/cb": false,
		"http://localhost.example.com/": false,
	} {
		if got := isLoopbackRedirect(u); got != want {
			t.Errorf("isLoopbackRedirect(%q) = %v", u, got)
		}
	}
}

func TestFloat64From(t *testing.T) {
	if got := float64From([8]byte{}); got != 0 {
		t.Fatalf("zero bytes: %v", got)
	}
	if got := float64From([8]byte{255, 255, 255, 255, 255, 255, 255, 255}); got >= 1 {
		t.Fatalf("max bytes: %v, want < 1", got)
	}
}

func TestSweepForgetsExpiredState(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := New(Config{Now: func() time.Time { return now }, AccessTokenTTL: time.Minute, ReuseGracePeriod: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, err := s.IssueToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	tok, outcome, _, err := s.useRefreshLocked(first.RefreshToken, s.cfg.ClientID, "", s.tokenRequests)
	s.mu.Unlock()
	if err != nil || outcome != refreshRotated {
		t.Fatalf("rotate: %v %v", outcome, err)
	}
	// Tokens held: 2 pairs so far; the loop and bob's pair make minSweep.
	for range minSweep/2 - 3 {
		if _, err := s.IssueToken("alice"); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Minute)
	live, err := s.IssueToken("bob") // reaches minSweep tokens: sweeps
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.access) != 1 || s.access[live.AccessToken] == nil {
		t.Fatalf("%d access tokens after the sweep, want only the live one", len(s.access))
	}
	if s.refresh[first.RefreshToken].successor != nil {
		t.Fatal("grace replay pair kept after the grace period")
	}
	if s.refresh[tok.RefreshToken] == nil || s.refresh[first.RefreshToken] == nil {
		t.Fatal("refresh tokens swept: reuse detection needs them")
	}
	if want := 2 * (1 + minSweep/2); s.nextSweep != want {
		t.Fatalf("nextSweep = %d, want %d", s.nextSweep, want)
	}
}

func TestFormUser(t *testing.T) {
	for _, c := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"username": {" bob "}, "login": {"alice"}}, "bob"},
		{url.Values{"username": {"  "}, "login": {"alice"}}, "alice"},
		{url.Values{"login": {"alice"}}, "alice"},
		{url.Values{}, ""},
	} {
		if got := formUser(c.form); got != c.want {
			t.Errorf("formUser(%v) = %q, want %q", c.form, got, c.want)
		}
	}
}
