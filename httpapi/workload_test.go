package httpapi_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
)

const wlAudience = "https://tokenbroker.test"

// workloadTrusts: CI jobs of acme act for their actor on demo; a deploy
// job acts for alice or bob on demo and bare.
func workloadTrusts(issuer string) []identity.Trust {
	return []identity.Trust{
		{ID: "ci", Issuer: issuer, Audience: wlAudience, Subject: "repo:acme/*", Claims: map[string]string{"repository_owner": "acme"},
			UserClaim: "actor", Providers: []string{demo}},
		{ID: "deploy", Issuer: issuer, Audience: wlAudience + "/deploy", Users: []string{"alice", "bob"},
			Providers: []string{demo, httpapitest.ProviderBare}, Scopes: []string{tokenbroker.ScopeTokensRead, tokenbroker.ScopeLinksRead}},
		{ID: "noread", Issuer: issuer, Audience: wlAudience + "/noread", Users: []string{"alice"}, Providers: []string{demo},
			Scopes: []string{tokenbroker.ScopeLinksRead}},
	}
}

func workloadEnv(t *testing.T) *httpapitest.Env {
	return MustEnv(t, httpapitest.Options{Trusts: workloadTrusts})
}

func ciJob(actor string) fakeidp.WorkloadClaims {
	return fakeidp.WorkloadClaims{Subject: "repo:acme/app:ref:refs/heads/main", Audience: []string{wlAudience},
		Extra: map[string]any{"repository_owner": "acme", "actor": actor}}
}

// exchange posts an RFC 8693 token exchange with form params (pairs).
func exchange(t *testing.T, env *httpapitest.Env, params ...string) (*http.Response, map[string]any) {
	t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		form.Add(params[i], params[i+1])
	}
	req, err := http.NewRequest("POST", env.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	return resp, body
}

func exchangeJWT(t *testing.T, env *httpapitest.Env, raw, provider string, more ...string) (*http.Response, map[string]any) {
	t.Helper()
	return exchange(t, env, append([]string{"grant_type", httpapi.GrantTypeTokenExchange, "subject_token", raw,
		"subject_token_type", httpapi.TokenTypeJWT, "audience", provider}, more...)...)
}

func mustOAuthError(t *testing.T, resp *http.Response, body map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || body["error"] != code {
		t.Fatalf("answer %d %v, want %d %s", resp.StatusCode, body, status, code)
	}
	if _, ok := body["access_token"]; ok {
		t.Fatal("an error answer holds an access token")
	}
}

// userinfo asks the provider whether it accepts an access token.
func userinfo(t *testing.T, env *httpapitest.Env, at string) int {
	t.Helper()
	resp, _ := httpapitest.Do(t, env.Server.Client(), "GET", env.IDP.Endpoints().Userinfo, at, "")
	return resp.StatusCode
}

