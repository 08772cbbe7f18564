package fakeidp_test

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/fakeidp"
)

// MustDeviceAuth starts a device authorization.
func MustDeviceAuth(tb testing.TB, s *fakeidp.Server) Resp {
	tb.Helper()
	r := MustPost(tb, s, fakeidp.PathDeviceCode, url.Values{"client_id": {fakeidp.DefaultClientID}, "scope": {"read"}})
	wantStatus(tb, r, http.StatusOK)
	return r
}

// poll asks the token endpoint once for a device code.
func poll(tb testing.TB, s *fakeidp.Server, deviceCode string) Resp {
	tb.Helper()
	return MustPost(tb, s, fakeidp.PathToken, url.Values{
		"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {deviceCode},
	}, defaultAuth)
}

var userCodeRE = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

func TestDeviceFlow(t *testing.T) {
	t.Parallel()
	clk := NewClock()
	s := MustStart(t, fakeidp.Config{Now: clk.Now})
	da := MustDeviceAuth(t, s)
	dc, uc := da.Str("device_code"), da.Str("user_code")
	if !strings.HasPrefix(dc, fakeidp.PrefixDeviceCode) || !userCodeRE.MatchString(uc) {
		t.Fatalf("device answer: %s", da.Body)
	}
	if da.Str("verification_uri") != s.Endpoints().DeviceVerification || da.JSON["interval"] != 5.0 || da.JSON["expires_in"] != 600.0 {
		t.Fatalf("device answer: %s", da.Body)
	}
	if !strings.HasSuffix(da.Str("verification_uri_complete"), "?user_code="+uc) {
		t.Fatalf("verification_uri_complete = %q", da.Str("verification_uri_complete"))
	}

	wantError(t, poll(t, s, dc), http.StatusBadRequest, "authorization_pending")
	// Polling again at once is too fast.
	r := poll(t, s, dc)
	wantError(t, r, http.StatusBadRequest, "slow_down")
	// The interval grew to 10s: after 5s it is still too fast (and grows to
	// 15s); 15s later it is fine.
	clk.Advance(5 * time.Second)
	wantError(t, poll(t, s, dc), http.StatusBadRequest, "slow_down")
	clk.Advance(15 * time.Second)
	wantError(t, poll(t, s, dc), http.StatusBadRequest, "authorization_pending")

	// The verification page, as a browser: it shows the code prefilled.
	page := MustGet(t, s, da.Str("verification_uri_complete"))
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(page.Body, `value="`+uc+`"`) || !strings.Contains(page.Body, `name="user_code"`) {
		t.Fatalf("verification page:\n%s", page.Body)
	}
	// The user types the code in lower case without the dash.
	typed := strings.ToLower(strings.ReplaceAll(uc, "-", " "))
	wantStatus(t, MustPost(t, s, fakeidp.PathDevice, url.Values{"user_code": {typed}, "login": {"bob"}, "action": {"approve"}}), http.StatusOK)
	// A second decision is refused.
	wantStatus(t, MustPost(t, s, fakeidp.PathDevice, url.Values{"user_code": {uc}, "login": {"bob"}}), http.StatusConflict)

	clk.Advance(20 * time.Second)
	r = poll(t, s, dc)
	wantStatus(t, r, http.StatusOK)
	if ui := Userinfo(t, s, r.Str("access_token")); ui.Str("login") != "bob" {
		t.Fatalf("userinfo: %s", ui.Body)
	}
	if r.Str("refresh_token") == "" || r.Str("scope") != "read" {
		t.Fatalf("device token answer: %s", r.Body)
	}
	// The device code is redeemed.
	wantError(t, poll(t, s, dc), http.StatusBadRequest, "invalid_grant")
	st := s.Stats()
	if st.DeviceAuthorizations != 1 || st.DevicePolls != 6 || st.DeviceGrants != 1 || st.Requests["device_verification"] != 3 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestDeviceFlowDenied(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	da := MustDeviceAuth(t, s)
	wantStatus(t, MustPost(t, s, fakeidp.PathDevice, url.Values{"user_code": {da.Str("user_code")}, "action": {"deny"}}), http.StatusOK)
	wantError(t, poll(t, s, da.Str("device_code")), http.StatusBadRequest, "access_denied")
}

func TestDeviceFlowExpired(t *testing.T) {
	t.Parallel()
	clk := NewClock()
	s := MustStart(t, fakeidp.Config{Now: clk.Now, DeviceCodeTTL: time.Minute})
	da := MustDeviceAuth(t, s)
	clk.Advance(time.Minute)
	wantError(t, poll(t, s, da.Str("device_code")), http.StatusBadRequest, "expired_token")
	if err := s.ApproveDevice(da.Str("user_code"), "alice"); !errors.Is(err, fakeidp.ErrUserCodeExpired) {
		t.Fatalf("ApproveDevice on an expired code: %v", err)
	}
	r := MustPost(t, s, fakeidp.PathDevice, url.Values{"user_code": {da.Str("user_code")}, "login": {"alice"}})
	wantStatus(t, r, http.StatusBadRequest)
}

func TestDeviceGoAPIAndGitHubFlavor(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{Flavor: fakeidp.FlavorGitHub})
	da := MustDeviceAuth(t, s)
	r := poll(t, s, da.Str("device_code"))
	wantError(t, r, http.StatusOK, "authorization_pending")
	if err := s.ApproveDevice("NOPE-NOPE", "alice"); !errors.Is(err, fakeidp.ErrUnknownUserCode) {
		t.Fatalf("unknown code: %v", err)
	}
	if err := s.ApproveDevice(da.Str("user_code"), "nobody"); !errors.Is(err, fakeidp.ErrUnknownUser) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := s.ApproveDevice(da.Str("user_code"), "1003"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, poll(t, s, da.Str("device_code")), http.StatusOK)
	wantError(t, poll(t, s, "fakeidp_dc_unknown"), http.StatusOK, "incorrect_device_code")

	da = MustDeviceAuth(t, s)
	if err := s.DenyDevice(da.Str("user_code")); err != nil {
		t.Fatal(err)
	}
	wantError(t, poll(t, s, da.Str("device_code")), http.StatusOK, "access_denied")
}

func TestDeviceVerificationPageErrors(t *testing.T) {
	t.Parallel()
	s := MustStart(t, fakeidp.Config{})
	page := MustGet(t, s, fakeidp.PathDevice)
	wantStatus(t, page, http.StatusOK)
	if !strings.Contains(page.Body, `<form method="post"`) {
		t.Fatalf("page:\n%s", page.Body)
	}
	wantStatus(t, MustPost(t, s, fakeidp.PathDevice, url.Values{"user_code": {"BCDF-GHJK"}, "login": {"alice"}}), http.StatusBadRequest)
	wantStatus(t, MustPost(t, s, fakeidp.PathDevice, url.Values{"login": {"alice"}}), http.StatusBadRequest)
	da := MustDeviceAuth(t, s)
	wantStatus(t, MustPost(t, s, fakeidp.PathDevice, url.Values{"user_code": {da.Str("user_code")}}), http.StatusBadRequest)
	// The device endpoint needs a known client.
	wantError(t, MustPost(t, s, fakeidp.PathDeviceCode, url.Values{"client_id": {"other"}}), http.StatusUnauthorized, "invalid_client")
}
