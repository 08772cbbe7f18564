package fakeidp

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// deviceState is where a device authorization stands.
type deviceState int

const (
	devicePending deviceState = iota
	deviceApproved
	deviceDenied
	deviceRedeemed
)

// deviceGrant is one device authorization (RFC 8628 §3.2).
type deviceGrant struct {
	deviceCode string
	userCode   string
	clientID   string
	scope      string
	expiry     time.Time
	interval   time.Duration // grows by 5s with every slow_down
	lastPoll   time.Time
	state      deviceState
	userID     string
}

// userCodeAlphabet has no vowels and no look-alike characters (RFC 8628
// §6.1).
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// newUserCode returns a user code like "BCDF-GHJK".
func (s *Server) newUserCode() (string, error) {
	var out []byte
	var b [16]byte
	for len(out) < 8 {
		if err := s.readRand(b[:]); err != nil {
			return "", err
		}
		for _, c := range b {
			// Rejection sampling: 240 is the largest multiple of 20 below 256.
			if c < 240 && len(out) < 8 {
				out = append(out, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
			}
		}
	}
	return string(out[:4]) + "-" + string(out[4:]), nil
}

// normalizeUserCode upper-cases a typed user code and drops everything
// but letters, so "bcdf ghjk" matches "BCDF-GHJK" (RFC 8628 §6.1).
func normalizeUserCode(s string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(s) {
		if c >= 'A' && c <= 'Z' {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// deviceAuthResponse is the device authorization answer (RFC 8628 §3.2).
type deviceAuthResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// handleDeviceAuthorization is the device authorization endpoint (RFC
// 8628 §3.1).
func (s *Server) handleDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	if e := parsePostForm(w, r); e != nil {
		s.writeOAuthError(w, r, e)
		return
	}
	if s.applyPreFault(w, r, epDeviceAuth, "") {
		return
	}
	if e := s.authenticateClient(r, true); e != nil {
		s.writeOAuthError(w, r, e)
		return
	}
	dc, err := s.newSecret(PrefixDeviceCode)
	if err != nil {
		s.writeServerError(w, r, err)
		return
	}
	s.mu.Lock()
	var uc string
	for uc == "" || s.ucodes[normalizeUserCode(uc)] != nil {
		if uc, err = s.newUserCode(); err != nil {
			s.mu.Unlock()
			s.writeServerError(w, r, err)
			return
		}
	}
	g := &deviceGrant{
		deviceCode: dc,
		userCode:   uc,
		clientID:   s.cfg.ClientID,
		scope:      joinScopes([]string{r.PostForm.Get("scope")}),
		expiry:     s.now().Add(s.cfg.DeviceCodeTTL),
		interval:   s.cfg.DeviceInterval,
	}
	s.devices[dc] = g
	s.ucodes[normalizeUserCode(uc)] = g
	s.stats.DeviceAuthorizations++
	s.mu.Unlock()
	verify := s.base(r) + PathDevice
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, deviceAuthResponse{
		DeviceCode:              dc,
		UserCode:                uc,
		VerificationURI:         verify,
		VerificationURIComplete: verify + "?" + url.Values{"user_code": {uc}}.Encode(),
		ExpiresIn:               int64(s.cfg.DeviceCodeTTL / time.Second),
		Interval:                int64(s.cfg.DeviceInterval / time.Second),
	})
}

// tokenByDevice answers a device access token request (RFC 8628 §3.4,
// §3.5). A poll that comes sooner than 90% of the current interval after
// the previous one is answered slow_down and adds 5 seconds to the
// interval; the tolerance absorbs timer jitter of well-behaved clients.
func (s *Server) tokenByDevice(w http.ResponseWriter, r *http.Request) {
	dc := r.PostForm.Get("device_code")
	if dc == "" {
		s.writeOAuthError(w, r, errInvalidRequest("device_code is missing."))
		return
	}
	deviceErr := func(code, desc string) *oauthError {
		return &oauthError{status: http.StatusBadRequest, code: code, desc: desc}
	}
	s.mu.Lock()
	now := s.now()
	g := s.devices[dc]
	var e *oauthError
	switch {
	case g == nil:
		e = &oauthError{status: http.StatusBadRequest, code: "invalid_grant", github: "incorrect_device_code",
			desc: "The device code is unknown."}
	case g.clientID != s.cfg.ClientID:
		e = &oauthError{status: http.StatusBadRequest, code: "invalid_grant", github: "incorrect_device_code",
			desc: "The device code was issued to another client."}
	case g.state == deviceRedeemed:
		e = &oauthError{status: http.StatusBadRequest, code: "invalid_grant", github: "incorrect_device_code",
			desc: "The device code has already been used."}
	case !now.Before(g.expiry):
		e = deviceErr("expired_token", "The device code has expired.")
	case g.state == deviceDenied:
		e = deviceErr("access_denied", "The user denied the request.")
	case g.state == devicePending:
		if !g.lastPoll.IsZero() && now.Sub(g.lastPoll) < g.interval*9/10 {
			g.interval += 5 * time.Second
			e = deviceErr("slow_down", "Polling too fast; the interval is now "+g.interval.String()+".")
		} else {
			e = deviceErr("authorization_pending", "The user has not approved the request yet.")
		}
		g.lastPoll = now
	}
	if e != nil {
		s.mu.Unlock()
		s.writeOAuthError(w, r, e)
		return
	}
	g.state = deviceRedeemed
	tok, err := s.newFamilyLocked(g.userID, g.scope, "")
	if err == nil {
		s.stats.DeviceGrants++
	}
	user, _ := s.userLocked(g.userID)
	s.mu.Unlock()
	if err != nil {
		s.writeServerError(w, r, err)
		return
	}
	s.writeTokenResponse(w, r, tok, user, "")
}

// Errors of [Server.ApproveDevice] and [Server.DenyDevice].
var (
	ErrUnknownUserCode = errors.New("fakeidp: unknown user code")
	ErrUserCodeExpired = errors.New("fakeidp: user code expired")
	ErrUserCodeDecided = errors.New("fakeidp: user code already approved or denied")
	ErrUnknownUser     = errors.New("fakeidp: unknown user")
)

// ApproveDevice approves the device authorization with userCode as the
// user with the given ID or login, as the verification page does.
func (s *Server) ApproveDevice(userCode, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.userLocked(user)
	if !ok {
		return ErrUnknownUser
	}
	return s.decideDeviceLocked(userCode, deviceApproved, u.ID)
}

// DenyDevice denies the device authorization with userCode.
func (s *Server) DenyDevice(userCode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decideDeviceLocked(userCode, deviceDenied, "")
}

func (s *Server) decideDeviceLocked(userCode string, state deviceState, userID string) error {
	g := s.ucodes[normalizeUserCode(userCode)]
	switch {
	case g == nil:
		return ErrUnknownUserCode
	case !s.now().Before(g.expiry):
		return ErrUserCodeExpired
	case g.state != devicePending:
		return ErrUserCodeDecided
	}
	g.state, g.userID = state, userID
	return nil
}

// handleDevicePage shows the verification page where the user types the
// user code (RFC 8628 §3.3).
func (s *Server) handleDevicePage(w http.ResponseWriter, r *http.Request) {
	s.renderDevice(w, r, http.StatusOK, r.URL.Query().Get("user_code"), "")
}

// handleDeviceDecision takes the verification form.
func (s *Server) handleDeviceDecision(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	code := r.PostForm.Get("user_code")
	if normalizeUserCode(code) == "" {
		s.renderDevice(w, r, http.StatusBadRequest, code, "Type the code shown on your device.")
		return
	}
	var err error
	deny := r.PostForm.Get("action") == "deny"
	if deny {
		err = s.DenyDevice(code)
	} else {
		name := formUser(r.PostForm)
		if name == "" {
			s.renderDevice(w, r, http.StatusBadRequest, code, "Pick a user or type a username.")
			return
		}
		s.mu.Lock()
		u := s.userOrCreateLocked(name)
		err = s.decideDeviceLocked(code, deviceApproved, u.ID)
		s.mu.Unlock()
	}
	switch {
	case errors.Is(err, ErrUnknownUserCode):
		s.renderDevice(w, r, http.StatusBadRequest, code, "That code is not known. Check it and try again.")
	case errors.Is(err, ErrUserCodeExpired):
		s.renderDevice(w, r, http.StatusBadRequest, code, "That code has expired. Start again on your device.")
	case errors.Is(err, ErrUserCodeDecided):
		s.renderDevice(w, r, http.StatusConflict, code, "That code has already been used.")
	case deny:
		s.renderDone(w, "Request denied", "The device was not connected. You can close this page.")
	default:
		s.renderDone(w, "Device connected", "Return to your device; it will finish signing in. You can close this page.")
	}
}
