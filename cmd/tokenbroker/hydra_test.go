package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/internal/bench"
	"github.com/tokenbroker/tokenbroker/internal/browsertest"
	"github.com/tokenbroker/tokenbroker/internal/hydratest"
	"github.com/tokenbroker/tokenbroker/internal/pgtest"
	"github.com/tokenbroker/tokenbroker/provider"
)

// hydraScopes are the scopes the broker asks Hydra for: offline_access,
// without which Hydra issues no refresh token.
const hydraScopes = "openid,offline_access,read"

// hydraBroker is a set of `tokenbroker serve` replicas (one on SQLite, or
// several on one PostgreSQL database) whose provider "hydra" (kind oidc,
// discovered from the issuer) is a client registered at Hydra.
type hydraBroker struct {
	replicas []*bench.Replica
	apiKey   string
	admin    *client.Client
	client   hydratest.Client
}

// startHydraBroker starts n replicas against hs, registers their callback
// at Hydra, and creates an admin key. dbURL empty means SQLite (n = 1).
func startHydraBroker(t *testing.T, hs *hydratest.Server, n int, dbURL string, clientID string) *hydraBroker {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	key, err := crypt.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := clientID + "-secret-0123456789"
	const id = "HYDRA"
	env := childEnv(
		"TOKENBROKER_ENCRYPTION_KEYS="+key,
		"TOKENBROKER_DATABASE_URL="+dbURL,
		"TOKENBROKER_DATA_DIR="+filepath.Join(t.TempDir(), "data"),
		"TOKENBROKER_LOG_LEVEL=warn",
		"TOKENBROKER_PROVIDER_"+id+"_KIND=oidc",
		"TOKENBROKER_PROVIDER_"+id+"_DISPLAY_NAME=Ory Hydra",
		"TOKENBROKER_PROVIDER_"+id+"_ISSUER="+hs.URL,
		"TOKENBROKER_PROVIDER_"+id+"_CLIENT_ID="+clientID,
		"TOKENBROKER_PROVIDER_"+id+"_CLIENT_SECRET="+secret,
		"TOKENBROKER_PROVIDER_"+id+"_SCOPES="+hydraScopes,
		"TOKENBROKER_PROVIDER_"+id+"_REFRESH_AHEAD=0s",
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	apiKey, err := bench.Setup(ctx, exe, env)
	if err != nil {
		t.Fatal(err)
	}
	b := &hydraBroker{apiKey: apiKey}
	t.Cleanup(func() {
		for _, r := range b.replicas {
			if err := r.Stop(); err != nil {
				t.Errorf("stop %s: %v", r.Name, err)
			}
			assertNoHydraSecretsLogged(t, r.Logs())
		}
	})
	var callbacks []string
	for i := range n {
		r, err := bench.StartReplica(ctx, fmt.Sprintf("replica-%d", i), exe,
			[]string{"serve", "--addr", "127.0.0.1:0", "--replica-id", fmt.Sprintf("r%d", i), "--lease-ttl", "10s", "--provider-timeout", "3s"}, env)
		if err != nil {
			t.Fatal(err)
		}
		b.replicas = append(b.replicas, r)
		callbacks = append(callbacks, r.URL+"/oauth/callback")
	}
	b.client = hs.CreateClient(t, hydratest.Client{ID: clientID, Secret: secret, RedirectURIs: callbacks})
	b.admin = client.New(b.replicas[0].URL, apiKey)
	return b
}

// assertNoHydraSecretsLogged fails t if a log holds one of Hydra's tokens
// or an API key.
func assertNoHydraSecretsLogged(t *testing.T, logs ...string) {
	t.Helper()
	assertNoMarkerLogged(t, []string{"ory_at_", "ory_rt_", "ory_ac_", "tbk_", "Bearer "}, logs...)
}

// importHydraLink has Hydra issue a token for subject through the code
// flow and stores it as userID's link; with stale set, the broker is told
// the access token has expired, so its next use refreshes.
func (b *hydraBroker) importHydraLink(t *testing.T, hs *hydratest.Server, userID string, stale bool) (accessToken, refreshToken string) {
	t.Helper()
	tok := hs.IssueToken(t, b.client, b.client.RedirectURIs[0], strings.Split(hydraScopes, ",")...)
	if tok.RefreshToken == "" {
		t.Fatal("Hydra issued no refresh token")
	}
	expiry := tok.Expiry
	if stale {
		expiry = time.Now().Add(-time.Minute)
	}
	if _, err := b.admin.ImportLink(context.Background(), userID, "hydra", client.ImportRequest{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: &expiry,
		Scopes: strings.Split(hydraScopes, ","),
	}); err != nil {
		t.Fatalf("import link: %v", err)
	}
	return tok.AccessToken, tok.RefreshToken
}

// TestHydra runs the broker against Ory Hydra, a real OAuth2 and OpenID
// Connect server, with refresh-token rotation and reuse detection: the
// connect flow in a browser, a refresh token replayed behind the broker's
// back, revocation when a link is deleted, and a herd of callers on three
// replicas.
func TestHydra(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	start := time.Now()
	hydratest.Binary(t)
	t.Logf("hydra binary ready in %s", hydratest.BuildTime())
	hs := hydratest.Start(t, hydratest.Options{})
	t.Logf("hydra ready in %s", time.Since(start))

	t.Run("connect in a browser", func(t *testing.T) {
		b := startHydraBroker(t, hs, 1, "", "tb-browser")
		ctx := context.Background()
		sess, err := b.admin.CreateConnectSession(ctx, client.ConnectSessionRequest{UserID: "u-browser", Providers: []string{"hydra"}})
		if err != nil {
			t.Fatal(err)
		}
		browser := browsertest.MustStart(t, 60*time.Second)
		flowCtx, cancelFlow := context.WithTimeout(browser, 30*time.Second)
		defer cancelFlow()
		err = chromedp.Do(flowCtx,
			chromedp.Navigate(sess.URL),
			chromedp.Click(chromedp.CSS(`button[type=submit]`)),
			// The login app: Hydra sends the browser to it and back.
			chromedp.WaitVisible(chromedp.ID(`signin`)),
			chromedp.SetValue(chromedp.ID(`subject`), "alice"),
			chromedp.Click(chromedp.ID(`signin`)),
			chromedp.WaitVisible(chromedp.CSS(`.status-ok`)),
		)
		if err != nil {
			loc, _ := chromedp.Run(browser, chromedp.Location())
			page, _ := chromedp.Run(browser, chromedp.OuterHTML(chromedp.CSS(`html`)))
			t.Fatalf("browser: %v at %s\n%s\nreplica log:\n%s\nhydra log:\n%s", err, loc, page, b.replicas[0].Logs(), hs.Logs())
		}
		banner, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`[role=status]`)))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(banner, "as alice") {
			t.Errorf("banner %q does not name alice", banner)
		}
		l, err := b.admin.Link(ctx, "u-browser", "hydra")
		if err != nil || l.State != "active" || l.AccountID != "alice" || l.AccountLogin != "alice" {
			t.Fatalf("link = %+v, %v", l, err)
		}
		tok, err := b.admin.Token(ctx, "u-browser", "hydra", 0)
		if err != nil {
			t.Fatal(err)
		}
		if in := hs.Introspect(t, tok.AccessToken); !in.Active || in.Subject != "alice" {
			t.Fatalf("the access token the broker hands out is not active at Hydra: %+v", in)
		}
		if st := hs.Stats(); st.CodeExchanges != 1 || st.Refreshes != 0 {
			t.Fatalf("Hydra saw %+v, want one code exchange and no refresh", st)
		}
	})

	t.Run("replayed refresh token", func(t *testing.T) {
		// Someone spends the link's refresh token behind the broker's
		// back: Hydra rotates it, then revokes the whole grant when the
		// broker presents it. The broker must call that a dead grant
		// (reconnect), not a provider outage, and must not retry it.
		b := startHydraBroker(t, hs, 1, "", "tb-replay")
		_, rt := b.importHydraLink(t, hs, "u-replay", true)
		conf := hs.OAuth2Config(b.client, "")
		stolen := conf.TokenSource(context.Background(), expired(rt))
		if _, err := stolen.Token(); err != nil {
			t.Fatalf("the thief's refresh: %v", err)
		}
		hs.ResetStats()
		ctx := context.Background()
		_, err := b.admin.Token(ctx, "u-replay", "hydra", 0) // the broker believes it expired: refresh
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != "reauth_required" {
			t.Fatalf("token after a replay: %v, want reauth_required", err)
		}
		if st := hs.Stats(); st.Refreshes != 1 || st.RefreshFailures != 1 {
			t.Fatalf("Hydra saw %+v, want exactly one refresh, refused", st)
		}
		l, err := b.admin.Link(ctx, "u-replay", "hydra")
		if err != nil || l.State != "reauth_required" {
			t.Fatalf("link after a replay = %+v, %v; want reauth_required", l, err)
		}
		// Asking again does not send the dead refresh token again.
		if _, err := b.admin.Token(ctx, "u-replay", "hydra", 0); !errors.As(err, &ce) || ce.Code != "reauth_required" {
			t.Fatalf("second token request: %v", err)
		}
		if st := hs.Stats(); st.Refreshes != 1 {
			t.Fatalf("the broker sent the refused refresh token again: %+v", st)
		}
	})

	t.Run("classification of Hydra's answers", func(t *testing.T) {
		// The provider package, as the broker configures it, against
		// Hydra's real refusals: a replayed refresh token rejects the
		// grant (the link must be reconnected), a wrong client secret is
		// the operator's problem (the link stays).
		c := hs.CreateClient(t, hydratest.Client{ID: "tb-classify", Secret: "tb-classify-secret-0123456789", RedirectURIs: []string{"http://127.0.0.1:1/cb"}})
		newProvider := func(secret string) tokenbroker.Provider {
			p, err := provider.New(context.Background(), provider.ProviderConfig{
				ID: "hydra", Kind: provider.KindOIDC, Issuer: hs.URL, ClientID: c.ID, ClientSecret: secret,
				Scopes: strings.Split(hydraScopes, ","),
			}, provider.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		p := newProvider(c.Secret)
		tok := hs.IssueToken(t, c, c.RedirectURIs[0], strings.Split(hydraScopes, ",")...)
		ctx := context.Background()
		if _, err := p.Refresh(ctx, tok.RefreshToken); err != nil {
			t.Fatalf("first refresh: %v", err)
		}
		_, err := p.Refresh(ctx, tok.RefreshToken)
		var pe *tokenbroker.ProviderError
		if !errors.As(err, &pe) || pe.Class != tokenbroker.FailureRejected || pe.Code != "invalid_grant" || pe.StatusCode != 400 {
			t.Fatalf("replayed refresh token: %v; want a rejected invalid_grant (400)", err)
		}
		_, err = newProvider("wrong-secret").Refresh(ctx, hs.IssueToken(t, c, c.RedirectURIs[0], strings.Split(hydraScopes, ",")...).RefreshToken)
		if !errors.As(err, &pe) || pe.Class != tokenbroker.FailureClient || pe.Code != "invalid_client" {
			t.Fatalf("wrong client secret: %v; want a client failure (invalid_client)", err)
		}
	})

	t.Run("revocation on delete", func(t *testing.T) {
		b := startHydraBroker(t, hs, 1, "", "tb-revoke")
		at, rt := b.importHydraLink(t, hs, "u-revoke", false)
		hs.ResetStats()
		res, err := b.admin.DeleteLink(context.Background(), "u-revoke", "hydra")
		if err != nil || !res.Deleted || res.Revocation != "revoked" {
			t.Fatalf("delete = %+v, %v; want deleted and revoked", res, err)
		}
		if st := hs.Stats(); st.Revocations != 1 {
			t.Fatalf("Hydra saw %d revocation requests, want 1", st.Revocations)
		}
		for name, tok := range map[string]string{"refresh": rt, "access": at} {
			if in := hs.Introspect(t, tok); in.Active {
				t.Errorf("the %s token is still active at Hydra after the link was deleted", name)
			}
		}
	})

	t.Run("herd on three replicas", func(t *testing.T) {
		pgtest.RequireBinaries(t)
		b := startHydraBroker(t, hs, 3, pgtest.NewDatabase(t), "tb-herd")
		hs.SetAccessTokenLifespan(t, b.client.ID, 2*time.Second)
		hydraHerd(t, hs, b, 3, 30)
	})
}

// hydraHerd seeds one link, then for each of rounds expiries starts
// callers callers per replica at once, and checks that each expiry cost
// Hydra exactly one refresh, that no refresh token went out twice, that no
// caller failed and that all callers of a round got the same token.
func hydraHerd(t *testing.T, hs *hydratest.Server, b *hydraBroker, rounds, callers int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b.importHydraLink(t, hs, "u-herd", false)
	clients := make([]*client.Client, len(b.replicas))
	for i, r := range b.replicas {
		clients[i] = client.New(r.URL, b.apiKey)
	}
	tok, err := clients[0].Token(ctx, "u-herd", "hydra", 0)
	if err != nil {
		t.Fatal(err)
	}
	hs.ResetStats()
	expiry := tok.Expiry
	for round := range rounds {
		// The herd's moment: the token has just expired.
		timer := time.NewTimer(time.Until(expiry) + 20*time.Millisecond)
		select {
		case <-timer.C:
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		var mu sync.Mutex
		tokens := map[string]bool{}
		var errs []error
		var wg sync.WaitGroup
		startCallers := make(chan struct{})
		for _, c := range clients {
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-startCallers
					tok, err := c.Token(ctx, "u-herd", "hydra", 0)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					tokens[tok.AccessToken] = true
					if tok.Expiry.After(expiry) {
						expiry = tok.Expiry
					}
				}()
			}
		}
		close(startCallers)
		wg.Wait()
		st := hs.Stats()
		if len(errs) > 0 || len(tokens) != 1 || st.Refreshes != round+1 || st.RefreshFailures != 0 || st.ReusedRefreshTokens != 0 {
			t.Fatalf("round %d: %d caller errors (first %v), %d distinct tokens, Hydra saw %+v; want no error, one token, %d refreshes",
				round+1, len(errs), first(errs), len(tokens), st, round+1)
		}
	}
	t.Logf("herd: %d rounds x %d replicas x %d callers, Hydra refreshes %d", rounds, len(b.replicas), callers, hs.Stats().Refreshes)
}

// expired is a token with only a refresh token, which an oauth2.TokenSource
// refreshes at once.
func expired(refreshToken string) *oauth2.Token { return &oauth2.Token{RefreshToken: refreshToken} }

func first(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}
