package fakeidp

import (
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"time"
)

// Stats are the server's counters, as [Server.Stats] and GET /stats
// return them. Counters count since the start or the last
// [Server.ResetStats]; Families is live state and is not reset.
type Stats struct {
	// Requests counts requests per endpoint: authorize, token,
	// device_authorization, device_verification, userinfo, revoke,
	// discovery, jwks.
	Requests map[string]int64 `json:"requests"`
	// TokenRequests counts token endpoint requests per grant_type
	// (authorization_code, refresh_token, the device code URN, or "other").
	TokenRequests map[string]int64 `json:"token_requests"`

	// RefreshCalls counts refresh_token grant requests received, whatever
	// their fate: this is "how many times did clients call the provider to
	// refresh".
	RefreshCalls int64 `json:"refresh_calls"`
	// RefreshSuccesses counts refreshes answered with a new pair.
	RefreshSuccesses int64 `json:"refresh_successes"`
	// RefreshFailures counts refreshes answered invalid_grant (unknown,
	// expired, revoked, reused or wrong-scope refresh tokens).
	RefreshFailures int64 `json:"refresh_failures"`
	// Rotations counts refresh tokens used up, including those whose
	// answer a consume-then-fail fault then lost.
	Rotations int64 `json:"rotations"`
	// ReuseDetections counts presentations of an already used refresh
	// token outside the grace period (RFC 9700 §4.14.2).
	ReuseDetections int64 `json:"reuse_detections"`
	// GraceReuses counts replays within [Config.ReuseGracePeriod].
	GraceReuses int64 `json:"grace_reuses"`
	// OverlappingRefreshes counts refreshes that overlapped the rotation
	// of their token, under a [Config.OverlappingRefresh] other than
	// [OverlapReuse].
	OverlappingRefreshes int64 `json:"overlapping_refreshes"`
	// FamiliesRevoked counts token families revoked, by reuse detection,
	// RFC 7009 revocation, a replayed code or [Server.RevokeFamilyOf].
	FamiliesRevoked int64 `json:"families_revoked"`
	// ConsumedThenFailed and ConsumedThenDropped count refreshes whose
	// answer a fault replaced by a 500 or a dropped connection.
	ConsumedThenFailed  int64 `json:"consumed_then_failed"`
	ConsumedThenDropped int64 `json:"consumed_then_dropped"`

	// Authorizations counts codes issued; CodeExchanges codes redeemed.
	Authorizations int64 `json:"authorizations"`
	CodeExchanges  int64 `json:"code_exchanges"`
	// DeviceAuthorizations counts device codes issued, DevicePolls device
	// token requests, DeviceGrants device codes redeemed for tokens.
	DeviceAuthorizations int64 `json:"device_authorizations"`
	DevicePolls          int64 `json:"device_polls"`
	DeviceGrants         int64 `json:"device_grants"`
	// Revocations counts RFC 7009 revocation requests.
	Revocations int64 `json:"revocations"`
	// Faults counts injected faults by kind: latency, hang, 429, 500, 502,
	// 503.
	Faults map[string]int64 `json:"faults"`

	// Families is the state of every token family, by family id.
	Families map[string]FamilyStats `json:"families"`
}

// FamilyStats is the state of one token family.
type FamilyStats struct {
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	// Generation is the number of pairs issued in the family (1 after the
	// first grant, +1 per rotation).
	Generation int `json:"generation"`
	// Rotations is the number of refresh tokens used up.
	Rotations int `json:"rotations"`
	// RefreshCalls counts refresh requests that presented one of the
	// family's refresh tokens, faulted ones included. A client that sends
	// each refresh token once has RefreshCalls == Rotations (docs/design.md I1,
	// I2), barring pre-processing faults it retried.
	RefreshCalls int  `json:"refresh_calls"`
	Revoked      bool `json:"revoked"`
	// RevokedReason is reuse, revocation, admin or code_replay.
	RevokedReason string    `json:"revoked_reason,omitempty"`
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
}

func (f *family) stats() FamilyStats {
	return FamilyStats{ID: f.id, UserID: f.userID, Generation: f.generation, Rotations: f.rotations,
		RefreshCalls: f.refreshCalls, Revoked: f.revoked, RevokedReason: f.reason, RevokedAt: f.revokedAt}
}

// counters is Stats without Families, kept under Server.mu.
type counters Stats

func (c *counters) reset() {
	*c = counters{Requests: map[string]int64{}, TokenRequests: map[string]int64{}, Faults: map[string]int64{}}
}

// Stats returns a copy of the counters and the families' state.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats(s.stats)
	st.Requests = maps.Clone(s.stats.Requests)
	st.TokenRequests = maps.Clone(s.stats.TokenRequests)
	st.Faults = maps.Clone(s.stats.Faults)
	st.Families = make(map[string]FamilyStats, len(s.fams))
	for id, f := range s.fams {
		st.Families[id] = f.stats()
	}
	return st
}

// ResetStats zeroes the counters. Token state, and so Families, stays.
func (s *Server) ResetStats() {
	s.mu.Lock()
	s.stats.reset()
	s.mu.Unlock()
}

// handleStats serves GET /stats. ?families=0 leaves the families out.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st := s.Stats()
	if r.URL.Query().Get("families") == "0" {
		st.Families = nil
	}
	writeJSON(w, http.StatusOK, st)
}

// handleStatsReset serves POST /stats/reset.
func (s *Server) handleStatsReset(w http.ResponseWriter, r *http.Request) {
	s.ResetStats()
	w.WriteHeader(http.StatusNoContent)
}

// handleGetFaults serves GET /admin/faults.
func (s *Server) handleGetFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

// handlePutFaults serves PUT /admin/faults: the JSON body replaces the
// faults (absent members are zero, durations are strings like "250ms").
func (s *Server) handlePutFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	if err := f.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	s.SetFaults(f)
	writeJSON(w, http.StatusOK, s.Faults())
}

// handleAdminIssue serves POST /admin/issue (form: user, scope): it mints
// a family like [Server.IssueToken], for processes that cannot call Go.
func (s *Server) handleAdminIssue(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || r.Form.Get("user") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "user is required."})
		return
	}
	tok, err := s.IssueToken(r.Form.Get("user"), strings.Fields(r.Form.Get("scope"))...)
	if err != nil {
		s.writeServerError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, tok)
}

// handleAdminRevoke serves POST /admin/revoke (form: token): it revokes
// the token's family like [Server.RevokeFamilyOf].
func (s *Server) handleAdminRevoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || r.Form.Get("token") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "token is required."})
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"revoked": s.RevokeFamilyOf(r.Form.Get("token"))})
}
