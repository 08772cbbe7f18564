package fakeidp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// FaultTarget says which requests the error faults of [Faults] (hangs,
// 429, 5xx) hit. Latency always applies to every protocol endpoint, and
// the consume-then-fail faults only to refresh_token grants.
type FaultTarget string

const (
	// TargetToken: every token endpoint request (the default).
	TargetToken FaultTarget = "token"
	// TargetRefresh: only token endpoint requests with the refresh_token
	// grant, so code and device flows stay clean.
	TargetRefresh FaultTarget = "refresh"
	// TargetAll: the token, device authorization, userinfo and revocation
	// endpoints.
	TargetAll FaultTarget = "all"
)

// Faults are injected failures. They are set at start ([Config.Faults]),
// at run time with [Server.SetFaults] or PUT /admin/faults. Probabilities
// are in [0, 1] and decided per request from [Config.Rand]; the zero value
// injects nothing.
//
// A request that a fault hits is still counted as the call it was (a
// refresh that got a 503 is a RefreshCall), and the fault in
// [Stats.Faults].
type Faults struct {
	// Latency delays every protocol endpoint's answer; Jitter adds a
	// uniformly random extra delay in [0, Jitter). A client that gives up
	// ends the wait.
	Latency time.Duration `json:"latency"`
	Jitter  time.Duration `json:"jitter"`

	// PHang, P429, P500, P502 and P503 are the probabilities that a
	// targeted request hangs until the client gives up (or the server is
	// closed) without an answer, or is answered with that status before it
	// is processed (nothing is consumed). Their sum must not exceed 1.
	PHang float64 `json:"p_hang"`
	P429  float64 `json:"p429"`
	P500  float64 `json:"p500"`
	P502  float64 `json:"p502"`
	P503  float64 `json:"p503"`
	// Hang makes every targeted request hang (like PHang = 1).
	Hang bool `json:"hang"`
	// RetryAfter is sent in the Retry-After header of 429 answers (default
	// 1s) and, when set, of 503 answers, rounded up to whole seconds.
	RetryAfter time.Duration `json:"retry_after"`

	// ConsumeThenFail and ConsumeThenDrop are the probabilities that a
	// refresh is carried out (the presented refresh token is used up and a
	// new pair is issued) and then its answer is lost: a 500
	// server_error, or a connection closed without an answer. The client
	// never sees the new tokens; its old refresh token is now a used one.
	// Their sum must not exceed 1.
	ConsumeThenFail float64 `json:"consume_then_fail"`
	ConsumeThenDrop float64 `json:"consume_then_drop"`
	// ConsumeThenFailNext and ConsumeThenDropNext make the next N
	// successful refreshes fail that way, deterministically (drops first).
	// They count down as they fire; [Server.Faults] shows what is left.
	ConsumeThenFailNext int `json:"consume_then_fail_next"`
	ConsumeThenDropNext int `json:"consume_then_drop_next"`

	// Target selects the requests the error faults hit; default
	// [TargetToken].
	Target FaultTarget `json:"target"`
}

// Validate checks probabilities, counts and the target.
func (f Faults) Validate() error {
	probs := []struct {
		name string
		p    float64
	}{
		{"p_hang", f.PHang}, {"p429", f.P429}, {"p500", f.P500}, {"p502", f.P502}, {"p503", f.P503},
		{"consume_then_fail", f.ConsumeThenFail}, {"consume_then_drop", f.ConsumeThenDrop},
	}
	for _, p := range probs {
		if !(p.p >= 0 && p.p <= 1) { // also rejects NaN
			return fmt.Errorf("fakeidp: fault %s = %v is not a probability in [0, 1]", p.name, p.p)
		}
	}
	if s := f.PHang + f.P429 + f.P500 + f.P502 + f.P503; s > 1+1e-9 {
		return fmt.Errorf("fakeidp: fault probabilities p_hang+p429+p500+p502+p503 = %v exceed 1", s)
	}
	if s := f.ConsumeThenFail + f.ConsumeThenDrop; s > 1+1e-9 {
		return fmt.Errorf("fakeidp: consume_then_fail+consume_then_drop = %v exceeds 1", s)
	}
	if f.Latency < 0 || f.Jitter < 0 || f.RetryAfter < 0 {
		return fmt.Errorf("fakeidp: negative fault duration")
	}
	if f.ConsumeThenFailNext < 0 || f.ConsumeThenDropNext < 0 {
		return fmt.Errorf("fakeidp: negative consume-then-fail count")
	}
	switch f.Target {
	case "", TargetToken, TargetRefresh, TargetAll:
	default:
		return fmt.Errorf("fakeidp: unknown fault target %q (want token, refresh or all)", f.Target)
	}
	return nil
}

// faultsJSON is the wire form of [Faults]: durations as Go duration
// strings ("250ms").
type faultsJSON struct {
	Latency             string      `json:"latency,omitempty"`
	Jitter              string      `json:"jitter,omitempty"`
	PHang               float64     `json:"p_hang"`
	P429                float64     `json:"p429"`
	P500                float64     `json:"p500"`
	P502                float64     `json:"p502"`
	P503                float64     `json:"p503"`
	Hang                bool        `json:"hang"`
	RetryAfter          string      `json:"retry_after,omitempty"`
	ConsumeThenFail     float64     `json:"consume_then_fail"`
	ConsumeThenDrop     float64     `json:"consume_then_drop"`
	ConsumeThenFailNext int         `json:"consume_then_fail_next"`
	ConsumeThenDropNext int         `json:"consume_then_drop_next"`
	Target              FaultTarget `json:"target,omitempty"`
}

