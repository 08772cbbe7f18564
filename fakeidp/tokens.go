package fakeidp

import (
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// Token prefixes make the fake's secrets easy to find in dumps and logs
// ("grep fakeidp_" must find every leaked one).
const (
	PrefixAccessToken  = "fakeidp_at_"
	PrefixRefreshToken = "fakeidp_rt_"
	PrefixCode         = "fakeidp_ac_"
	PrefixDeviceCode   = "fakeidp_dc_"
)

// Token is a token pair as the server issued it.
type Token struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"`
	// ExpiresIn is the access token lifetime in seconds at issue.
	ExpiresIn int64  `json:"expires_in"`
	Scope     string `json:"scope,omitempty"`
	IDToken   string `json:"id_token,omitempty"`
	// Family is the id of the token family (the grant) the pair belongs
	// to, the key of [Stats.Families]; Generation is the pair's number in
	// it, starting at 1.
	Family     string `json:"family"`
	Generation int    `json:"generation"`
	UserID     string `json:"user_id"`
}

// OAuth2 converts t for golang.org/x/oauth2.
func (t *Token) OAuth2() *oauth2.Token {
	tok := &oauth2.Token{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		Expiry:       t.Expiry,
		ExpiresIn:    t.ExpiresIn,
	}
	if t.IDToken != "" {
		tok = tok.WithExtra(map[string]any{"id_token": t.IDToken})
	}
	return tok
}

// family is one grant: every pair issued from one authorization, linked
// by refresh token rotation. Revoking a family revokes all its tokens.
type family struct {
	id           string
	userID       string
	clientID     string
	scope        string
	nonce        string // of the authorization request, for the first id_token
	authTime     time.Time
	generation   int // pairs issued so far
	rotations    int
	refreshCalls int // refresh requests presenting one of its tokens
	current      *refreshToken
	revoked      bool
	reason       string // why it was revoked: reuse, revocation, admin, code_replay
	revokedAt    time.Time
}

// refreshToken is one refresh token of a family.
type refreshToken struct {
	value      string
	fam        *family
	generation int
	issuedAt   time.Time
	usedAt     time.Time // zero while unused
	// usedSeq is the number of token requests that had arrived when it was
	// used: a request that arrived earlier overlapped its rotation.
	usedSeq   int64
	successor *Token // the pair its rotation issued, for grace replays
}

// accessToken is one access token of a family.
type accessToken struct {
	value   string
	fam     *family
	expiry  time.Time
	revoked bool
}

// validLocked reports whether the access token may be used at now.
func (a *accessToken) validLocked(now time.Time) bool {
	return !a.revoked && !a.fam.revoked && now.Before(a.expiry)
}

// newFamilyLocked starts a family for user and issues its first pair.
func (s *Server) newFamilyLocked(userID, scope, nonce string) (*Token, error) {
	s.nfam++
	now := s.now()
	fam := &family{
		id:       fmt.Sprintf("fam-%06d", s.nfam),
		userID:   userID,
		clientID: s.cfg.ClientID,
		scope:    scope,
		nonce:    nonce,
		authTime: now,
	}
	tok, err := s.issueLocked(fam)
	if err != nil {
		return nil, err
	}
	s.fams[fam.id] = fam
	return tok, nil
}

// issueLocked mints a new access and refresh token in fam and makes the
// refresh token the family's current one.
func (s *Server) issueLocked(fam *family) (*Token, error) {
	at, err := s.newSecret(PrefixAccessToken)
	if err != nil {
		return nil, err
	}
	rt, err := s.newSecret(PrefixRefreshToken)
	if err != nil {
		return nil, err
	}
	now := s.now()
	fam.generation++
	a := &accessToken{value: at, fam: fam, expiry: now.Add(s.cfg.AccessTokenTTL)}
	s.access[at] = a
	if s.cfg.RequireOfflineAccess && !hasScope(fam.scope, "offline_access") && !hasScope(fam.scope, "offline") {
		rt = "" // OpenID Connect Core §11: no refresh token without offline access
	} else {
		r := &refreshToken{value: rt, fam: fam, generation: fam.generation, issuedAt: now}
		fam.current = r
		s.refresh[rt] = r
	}
	if s.cfg.RecordIssued {
		s.issued = append(s.issued, at)
		if rt != "" {
			s.issued = append(s.issued, rt)
		}
	}
	s.maybeSweepLocked(now)
	expiresIn := int64(s.cfg.AccessTokenTTL / time.Second)
	if s.cfg.ExpiresInRoundDown {
		expiresIn = int64((s.cfg.AccessTokenTTL - time.Nanosecond) / time.Second)
	}
	return &Token{
		AccessToken:  at,
		TokenType:    s.cfg.TokenType,
		RefreshToken: rt,
		Expiry:       a.expiry,
		ExpiresIn:    expiresIn,
		Scope:        fam.scope,
		Family:       fam.id,
		Generation:   fam.generation,
		UserID:       fam.userID,
	}, nil
}