// A JWT from a trusted issuer exchanges for the user's provider token,
// which the provider accepts; the audit names the workload.
func TestTokenExchange(t *testing.T) {
	env := workloadEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	raw := env.MintWorkloadJWT(t, ciJob("alice"))

	resp, body := exchangeJWT(t, env, raw, demo, "requested_token_type", httpapi.TokenTypeAccessToken, "scope", "read")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("exchange: %d %v", resp.StatusCode, body)
	}
	at, _ := body["access_token"].(string)
	env.Logs.AddSecret(at)
	if at == "" || body["issued_token_type"] != httpapi.TokenTypeAccessToken || body["token_type"] != "Bearer" || body["scope"] != "read" {
		t.Fatalf("answer %v", body)
	}
	if exp, _ := body["expires_in"].(float64); exp <= 0 || exp > 3600 {
		t.Errorf("expires_in %v", body["expires_in"])
	}
	if _, ok := body["refresh_token"]; ok {
		t.Fatal("the answer holds a refresh token")
	}
	if resp.Header.Get("Pragma") != "no-cache" {
		t.Errorf("Pragma %q", resp.Header.Get("Pragma"))
	}
	if st := userinfo(t, env, at); st != http.StatusOK {
		t.Fatalf("the provider answers %d to the exchanged token", st)
	}

	// The same JWT again (a replay within its lifetime) works and is
	// marked in the audit trail. id_token is accepted as the type too. A
	// second later: the audit rows of one flush are ordered by time, and
	// "newest first" below needs the two to differ.
	env.Clock.Advance(time.Second)
	resp, body = exchange(t, env, "grant_type", httpapi.GrantTypeTokenExchange, "subject_token", raw,
		"subject_token_type", httpapi.TokenTypeIDToken, "audience", demo)
	if resp.StatusCode != http.StatusOK || body["access_token"] != at {
		t.Fatalf("replayed exchange: %d %v", resp.StatusCode, body)
	}
	evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditTokenRead})
	if len(evs) != 2 {
		t.Fatalf("audit %+v, want 2 token.read", evs)
	}
	wantActor := "workload:ci;iss=" + env.IDP.URL() + ";sub=repo:acme/app:ref:refs/heads/main"
	for i, ev := range evs {
		if ev.Actor != wantActor || ev.UserID != "alice" || ev.ProviderID != demo || ev.Outcome != "ok" || !strings.HasPrefix(ev.Detail, "jwt=sha256:") {
			t.Errorf("audit %+v, want actor %s", ev, wantActor)
		}
		if replay := strings.Contains(ev.Detail, " replay"); replay != (i == 0) { // newest first
			t.Errorf("event %d detail %q: replay mark wrong", i, ev.Detail)
		}
	}

	// Several users allowed: the user parameter names one.
	env.MustLink(t, "bob", httpapitest.ProviderBare, "bob")
	deploy := env.MintWorkloadJWT(t, fakeidp.WorkloadClaims{Subject: "deployer", Audience: []string{wlAudience + "/deploy"}})
	resp, body = exchangeJWT(t, env, deploy, httpapitest.ProviderBare)
	mustOAuthError(t, resp, body, 400, "invalid_request")
	resp, body = exchangeJWT(t, env, deploy, httpapitest.ProviderBare, "user", "bob")
	if resp.StatusCode != 200 {
		t.Fatalf("deploy for bob: %d %v", resp.StatusCode, body)
	}
	env.Logs.AddSecret(body["access_token"].(string))
}

// signRogue signs claims with a key the issuer never published.
func signRogue(t *testing.T, env *httpapitest.Env, alg jose.SignatureAlgorithm, key any, kid string, c fakeidp.WorkloadClaims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	now := env.Clock.Now()
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: env.IDP.URL(), Subject: c.Subject, Audience: jwt.Audience(c.Audience),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute))}).Claims(c.Extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(raw)
	return raw
}

