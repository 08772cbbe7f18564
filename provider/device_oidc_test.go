package provider

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// TestDeviceFlowShapes replays Google's and Entra ID's device answers:
// Google names the URL verification_url, Entra answers pending with HTTP
// 400 (transient because of its code) and an expired code with
// expired_token (permanent).
func TestDeviceFlowShapes(t *testing.T) {
	t.Run("google", func(t *testing.T) {
		srv := MustReplay(t)
		p := MustNew(t, ProviderConfig{ID: "g", Kind: KindGoogle, ClientID: testClientID, ClientSecret: testSecret,
			DeviceURL: srv.URL + "/device/code", TokenURL: srv.URL + "/token"}, srv.Client())
		srv.answer(t, "POST", "/device/code", "google/device_code")
		da, err := p.DeviceAuth(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if da.VerificationURI != "https://www.google.com/device" || da.UserCode != "GQVQ-JKEC" || !da.Expiry.Equal(testNow.Add(30*time.Minute)) {
			t.Errorf("device auth = %+v", da)
		}
		q := srv.requests("POST", "/device/code")[0]
		if q.Form.Get("scope") != "openid email profile" || q.Form.Get("client_id") != testClientID {
			t.Errorf("device request form = %v", q.Form)
		}
	})
	t.Run("microsoft", func(t *testing.T) {
		srv := MustReplay(t)
		p := MustNew(t, ProviderConfig{ID: "m", Kind: KindMicrosoft, ClientID: testClientID, BaseURL: srv.URL}, srv.Client())
		srv.answer(t, "POST", "/common/oauth2/v2.0/devicecode", "microsoft/devicecode")
		da, err := p.DeviceAuth(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if da.VerificationURI != "https://microsoft.com/devicelogin" || da.Interval != 5*time.Second {
			t.Errorf("device auth = %+v", da)
		}
		for _, c := range []struct {
			fixture   string
			code      string
			permanent bool
		}{
			{"microsoft/authorization_pending", "authorization_pending", false},
			{"microsoft/device_expired", "expired_token", true},
		} {
			srv.answer(t, "POST", "/common/oauth2/v2.0/token", c.fixture)
			_, err := p.PollDevice(context.Background(), da.DeviceCode)
			var pe *tokenbroker.ProviderError
			if !errors.As(err, &pe) || pe.Code != c.code || !pe.Transient() != c.permanent || pe.StatusCode != 400 {
				t.Errorf("PollDevice with %s = %v", c.fixture, err)
			}
			if strings.Contains(err.Error(), da.DeviceCode) {
				t.Errorf("the error holds the device code")
			}
		}
		// A public client sends client_id in the form and no secret.
		q := srv.requests("POST", "/common/oauth2/v2.0/token")[0]
		if q.HasBasic || q.Form.Get("client_id") != testClientID || q.Form.Has("client_secret") {
			t.Errorf("public client poll: basic=%v form=%v", q.HasBasic, q.Form)
		}
		if n := len(srv.requests("POST", "/common/oauth2/v2.0/token")); n != 2 {
			t.Errorf("%d token requests for 2 polls", n)
		}
	})
}

// TestOIDCAuthStyleFromDiscovery: an issuer that offers only
// client_secret_post gets the secret in the form; auth_style overrides.
func TestOIDCAuthStyleFromDiscovery(t *testing.T) {
	for _, c := range []struct {
		methods   []string
		authStyle string
		want      string
	}{
		{[]string{"client_secret_post"}, "", "params"},
		{[]string{"client_secret_basic", "client_secret_post"}, "", "header"},
		{nil, "", "header"}, // OIDC Discovery §3: the default is client_secret_basic
		{[]string{"client_secret_post"}, "header", "header"},
	} {
		t.Run(strings.Join(c.methods, "+")+"/"+c.authStyle, func(t *testing.T) {
			srv := MustReplay(t)
			doc, _ := json.Marshal(map[string]any{
				"issuer": srv.URL, "authorization_endpoint": srv.URL + "/authorize", "token_endpoint": srv.URL + "/token",
				"jwks_uri": srv.URL + "/jwks", "token_endpoint_auth_methods_supported": c.methods,
				"revocation_endpoint": srv.URL + "/revoke",
			})
			srv.mu.Lock()
			srv.routes["GET /.well-known/openid-configuration"] = fixture{Status: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: doc}
			srv.mu.Unlock()
			srv.answer(t, "POST", "/token", "oauth2/refresh_ok")
			p := MustNew(t, ProviderConfig{ID: "o", Kind: KindOIDC, Issuer: srv.URL, ClientID: testClientID, ClientSecret: testSecret, AuthStyle: c.authStyle}, srv.Client())
			if _, err := p.Refresh(context.Background(), oldRefresh); err != nil {
				t.Fatal(err)
			}
			checkClientAuth(t, c.want, srv.requests("POST", "/token")[0])
			if !p.Info().SupportsRevoke || p.Info().SupportsDevice {
				t.Errorf("Info from discovery = %+v", p.Info())
			}
		})
	}
}
