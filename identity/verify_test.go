package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/identity"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
	"github.com/tokenbroker/tokenbroker/internal/testclock"
	"github.com/tokenbroker/tokenbroker/provider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const aud = "https://tokenbroker.test"

type env struct {
	clock *testclock.Clock // shared by the issuer and the verifier
	idp   *fakeidp.Server
	v     *identity.Verifier
}

// trusts are the entries of every test: CI jobs of acme acting for their
// actor, and a deploy job acting for two fixed users.
func trusts(issuer string) []identity.Trust {
	return []identity.Trust{
		{ID: "ci", Issuer: issuer, Audience: aud, Subject: "repo:acme/*", Claims: map[string]string{"repository_owner": "acme", "runner_environment": "github-hosted"},
			UserClaim: "actor", Providers: []string{"github"}},
		{ID: "deploy", Issuer: issuer, Audience: aud + "/deploy", Users: []string{"alice", "bob"}, Providers: []string{"github", "gitlab"},
			Scopes: []string{"tokens:read", "links:read"}},
	}
}

func mustEnv(t *testing.T, opts ...func(*identity.Config)) *env {
	t.Helper()
	c := testclock.New(time.Now().UTC().Truncate(time.Second))
	idp := idptest.MustStart(t, fakeidp.Config{OIDC: true, Now: c.Now})
	cfg := &identity.Config{WorkloadIdentities: trusts(idp.URL())}
	for _, o := range opts {
		o(cfg)
	}
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	v, err := identity.NewVerifier(cfg, identity.Options{Now: c.Now, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return &env{clock: c, idp: idp, v: v}
}

// ciClaims are a GitHub Actions-like job's claims.
func ciClaims(actor string) fakeidp.WorkloadClaims {
	return fakeidp.WorkloadClaims{
		Subject:  "repo:acme/app:ref:refs/heads/main",
		Audience: []string{aud},
		Extra:    map[string]any{"repository_owner": "acme", "runner_environment": "github-hosted", "actor": actor},
	}
}

func (e *env) mint(t *testing.T, c fakeidp.WorkloadClaims) string {
	t.Helper()
	raw, err := e.idp.MintWorkloadJWT(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// mustRefuse checks that raw is refused for reason.
func (e *env) mustRefuse(t *testing.T, raw, reason string) {
	t.Helper()
	w, err := e.v.Verify(context.Background(), raw)
	var ie *identity.Error
	if !errors.As(err, &ie) {
		t.Fatalf("Verify = %+v, %v; want refusal %s", w, err, reason)
	}
	if ie.Reason != reason {
		t.Fatalf("refused for %s (%s), want %s", ie.Reason, ie.Msg, reason)
	}
	if strings.Contains(ie.Error(), raw) {
		t.Fatal("the error holds the JWT")
	}
}

func TestAcceptsTrustedJWT(t *testing.T) {
	e := mustEnv(t)
	raw := e.mint(t, ciClaims("alice"))
	w, err := e.v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatal(err)
	}
	if w.TrustID != "ci" || w.Issuer != e.idp.URL() || w.Subject != "repo:acme/app:ref:refs/heads/main" {
		t.Errorf("workload %+v", w)
	}
	if len(w.Users) != 1 || w.Users[0] != "alice" || len(w.Providers) != 1 || w.Providers[0] != "github" {
		t.Errorf("policy users %v providers %v, want the actor and github", w.Users, w.Providers)
	}
	if len(w.Scopes) != 1 || w.Scopes[0] != "tokens:read" {
		t.Errorf("scopes %v, want the default tokens:read", w.Scopes)
	}
	if !strings.HasPrefix(w.TokenID, "sha256:") {
		t.Errorf("token id %q", w.TokenID)
	}
	// A bearer token may be presented again.
	w2, err := e.v.Verify(context.Background(), raw)
	if err != nil || w2.TokenID != w.TokenID {
		t.Fatalf("replay: %+v, %v; want accepted, with the same token id", w2, err)
	}

	// The second entry: its own audience, a list of users, its scopes.
	c := fakeidp.WorkloadClaims{Subject: "deployer", Audience: []string{"other", aud + "/deploy"}, ID: "job-42"}
	w, err = e.v.Verify(context.Background(), e.mint(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if w.TrustID != "deploy" || strings.Join(w.Users, ",") != "alice,bob" || strings.Join(w.Scopes, ",") != "tokens:read,links:read" || w.TokenID != "jti:job-42" {
		t.Errorf("workload %+v", w)
	}
}

func TestRefusals(t *testing.T) {
	e := mustEnv(t)
	other := idptest.MustStart(t, fakeidp.Config{OIDC: true, Now: e.clock.Now})
	otherRaw, err := other.MintWorkloadJWT(ciClaims("alice"))
	if err != nil {
		t.Fatal(err)
	}
	e.mustRefuse(t, otherRaw, identity.ReasonUntrustedIssuer)

	wrongAud := ciClaims("alice")
	wrongAud.Audience = []string{"https://elsewhere.test"}
	e.mustRefuse(t, e.mint(t, wrongAud), identity.ReasonAudience)

	wrongSub := ciClaims("alice")
	wrongSub.Subject = "repo:evil/app:ref:refs/heads/main"
	e.mustRefuse(t, e.mint(t, wrongSub), identity.ReasonNoMatch)

	wrongClaim := ciClaims("alice")
	wrongClaim.Extra["repository_owner"] = "evil"
	e.mustRefuse(t, e.mint(t, wrongClaim), identity.ReasonNoMatch)

	selfHosted := ciClaims("alice")
	delete(selfHosted.Extra, "runner_environment")
	e.mustRefuse(t, e.mint(t, selfHosted), identity.ReasonNoMatch)

	noActor := ciClaims("alice")
	delete(noActor.Extra, "actor")
	e.mustRefuse(t, e.mint(t, noActor), identity.ReasonUser)
	e.mustRefuse(t, e.mint(t, ciClaims("not a user id")), identity.ReasonUser)

	future := ciClaims("alice")
	future.IssuedAt = e.clock.Now().Add(5 * time.Minute)
	e.mustRefuse(t, e.mint(t, future), identity.ReasonNotYetValid)

	old := ciClaims("alice")
	old.IssuedAt = e.clock.Now().Add(-2 * time.Hour)
	old.TTL = 3 * time.Hour
	e.mustRefuse(t, e.mint(t, old), identity.ReasonTooOld)

	e.mustRefuse(t, "not.a.jwt", identity.ReasonMalformed)
	e.mustRefuse(t, "tbk_abc_def", identity.ReasonMalformed)

	// Expired: valid now, refused once exp plus the leeway has passed.
	raw := e.mint(t, ciClaims("alice"))
	if _, err := e.v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(fakeidp.DefaultWorkloadTTL + identity.Leeway + time.Second)
	e.mustRefuse(t, raw, identity.ReasonExpired)
}

// header.payload of a JWT with the claims of a valid CI token.
func unsignedParts(t *testing.T, e *env, hdr map[string]any) string {
	t.Helper()
	now := e.clock.Now()
	claims := map[string]any{"iss": e.idp.URL(), "sub": "repo:acme/app", "aud": aud, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"repository_owner": "acme", "runner_environment": "github-hosted", "actor": "alice"}
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
}

// "none" and HS256 "signed" with the issuer's public key are refused
// before any key is looked at.
func TestAlgorithmAllowList(t *testing.T) {
	e := mustEnv(t)
	e.mustRefuse(t, unsignedParts(t, e, map[string]any{"alg": "none"})+".", identity.ReasonAlgorithm)

	// Fetch the published key and use its JSON as an HMAC secret.
	if _, err := e.v.Verify(context.Background(), e.mint(t, ciClaims("alice"))); err != nil {
		t.Fatal(err)
	}
	set := publishedKeys(t, e)
	pubJSON, _ := set.Keys[0].MarshalJSON()
	for _, secret := range [][]byte{pubJSON, set.Keys[0].Key.(*rsa.PublicKey).N.Bytes()} {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret},
			(&jose.SignerOptions{}).WithHeader("kid", set.Keys[0].KeyID))
		if err != nil {
			t.Fatal(err)
		}
		e.mustRefuse(t, signCI(t, e, signer), identity.ReasonAlgorithm)
	}
}

// signWith signs CI claims with a key the issuer never published.
func signWith(t *testing.T, e *env, key any, alg jose.SignatureAlgorithm, kid string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return signCI(t, e, signer)
}

// signCI signs the claims of a CI job of acme acting for alice, valid for a
// minute from now on e's clock, with signer.
func signCI(t *testing.T, e *env, signer jose.Signer) string {
	t.Helper()
	now := e.clock.Now()
	raw, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: e.idp.URL(), Subject: "repo:acme/app", Audience: jwt.Audience{aud},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute))}).
		Claims(map[string]any{"repository_owner": "acme", "runner_environment": "github-hosted", "actor": "alice"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func jwksFetches(e *env) int64 { return e.idp.Stats().Requests["jwks"] }

// A kid the issuer does not publish is refused after one refetch of the
// key set; more made-up kids within MinKeyRefetch cause no fetch at all.
func TestUnknownKeyIDAndRefetchBound(t *testing.T) {
	e := mustEnv(t)
	if _, err := e.v.Verify(context.Background(), e.mint(t, ciClaims("alice"))); err != nil {
		t.Fatal(err)
	}
	if n := jwksFetches(e); n != 1 {
		t.Fatalf("%d JWKS fetches after the first JWT, want 1", n)
	}
	rogue, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(identity.DefaultMinKeyRefetch)
	e.mustRefuse(t, signWith(t, e, rogue, jose.RS256, "rogue-1"), identity.ReasonSignature)
	if n := jwksFetches(e); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2: an unknown kid refetches once", n)
	}
	for i := range 5 {
		e.mustRefuse(t, signWith(t, e, rogue, jose.RS256, "rogue-x"+string(rune('a'+i))), identity.ReasonSignature)
	}
	if n := jwksFetches(e); n != 2 {
		t.Fatalf("%d JWKS fetches, want still 2: refetches are bounded", n)
	}
	// A forged signature under a published kid is refused too.
	pubKID := publishedKeys(t, e).Keys[0].KeyID
	e.mustRefuse(t, signWith(t, e, rogue, jose.RS256, pubKID), identity.ReasonSignature)
}

// publishedKeys reads the issuer's JWKS.
func publishedKeys(t *testing.T, e *env) jose.JSONWebKeySet {
	t.Helper()
	var set jose.JSONWebKeySet
	resp, err := http.Get(e.idp.Endpoints().JWKS)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	return set
}

// A rotation at the issuer is followed: a JWT signed by the new key
// verifies at once (its kid triggers a refetch); once the old key is
// retired and the cache refreshed, JWTs of the old key are refused.
func TestKeyRotationFollowed(t *testing.T) {
	e := mustEnv(t)
	oldRaw := e.mint(t, ciClaims("alice"))
	if _, err := e.v.Verify(context.Background(), oldRaw); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(identity.DefaultMinKeyRefetch)
	if err := e.idp.RotateSigningKey(true); err != nil {
		t.Fatal(err)
	}
	newRaw := e.mint(t, ciClaims("bob"))
	w, err := e.v.Verify(context.Background(), newRaw)
	if err != nil {
		t.Fatalf("JWT of the rotated key: %v", err)
	}
	if w.Users[0] != "bob" {
		t.Fatalf("users %v", w.Users)
	}
	e.mustRefuse(t, oldRaw, identity.ReasonSignature)
}

// Keys are refetched when older than KeyRefresh, so a key the issuer
// retired stops verifying even when no new kid shows up.
func TestKeysRefreshedWhenOld(t *testing.T) {
	e := mustEnv(t)
	raw := e.mint(t, fakeidp.WorkloadClaims{Subject: "s", Audience: []string{aud + "/deploy"}, TTL: time.Hour})
	if _, err := e.v.Verify(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	if err := e.idp.RotateSigningKey(true); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.v.Verify(context.Background(), raw); err != nil {
		t.Fatalf("a cached key stays trusted until the refresh: %v", err)
	}
	e.clock.Advance(identity.DefaultKeyRefresh)
	e.mustRefuse(t, raw, identity.ReasonSignature)
}

// An issuer whose keys cannot be fetched refuses with keys_unavailable.
func TestIssuerDown(t *testing.T) {
	e := mustEnv(t)
	raw := e.mint(t, ciClaims("alice"))
	e.idp.Close()
	e.mustRefuse(t, raw, identity.ReasonKeysUnavailable)
}

// A static jwks_file (a SPIFFE bundle) verifies ES256 and EdDSA JWT-SVIDs.
func TestJWKSFile(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: ec, KeyID: "ec1", Use: "sig"}, // a key pair: only its public half is kept
		{Key: rs.Public(), KeyID: "rs1", Use: "sig", Algorithm: "RS256"},
		{Key: ed.Public(), KeyID: "ed1", Use: "sig"},
		{Key: []byte("symmetric keys are ignored"), KeyID: "hs", Algorithm: "HS256"},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bundle.jwks")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	const td = "spiffe://example.org"
	cfg := &identity.Config{WorkloadIdentities: []identity.Trust{{
		ID: "spiffe", Issuer: td, JWKSFile: path, Audience: "tokenbroker", Subject: td + "/ns/builds/sa/*",
		Users: []string{"builder"}, Providers: []string{"github"},
	}}}
	if err := cfg.Validate(nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v, err := identity.NewVerifier(cfg, identity.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(key any, alg jose.SignatureAlgorithm, kid, sub string) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jwt.Signed(signer).Claims(jwt.Claims{Issuer: td, Subject: sub, Audience: jwt.Audience{"tokenbroker"},
			Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute))}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for _, raw := range []string{
		mint(ec, jose.ES256, "ec1", td+"/ns/builds/sa/ci"),
		mint(ed, jose.EdDSA, "ed1", td+"/ns/builds/sa/ci"),
		mint(rs, jose.RS256, "rs1", td+"/ns/builds/sa/ci"),
	} {
		w, err := v.Verify(context.Background(), raw)
		if err != nil {
			t.Fatal(err)
		}
		if w.TrustID != "spiffe" || w.Users[0] != "builder" {
			t.Errorf("workload %+v", w)
		}
	}
	if _, err := v.Verify(context.Background(), mint(ec, jose.ES256, "ec1", td+"/ns/other/sa/ci")); err == nil {
		t.Error("a subject outside the glob was accepted")
	}
	if _, err := v.Verify(context.Background(), mint(ed, jose.EdDSA, "ec1", td+"/ns/builds/sa/ci")); err == nil {
		t.Error("a JWT signed by another key than its kid's was accepted")
	}
	// A key that declares RS256 is not used for PS256, though the
	// signature is the same key's.
	if _, err := v.Verify(context.Background(), mint(rs, jose.PS256, "rs1", td+"/ns/builds/sa/ci")); err == nil {
		t.Error("a key declared for RS256 verified a PS256 JWT")
	}
	// Without iat, a JWT valid for longer than max_token_age is refused.
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: ec, KeyID: "ec1"}}, nil)
	long, _ := jwt.Signed(signer).Claims(jwt.Claims{Issuer: td, Subject: td + "/ns/builds/sa/ci", Audience: jwt.Audience{"tokenbroker"},
		Expiry: jwt.NewNumericDate(now.Add(3 * time.Hour))}).Serialize()
	var ie *identity.Error
	if _, err := v.Verify(context.Background(), long); !errors.As(err, &ie) || ie.Reason != identity.ReasonTooOld {
		t.Errorf("long-lived JWT without iat: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	dur := func(d time.Duration) *provider.Duration { x := provider.Duration(d); return &x }
	good := identity.Trust{ID: "ok", Issuer: "https://issuer.example", Audience: "a", Users: []string{"u"}, Providers: []string{"github"}}
	cases := []struct {
		name string
		mod  func(*identity.Trust)
		want string
	}{
		{"no id", func(t *identity.Trust) { t.ID = "" }, "id: required"},
		{"no issuer", func(t *identity.Trust) { t.Issuer = "" }, "issuer: required"},
		{"http issuer", func(t *identity.Trust) { t.Issuer = "http://issuer.example" }, "must use https"},
		{"non-URL issuer without jwks_file", func(t *identity.Trust) { t.Issuer = "spiffe://x" }, "scheme must be https"},
		{"no audience", func(t *identity.Trust) { t.Audience = "" }, "audience: required"},
		{"no users", func(t *identity.Trust) { t.Users = nil }, "set user_claim"},
		{"both users and claim", func(t *identity.Trust) { t.UserClaim = "actor" }, "not both"},
		{"bad user", func(t *identity.Trust) { t.Users = []string{"a b"} }, "invalid user id"},
		{"no providers", func(t *identity.Trust) { t.Providers = nil }, "providers: required"},
		{"unknown provider", func(t *identity.Trust) { t.Providers = []string{"gitlab"} }, "no such provider"},
		{"admin", func(t *identity.Trust) { t.Scopes = []string{"admin"} }, "admin cannot"},
		{"unknown scope", func(t *identity.Trust) { t.Scopes = []string{"x"} }, `"x": want`},
		{"registered claim", func(t *identity.Trust) { t.Claims = map[string]string{"aud": "x"} }, "remove it"},
		{"max age", func(t *identity.Trust) { t.MaxTokenAge = dur(48 * time.Hour) }, "max_token_age"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := good
			c.mod(&tr)
			err := (&identity.Config{WorkloadIdentities: []identity.Trust{tr}}).Validate([]string{"github"})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate = %v, want %q", err, c.want)
			}
		})
	}
	if err := (&identity.Config{WorkloadIdentities: []identity.Trust{good, good}}).Validate(nil); err == nil || !strings.Contains(err.Error(), "duplicate id") {
		t.Errorf("duplicate ids: %v", err)
	}
	other := good
	other.ID, other.JWKSFile = "other", "/etc/keys.jwks"
	if err := (&identity.Config{WorkloadIdentities: []identity.Trust{good, other}}).Validate(nil); err == nil || !strings.Contains(err.Error(), "same issuer") {
		t.Errorf("one issuer, two key sources: %v", err)
	}
	if err := (&identity.Config{WorkloadIdentities: []identity.Trust{good}}).Validate([]string{"github"}); err != nil {
		t.Errorf("good entry: %v", err)
	}
}