// badJWTs returns JWTs that must all be refused, by name.
func badJWTs(t *testing.T, env *httpapitest.Env) map[string]string {
	t.Helper()
	other := idptest.MustStart(t, fakeidp.Config{OIDC: true, Now: env.Clock.Now})
	fromOther, err := other.MintWorkloadJWT(ciJob("alice"))
	if err != nil {
		t.Fatal(err)
	}
	env.Logs.AddSecret(fromOther)
	wrongAud := ciJob("alice")
	wrongAud.Audience = []string{"https://elsewhere.test"}
	expired := ciJob("alice")
	expired.IssuedAt = env.Clock.Now().Add(-20 * time.Minute)
	expired.TTL = 10 * time.Minute
	future := ciJob("alice")
	future.IssuedAt = env.Clock.Now().Add(10 * time.Minute)
	otherOrg := ciJob("alice")
	otherOrg.Extra["repository_owner"] = "evil"

	// "none": the claims of a valid job, unsigned.
	now := env.Clock.Now()
	claims, _ := json.Marshal(map[string]any{"iss": env.IDP.URL(), "sub": "repo:acme/app", "aud": wlAudience,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "repository_owner": "acme", "actor": "alice"})
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString(claims) + "."
	env.Logs.AddSecret(none)

	// HS256 with the issuer's public key (its JWK JSON) as the secret.
	var set jose.JSONWebKeySet
	resp, body := httpapitest.Do(t, env.Server.Client(), "GET", env.IDP.Endpoints().JWKS, "", "")
	if resp.StatusCode != 200 || json.Unmarshal(body, &set) != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS: %d %s", resp.StatusCode, body)
	}
	pub, _ := set.Keys[0].MarshalJSON()
	rogue, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"other issuer":          fromOther,
		"wrong audience":        env.MintWorkloadJWT(t, wrongAud),
		"expired":               env.MintWorkloadJWT(t, expired),
		"not yet valid":         env.MintWorkloadJWT(t, future),
		"claims outside policy": env.MintWorkloadJWT(t, otherOrg),
		"alg none":              none,
		"HS256 over public key": signRogue(t, env, jose.HS256, pub, set.Keys[0].KeyID, ciJob("alice")),
		"unknown kid":           signRogue(t, env, jose.RS256, rogue, "rogue", ciJob("alice")),
		"forged under its kid":  signRogue(t, env, jose.RS256, rogue, set.Keys[0].KeyID, ciJob("alice")),
	}
}

// Every bad JWT gets invalid_grant from the exchange and 401 from the REST
// API, changes nothing, and is counted; a user or provider outside the
// policy gets invalid_grant / invalid_target and 403.
func TestWorkloadRefusals(t *testing.T) {
	env := workloadEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	env.MustLink(t, "carol", demo, "carol")
	good := env.MintWorkloadJWT(t, ciJob("alice"))
	if resp, body := exchangeJWT(t, env, good, demo); resp.StatusCode != 200 {
		t.Fatalf("good JWT: %d %v", resp.StatusCode, body) // the JWKS is now cached
	}
	env.Logs.AddSecret(env.MustLink(t, "alice", demo, "alice").AccessToken)
	before := MustSnapshot(t, env, "alice", "carol")
	auditBefore := len(MustAudit(t, env, tokenbroker.AuditFilter{}))
	// A later refetch is allowed, so "unknown kid" is refused after one.
	env.Clock.Advance(identity.DefaultMinKeyRefetch)
	bad := badJWTs(t, env) // reads the JWKS itself, for the HS256 secret
	jwksBefore := env.IDP.Stats().Requests["jwks"]

	for name, raw := range bad {
		t.Run(name, func(t *testing.T) {
			resp, body := exchangeJWT(t, env, raw, demo)
			mustOAuthError(t, resp, body, 400, "invalid_grant")
			resp2, body2 := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), raw, "")
			MustProblem(t, resp2, body2, http.StatusUnauthorized, "unauthorized")
		})
	}
	if n := env.IDP.Stats().Requests["jwks"] - jwksBefore; n != 1 {
		t.Errorf("%d JWKS fetches for the bad JWTs, want 1 (the unknown kid's refetch)", n)
	}

	// Outside the policy: another user, a provider it may not use, a
	// trust entry without tokens:read.
	resp, body := exchangeJWT(t, env, good, demo, "user", "carol")
	mustOAuthError(t, resp, body, 400, "invalid_grant")
	resp2, body2 := env.Do(t, "GET", path("users", "carol", "providers", demo, "token"), good, "")
	MustProblem(t, resp2, body2, http.StatusForbidden, "forbidden")
	resp, body = exchangeJWT(t, env, good, httpapitest.ProviderBare)
	mustOAuthError(t, resp, body, 400, "invalid_target")
	resp2, body2 = env.Do(t, "GET", path("users", "alice", "providers", httpapitest.ProviderBare, "token"), good, "")
	MustProblem(t, resp2, body2, http.StatusForbidden, "forbidden")
	noread := env.MintWorkloadJWT(t, fakeidp.WorkloadClaims{Subject: "x", Audience: []string{wlAudience + "/noread"}})
	resp, body = exchangeJWT(t, env, noread, demo)
	mustOAuthError(t, resp, body, 400, "unauthorized_client")
	resp2, body2 = env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), noread, "")
	MustProblem(t, resp2, body2, http.StatusForbidden, "forbidden")

	if after := MustSnapshot(t, env, "alice", "carol"); after != before {
		t.Errorf("refused requests changed the store:\nbefore %s\nafter  %s", before, after)
	}
	if n := len(MustAudit(t, env, tokenbroker.AuditFilter{})); n != auditBefore {
		t.Errorf("refused requests wrote %d audit events", n-auditBefore)
	}
	for _, reason := range []string{"jwt_untrusted_issuer", "jwt_audience", "jwt_expired", "jwt_not_yet_valid", "jwt_no_matching_trust", "jwt_algorithm", "jwt_signature"} {
		if n := authFailures(t, env, reason); n < 2 {
			t.Errorf("tokenbroker_auth_failures_total{reason=%q} = %v, want at least 2", reason, n)
		}
	}
}