// MarshalJSON writes durations as duration strings such as "250ms".
func (f Faults) MarshalJSON() ([]byte, error) {
	dur := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	return json.Marshal(faultsJSON{
		Latency: dur(f.Latency), Jitter: dur(f.Jitter),
		PHang: f.PHang, P429: f.P429, P500: f.P500, P502: f.P502, P503: f.P503,
		Hang: f.Hang, RetryAfter: dur(f.RetryAfter),
		ConsumeThenFail: f.ConsumeThenFail, ConsumeThenDrop: f.ConsumeThenDrop,
		ConsumeThenFailNext: f.ConsumeThenFailNext, ConsumeThenDropNext: f.ConsumeThenDropNext,
		Target: f.Target,
	})
}

// UnmarshalJSON reads durations as duration strings such as "250ms";
// absent members are zero, and unknown members (likely typos) an error.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("fakeidp: faults: %w", err)
	}
	var out Faults
	for _, d := range []struct {
		s   string
		dst *time.Duration
	}{{j.Latency, &out.Latency}, {j.Jitter, &out.Jitter}, {j.RetryAfter, &out.RetryAfter}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("fakeidp: fault duration %q: %v", d.s, err)
		}
		*d.dst = v
	}
	out.PHang, out.P429, out.P500, out.P502, out.P503 = j.PHang, j.P429, j.P500, j.P502, j.P503
	out.Hang = j.Hang
	out.ConsumeThenFail, out.ConsumeThenDrop = j.ConsumeThenFail, j.ConsumeThenDrop
	out.ConsumeThenFailNext, out.ConsumeThenDropNext = j.ConsumeThenFailNext, j.ConsumeThenDropNext
	out.Target = j.Target
	*f = out
	return nil
}

// preFault is the fault decided for a request before it is processed.
type preFault int

const (
	noFault preFault = iota
	faultHang
	fault429
	fault500
	fault502
	fault503
)

// String is the key of the fault in [Stats.Faults].
func (p preFault) String() string {
	return [...]string{"none", "hang", "429", "500", "502", "503"}[p]
}

// postFault is the fault decided for a refresh after it was carried out.
type postFault int

const (
	noPostFault postFault = iota
	consumeThenFail
	consumeThenDrop
)

// targets reports whether the error faults hit a request to endpoint with
// grant type grant ("" outside the token endpoint).
func (f *Faults) targets(endpoint, grant string) bool {
	switch f.Target {
	case TargetRefresh:
		return endpoint == epToken && grant == grantRefresh
	case TargetAll:
		return endpoint == epToken || endpoint == epDeviceAuth || endpoint == epUserinfo || endpoint == epRevoke
	default:
		return endpoint == epToken
	}
}

// decidePre picks the pre-processing fault with one draw u in [0, 1)
// over the cumulative probabilities. draw is only called when some
// probability is set, so a server without faults never reads Rand for
// them.
func (f *Faults) decidePre(draw func() float64) preFault {
	if f.Hang {
		return faultHang
	}
	if f.PHang+f.P429+f.P500+f.P502+f.P503 == 0 {
		return noFault
	}
	u := draw()
	for _, c := range []struct {
		p float64
		f preFault
	}{{f.PHang, faultHang}, {f.P429, fault429}, {f.P500, fault500}, {f.P502, fault502}, {f.P503, fault503}} {
		if u < c.p {
			return c.f
		}
		u -= c.p
	}
	return noFault
}

// decidePost picks the fault for a carried-out refresh, counting the
// deterministic "next N" counters down first. It mutates f, so it is
// called with the server's lock held.
func (f *Faults) decidePost(draw func() float64) postFault {
	switch {
	case f.ConsumeThenDropNext > 0:
		f.ConsumeThenDropNext--
		return consumeThenDrop
	case f.ConsumeThenFailNext > 0:
		f.ConsumeThenFailNext--
		return consumeThenFail
	case f.ConsumeThenFail+f.ConsumeThenDrop == 0:
		return noPostFault
	}
	u := draw()
	if u < f.ConsumeThenFail {
		return consumeThenFail
	}
	if u < f.ConsumeThenFail+f.ConsumeThenDrop {
		return consumeThenDrop
	}
	return noPostFault
}

// delay returns the latency to inject for one request.
func (f *Faults) delay(draw func() float64) time.Duration {
	d := f.Latency
	if f.Jitter > 0 {
		d += time.Duration(draw() * float64(f.Jitter))
	}
	return d
}

// retryAfterSeconds is the Retry-After value, whole seconds rounded up.
func (f *Faults) retryAfterSeconds() int64 {
	d := f.RetryAfter
	if d <= 0 {
		d = DefaultRetryAfter
	}
	return int64((d + time.Second - 1) / time.Second)
}

// float64From turns 8 random bytes into a float64 uniform in [0, 1).
func float64From(b [8]byte) float64 {
	return float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
}