// IssuedTokens returns every access and refresh token the server issued,
// in order, when [Config.RecordIssued] is set (nil otherwise). Tests search
// database dumps for them.
func (s *Server) IssuedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// revokeFamilyLocked revokes every token of fam, counting it once.
func (s *Server) revokeFamilyLocked(fam *family, reason string) {
	if fam.revoked {
		return
	}
	fam.revoked, fam.reason, fam.revokedAt = true, reason, s.now()
	s.stats.FamiliesRevoked++
}

// refreshOutcome is the result of presenting a refresh token.
type refreshOutcome int

const (
	refreshRotated refreshOutcome = iota
	refreshGraceReplay
	refreshInvalid // unknown, expired, revoked, wrong client, bad scope
	refreshReused  // already used: the family is revoked now (if detection is on)
	// refreshOverlapped: used by a refresh that overlapped this one, under
	// OverlapServerError (no token) or OverlapRevokedPair (a dead pair).
	refreshOverlapped
)

// useRefreshLocked presents a refresh token: it rotates it, replays a
// rotation within the grace period, or rejects it, detecting reuse as RFC
// 9700 §4.14.2 describes. The check that the token is unused and the
// marking of it as used happen under s.mu in one step (see Server.mu).
//
// arrival is the request's number among token requests (see
// Server.tokenRequests): a request that arrived before the token was used
// overlapped the refresh that used it, which Config.OverlappingRefresh may
// treat otherwise than a reuse.
func (s *Server) useRefreshLocked(value, clientID, scope string, arrival int64) (*Token, refreshOutcome, string, error) {
	now := s.now()
	rt := s.refresh[value]
	switch {
	case rt == nil:
		return nil, refreshInvalid, "The refresh token is unknown.", nil
	case rt.fam.clientID != clientID:
		return nil, refreshInvalid, "The refresh token was issued to another client.", nil
	case rt.fam.revoked:
		return nil, refreshInvalid, "The refresh token has been revoked.", nil
	case s.cfg.RefreshTokenTTL > 0 && !now.Before(rt.issuedAt.Add(s.cfg.RefreshTokenTTL)):
		return nil, refreshInvalid, "The refresh token has expired.", nil
	}
	if scope != "" && !s.cfg.IgnoreRefreshScope {
		for _, sc := range splitScope(scope) {
			if !hasScope(rt.fam.scope, sc) {
				return nil, refreshInvalid, "The requested scope exceeds the granted scope.", nil
			}
		}
	}
	if !rt.usedAt.IsZero() {
		if g := s.cfg.ReuseGracePeriod; g > 0 && rt.successor != nil && now.Sub(rt.usedAt) <= g {
			s.stats.GraceReuses++
			replay := *rt.successor
			replay.ExpiresIn = ceilSeconds(replay.Expiry.Sub(now))
			return &replay, refreshGraceReplay, "", nil
		}
		if mode := s.cfg.OverlappingRefresh; mode != OverlapReuse && arrival <= rt.usedSeq {
			s.stats.OverlappingRefreshes++
			if mode == OverlapServerError {
				return nil, refreshOverlapped, "", nil
			}
			tok, err := s.newFamilyLocked(rt.fam.userID, rt.fam.scope, rt.fam.nonce)
			if err != nil {
				return nil, refreshInvalid, "", err
			}
			s.revokeFamilyLocked(s.fams[tok.Family], "overlap")
			return tok, refreshOverlapped, "", nil
		}
		if s.cfg.DisableReuseDetection {
			return nil, refreshInvalid, "The refresh token has already been used.", nil
		}
		s.stats.ReuseDetections++
		s.revokeFamilyLocked(rt.fam, "reuse")
		s.log.Warn("fakeidp: refresh token reuse detected, token family revoked",
			"family", rt.fam.id, "user", rt.fam.userID, "token_generation", rt.generation,
			"family_generation", rt.fam.generation)
		return nil, refreshReused, "The refresh token has already been used; its token family is revoked (RFC 9700 §4.14.2).", nil
	}
	tok, err := s.issueLocked(rt.fam)
	if err != nil {
		return nil, refreshInvalid, "", err
	}
	rt.usedAt = now
	rt.usedSeq = s.tokenRequests
	rt.successor = tok
	rt.fam.rotations++
	s.stats.Rotations++
	return tok, refreshRotated, "", nil
}