// The REST API accepts a workload JWT wherever an API key goes, with the
// trust entry's scopes and restrictions.
func TestWorkloadBearerREST(t *testing.T) {
	env := workloadEnv(t)
	issued := env.MustLink(t, "alice", demo, "alice")
	raw := env.MintWorkloadJWT(t, ciJob("alice"))

	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), raw, "")
	var tok apiv1.Token
	MustDecode(t, resp, body, http.StatusOK, &tok)
	if tok.AccessToken != issued.AccessToken {
		t.Fatal("wrong token")
	}
	// tokens:read only: links are not readable, keys not manageable.
	resp, body = env.Do(t, "GET", path("users", "alice", "links"), raw, "")
	MustProblem(t, resp, body, http.StatusForbidden, "forbidden")
	resp, body = env.Do(t, "GET", "/api/v1/api-keys", raw, "")
	MustProblem(t, resp, body, http.StatusForbidden, "forbidden")
	// The deploy entry has links:read, filtered to its providers.
	deploy := env.MintWorkloadJWT(t, fakeidp.WorkloadClaims{Subject: "deployer", Audience: []string{wlAudience + "/deploy"}})
	resp, body = env.Do(t, "GET", path("users", "alice", "links"), deploy, "")
	var links struct {
		Links []map[string]any `json:"links"`
	}
	MustDecode(t, resp, body, http.StatusOK, &links)
	if len(links.Links) != 1 {
		t.Errorf("links %v", links.Links)
	}
	evs := MustAudit(t, env, tokenbroker.AuditFilter{Action: tokenbroker.AuditTokenRead})
	if len(evs) != 1 || !strings.HasPrefix(evs[0].Actor, "workload:ci;") {
		t.Fatalf("audit %+v", evs)
	}
}

// The JWKS rotating at the issuer is followed on both paths.
func TestWorkloadKeyRotation(t *testing.T) {
	env := workloadEnv(t)
	env.MustLink(t, "alice", demo, "alice")
	old := env.MintWorkloadJWT(t, ciJob("alice"))
	if resp, body := exchangeJWT(t, env, old, demo); resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, body)
	}
	env.Clock.Advance(identity.DefaultMinKeyRefetch)
	if err := env.IDP.RotateSigningKey(true); err != nil {
		t.Fatal(err)
	}
	fresh := env.MintWorkloadJWT(t, ciJob("alice"))
	resp, body := env.Do(t, "GET", path("users", "alice", "providers", demo, "token"), fresh, "")
	if resp.StatusCode != 200 {
		t.Fatalf("JWT of the rotated key on REST: %d %s", resp.StatusCode, body)
	}
	if resp, body := exchangeJWT(t, env, fresh, demo); resp.StatusCode != 200 {
		t.Fatalf("JWT of the rotated key on exchange: %d %v", resp.StatusCode, body)
	}
	resp2, body2 := exchangeJWT(t, env, old, demo)
	mustOAuthError(t, resp2, body2, 400, "invalid_grant")
}

// Malformed exchanges are refused with the RFC 6749 §5.2 error each
// deserves; the link's own errors map to invalid_grant and invalid_scope.
func TestTokenExchangeErrors(t *testing.T) {
	env := workloadEnv(t)
	issued := env.MustLink(t, "alice", demo, "alice")
	raw := env.MintWorkloadJWT(t, ciJob("alice"))
	ge, st, jt := httpapi.GrantTypeTokenExchange, "subject_token", httpapi.TokenTypeJWT
	cases := []struct {
		name   string
		params []string
		status int
		code   string
	}{
		{"no grant_type", []string{st, raw}, 400, "invalid_request"},
		{"other grant", []string{"grant_type", "client_credentials"}, 400, "unsupported_grant_type"},
		{"no subject_token", []string{"grant_type", ge, "subject_token_type", jt, "audience", demo}, 400, "invalid_request"},
		{"no subject_token_type", []string{"grant_type", ge, st, raw, "audience", demo}, 400, "invalid_request"},
		{"saml", []string{"grant_type", ge, st, raw, "subject_token_type", "urn:ietf:params:oauth:token-type:saml2", "audience", demo}, 400, "invalid_request"},
		{"refresh token wanted", []string{"grant_type", ge, st, raw, "subject_token_type", jt, "audience", demo, "requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"}, 400, "invalid_request"},
		{"no audience", []string{"grant_type", ge, st, raw, "subject_token_type", jt}, 400, "invalid_request"},
		{"two audiences", []string{"grant_type", ge, st, raw, "subject_token_type", jt, "audience", demo, "audience", "bare"}, 400, "invalid_request"},
		{"unknown provider", []string{"grant_type", ge, st, raw, "subject_token_type", jt, "audience", "nope"}, 400, "invalid_target"},
		{"resource", []string{"grant_type", ge, st, raw, "subject_token_type", jt, "audience", demo, "resource", "https://x"}, 400, "invalid_target"},
		{"actor token", []string{"grant_type", ge, st, raw, "subject_token_type", jt, "audience", demo, "actor_token", raw}, 400, "invalid_request"},
		{"scope beyond the link", []string{"grant_type", ge, st, raw, "subject_token_type", jt, "audience", demo, "scope", "read admin"}, 400, "invalid_scope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := exchange(t, env, c.params...)
			mustOAuthError(t, resp, body, c.status, c.code)
		})
	}
	// Not a form.
	resp, body := httpapitest.Do(t, env.Server.Client(), "POST", env.URL+"/oauth2/token", "", `{"grant_type":"x"}`)
	if resp.StatusCode != 400 || !strings.Contains(string(body), `"invalid_request"`) {
		t.Errorf("JSON body: %d %s", resp.StatusCode, body)
	}

	// No link for the user: invalid_grant. A broken link: invalid_grant
	// saying the user must connect again.
	bobJWT := env.MintWorkloadJWT(t, ciJob("bob"))
	r, b := exchangeJWT(t, env, bobJWT, demo)
	mustOAuthError(t, r, b, 400, "invalid_grant")
	MustBreakLink(t, env, issued)
	raw = env.MintWorkloadJWT(t, ciJob("alice"))
	r, b = exchangeJWT(t, env, raw, demo)
	mustOAuthError(t, r, b, 400, "invalid_grant")
	if d, _ := b["error_description"].(string); !strings.Contains(d, "connect again") {
		t.Errorf("description %q", d)
	}
}

// authFailures reads tokenbroker_auth_failures_total{reason}.
func authFailures(t *testing.T, env *httpapitest.Env, reason string) float64 {
	t.Helper()
	mfs, err := env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tokenbroker_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