// IssueToken mints a new token family for the user with the given ID or
// login, as if the user had just authorized the client with scopes, and
// returns its first pair. An unknown user is created. It is how tests and
// benchmarks seed links without a browser.
func (s *Server) IssueToken(user string, scopes ...string) (*Token, error) {
	scope := joinScopes(scopes)
	s.mu.Lock()
	u := s.userOrCreateLocked(user)
	tok, err := s.newFamilyLocked(u.ID, scope, "")
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if s.oidc != nil && hasScope(scope, "openid") {
		if tok.IDToken, err = s.idToken(s.URL(), u, tok, "", s.now()); err != nil {
			return nil, err
		}
	}
	return tok, nil
}

// RevokeFamilyOf revokes the whole token family of an access or refresh
// token, as a provider-side revocation (a user removing the app, an admin
// action) would. It reports whether the token was known.
func (s *Server) RevokeFamilyOf(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	fam := s.familyOfLocked(token)
	if fam == nil {
		return false
	}
	s.revokeFamilyLocked(fam, "admin")
	return true
}

// ExpireAccessTokensOf makes every access token of the token's family
// expire now, as if their lifetime had run out. It reports whether the
// token was known.
func (s *Server) ExpireAccessTokensOf(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	fam := s.familyOfLocked(token)
	if fam == nil {
		return false
	}
	now := s.now()
	for _, a := range s.access {
		if a.fam == fam && a.expiry.After(now) {
			a.expiry = now
		}
	}
	return true
}

// maybeSweepLocked bounds memory in long benchmark runs: whenever the
// number of tokens held has doubled since the last sweep (so the cost is
// amortized constant per token), it forgets access tokens that have
// expired (they would answer 401 anyway) and the grace-replay pairs of
// refresh tokens rotated longer ago than the grace period. Used refresh
// tokens themselves are kept: reuse detection needs them.
func (s *Server) maybeSweepLocked(now time.Time) {
	if len(s.access)+len(s.refresh) < s.nextSweep {
		return
	}
	for k, a := range s.access {
		if !now.Before(a.expiry) {
			delete(s.access, k)
		}
	}
	grace := s.cfg.ReuseGracePeriod
	for _, rt := range s.refresh {
		if rt.successor != nil && now.Sub(rt.usedAt) > grace {
			rt.successor = nil
		}
	}
	s.nextSweep = max(2*(len(s.access)+len(s.refresh)), minSweep)
}

// minSweep is the number of tokens below which nothing is swept.
const minSweep = 4096

// FamilyOf returns the state of the family of an access or refresh token.
// Expired access tokens may have been forgotten (see maybeSweepLocked);
// refresh tokens never are.
func (s *Server) FamilyOf(token string) (FamilyStats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fam := s.familyOfLocked(token)
	if fam == nil {
		return FamilyStats{}, false
	}
	return fam.stats(), true
}

func (s *Server) familyOfLocked(token string) *family {
	if rt := s.refresh[token]; rt != nil {
		return rt.fam
	}
	if at := s.access[token]; at != nil {
		return at.fam
	}
	return nil
}

// ceilSeconds rounds d up to whole seconds, at least 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
