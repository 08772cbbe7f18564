package crypt_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/crypt"
	"github.com/tokenbroker/tokenbroker/internal/testdb"
	"github.com/tokenbroker/tokenbroker/internal/testenv"
)

// backend names a real store for the table of [forEachStore].
type backend struct {
	name string
	open func(testing.TB) tokenbroker.Store
	// dump returns a textual dump of the whole database, or skips.
	dump func(testing.TB, tokenbroker.Store) string
}

// backends lists the stores the decorator is tested against. Postgres is
// added by postgres_test.go.
var backends = []backend{{
	name: "sqlite",
	open: func(tb testing.TB) tokenbroker.Store { return testdb.SQLite(tb) },
	dump: dumpSQLite,
}}

// forEachStore runs f against a fresh store of each backend.
func forEachStore(t *testing.T, f func(t *testing.T, b backend, inner tokenbroker.Store)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			f(t, b, b.open(t))
		})
	}
}

func dumpSQLite(tb testing.TB, s tokenbroker.Store) string {
	tb.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		testenv.Missing(tb, "sqlite3 not installed (apt-get install -y sqlite3)")
	}
	p, ok := s.(interface{ Path() string })
	if !ok {
		tb.Fatalf("store %T has no Path", s)
	}
	out, err := exec.Command(bin, "-readonly", p.Path(), ".dump").Output()
	if err != nil {
		tb.Fatalf("sqlite3 .dump: %v", err)
	}
	return string(out)
}

// MustPutLink puts a link through s.
func MustPutLink(tb testing.TB, s tokenbroker.Store, l *tokenbroker.Link) *tokenbroker.Link {
	tb.Helper()
	out, err := s.PutLink(context.Background(), l, tokenbroker.Record{})
	if err != nil {
		tb.Fatalf("PutLink: %v", err)
	}
	return out
}

// MustGetLink gets a link through s.
func MustGetLink(tb testing.TB, s tokenbroker.Store, userID, providerID string) *tokenbroker.Link {
	tb.Helper()
	l, err := s.GetLink(context.Background(), userID, providerID)
	if err != nil {
		tb.Fatalf("GetLink %s/%s: %v", userID, providerID, err)
	}
	return l
}

// MustCounts returns CountSealedByKey without empty entries.
func MustCounts(tb testing.TB, s tokenbroker.Store) map[string]int64 {
	tb.Helper()
	c, err := s.CountSealedByKey(context.Background())
	if err != nil {
		tb.Fatalf("CountSealedByKey: %v", err)
	}
	maps.DeleteFunc(c, func(_ string, n int64) bool { return n == 0 })
	return c
}

// testExpiry is far enough ahead for ListLinksExpiringBefore tests.
var testExpiry = time.Now().Add(time.Hour).Truncate(time.Millisecond)

// sameToken compares tokens, times by instant.
func sameToken(a, b tokenbroker.Token) bool {
	if !a.Expiry.Equal(b.Expiry) {
		return false
	}
	a.Expiry, b.Expiry = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func testToken(user, provider string, n int) tokenbroker.Token {
	return tokenbroker.Token{
		AccessToken:  fmt.Sprintf("at-%s-%s-%d-Zq8v", user, provider, n),
		TokenType:    "Bearer",
		RefreshToken: fmt.Sprintf("rt-%s-%s-%d-Xk3w", user, provider, n),
		IDToken:      fmt.Sprintf("idt-%s-%s-%d-Pw9e", user, provider, n),
		Expiry:       testExpiry,
		Scopes:       []string{"repo", "read:user"},
		Extra: map[string]string{
			"refresh_token_expires_in": fmt.Sprintf("ex-%s-%s-%d-Rt5u", user, provider, n),
			"empty":                    "",
		},
	}
}

// secretsOf lists the secret strings of a token, for leak checks.
func secretsOf(tok tokenbroker.Token) []string {
	out := []string{tok.AccessToken, tok.RefreshToken, tok.IDToken}
	for _, v := range tok.Extra {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func TestStoreRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		ring := MustRing(t, MustKey(t, 1))
		s := crypt.NewStore(inner, ring)

		in := &tokenbroker.Link{UserID: "alice", ProviderID: "github", AccountID: "42", AccountLogin: "alice", Token: testToken("alice", "github", 1)}
		orig := *in
		orig.Token.Extra = maps.Clone(in.Token.Extra)
		put := MustPutLink(t, s, in)
		if !reflect.DeepEqual(*in, orig) {
			t.Errorf("PutLink modified its argument")
		}
		if !sameToken(put.Token, in.Token) {
			t.Errorf("PutLink returned token %+v, want %+v", put.Token, in.Token)
		}
		if put.KeyID != ring.PrimaryID() {
			t.Errorf("KeyID = %q, want %q", put.KeyID, ring.PrimaryID())
		}

		got := MustGetLink(t, s, "alice", "github")
		if !sameToken(got.Token, in.Token) {
			t.Errorf("GetLink token = %+v, want %+v", got.Token, in.Token)
		}

		// The inner store holds sealed values only; empty stays empty.
		raw := MustGetLink(t, inner, "alice", "github")
		for name, v := range map[string]string{
			"access_token": raw.Token.AccessToken, "refresh_token": raw.Token.RefreshToken,
			"id_token": raw.Token.IDToken, "extra": raw.Token.Extra["refresh_token_expires_in"],
		} {
			if id, err := crypt.SealedKeyID(v); err != nil || id != ring.PrimaryID() {
				t.Errorf("raw %s is not sealed by the primary: %v", name, err)
			}
		}
		if raw.Token.Extra["empty"] != "" {
			t.Errorf("empty extra stored as %q, want empty", raw.Token.Extra["empty"])
		}
		if raw.Token.TokenType != "Bearer" || raw.AccountID != "42" {
			t.Errorf("non-secret fields changed: %+v", raw)
		}

		// Refresh through the decorator.
		next := *got
		next.Token = testToken("alice", "github", 2)
		if ok, err := commitLeased(ctx, s, &next); err != nil || !ok {
			t.Fatalf("CommitRefresh = %v, %v", ok, err)
		}
		got = MustGetLink(t, s, "alice", "github")
		if !sameToken(got.Token, next.Token) || got.Generation != put.Generation+1 {
			t.Errorf("after refresh: gen %d token %+v, want gen %d token %+v", got.Generation, got.Token, put.Generation+1, next.Token)
		}

		// The other readers open too.
		MustPutLink(t, s, &tokenbroker.Link{UserID: "alice", ProviderID: "gitlab", Token: testToken("alice", "gitlab", 1)})
		list, err := s.ListLinks(ctx, "alice")
		if err != nil || len(list) != 2 || list[0].Token.AccessToken != next.Token.AccessToken || list[1].Token.AccessToken != testToken("alice", "gitlab", 1).AccessToken {
			t.Errorf("ListLinks = %v, %v", list, err)
		}
		exp, err := s.ListLinksExpiringBefore(ctx, time.Now().Add(2*time.Hour), tokenbroker.ExpiryCursor{}, 10)
		if err != nil || len(exp) != 2 || !strings.HasPrefix(exp[0].Token.RefreshToken, "rt-alice") {
			t.Errorf("ListLinksExpiringBefore = %v, %v", exp, err)
		}
		stale, err := s.ListStaleLinks(ctx, tokenbroker.StaleLinkQuery{ProviderID: "gitlab", States: []tokenbroker.LinkState{tokenbroker.LinkActive},
			RefreshedBefore: time.Now().Add(time.Hour), Limit: 10})
		if err != nil || len(stale) != 1 || !strings.HasPrefix(stale[0].Token.RefreshToken, "rt-alice") {
			t.Errorf("ListStaleLinks = %v, %v; want the link with its tokens opened", stale, err)
		}
		notBy, err := s.ListLinksNotSealedBy(ctx, "other", 0, 10)
		if err != nil || len(notBy) != 2 || !strings.HasPrefix(notBy[0].Token.IDToken, "idt-alice") {
			t.Errorf("ListLinksNotSealedBy = %v, %v", notBy, err)
		}

		// A link with only a refresh token keeps the empty access token.
		MustPutLink(t, s, &tokenbroker.Link{UserID: "bob", ProviderID: "github", Token: tokenbroker.Token{RefreshToken: "rt-only"}})
		if l := MustGetLink(t, s, "bob", "github"); l.Token.AccessToken != "" || l.Token.RefreshToken != "rt-only" {
			t.Errorf("refresh-only link = %+v", l.Token)
		}
		if l := MustGetLink(t, inner, "bob", "github"); l.Token.AccessToken != "" || !crypt.IsSealed(l.Token.RefreshToken) {
			t.Errorf("refresh-only raw link = %+v", l.Token)
		}

		// Signals pass through.
		ch, cancel := s.Subscribe(got.ID)
		defer cancel()
		next2 := *got
		next2.Token = testToken("alice", "github", 3)
		if ok, err := commitLeased(ctx, s, &next2); err != nil || !ok {
			t.Fatalf("CommitRefresh = %v, %v", ok, err)
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("no signal through the decorator after a commit")
		}
	})
}

func TestStoreAuthRequestRoundTrip(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		ring := MustRing(t, MustKey(t, 1))
		s := crypt.NewStore(inner, ring)
		const verifier = "pkce-verifier-dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
		r := &tokenbroker.AuthRequest{
			ID: "state-123", Kind: tokenbroker.AuthRequestCode, UserID: "alice", ProviderID: "github",
			Secret: verifier, RedirectURI: "http://127.0.0.1/cb", ExpiresAt: time.Now().Add(10 * time.Minute),
		}
		if err := s.CreateAuthRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.Secret != verifier || r.KeyID != ring.PrimaryID() || r.CreatedAt.IsZero() {
			t.Errorf("after create: secret changed or KeyID/CreatedAt not set: %+v", r)
		}
		raw, err := inner.GetAuthRequest(ctx, "state-123")
		if err != nil {
			t.Fatal(err)
		}
		if raw.Secret == verifier || !crypt.IsSealed(raw.Secret) || raw.KeyID != ring.PrimaryID() {
			t.Errorf("raw secret not sealed: key %q", raw.KeyID)
		}
		got, err := s.GetAuthRequest(ctx, "state-123")
		if err != nil || got.Secret != verifier {
			t.Fatalf("GetAuthRequest = %v, %v", got, err)
		}
		// The rekey view (ID is the stored hash) opens too.
		list, err := s.ListAuthRequestsNotSealedBy(ctx, "other", 10)
		if err != nil || len(list) != 1 || list[0].Secret != verifier {
			t.Fatalf("ListAuthRequestsNotSealedBy = %v, %v", list, err)
		}
		// A secret moved to another request fails to open.
		r2 := &tokenbroker.AuthRequest{ID: "state-456", Kind: tokenbroker.AuthRequestCode, UserID: "alice", ProviderID: "github",
			Secret: raw.Secret, KeyID: raw.KeyID, ExpiresAt: time.Now().Add(10 * time.Minute)}
		if err := inner.CreateAuthRequest(ctx, r2); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetAuthRequest(ctx, "state-456"); !errors.Is(err, crypt.ErrAuthentication) {
			t.Errorf("moved secret: GetAuthRequest err = %v, want ErrAuthentication", err)
		}
		got, err = s.ConsumeAuthRequest(ctx, "state-123")
		if err != nil || got.Secret != verifier {
			t.Fatalf("ConsumeAuthRequest = %v, %v", got, err)
		}
	})
}

func TestStoreSwappedValuesFail(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		s := crypt.NewStore(inner, MustRing(t, MustKey(t, 1)))
		MustPutLink(t, s, &tokenbroker.Link{UserID: "alice", ProviderID: "github", Token: testToken("alice", "github", 1)})
		MustPutLink(t, s, &tokenbroker.Link{UserID: "bob", ProviderID: "github", Token: testToken("bob", "github", 1)})
		MustPutLink(t, s, &tokenbroker.Link{UserID: "alice", ProviderID: "gitlab", Token: testToken("alice", "gitlab", 1)})
		alice := MustGetLink(t, inner, "alice", "github")

		tests := []struct {
			name           string
			user, provider string
			edit           func(dst *tokenbroker.Token)
		}{
			{"access token of another user", "bob", "github", func(d *tokenbroker.Token) { d.AccessToken = alice.Token.AccessToken }},
			{"access token of another provider", "alice", "gitlab", func(d *tokenbroker.Token) { d.AccessToken = alice.Token.AccessToken }},
			{"refresh token into access token", "alice", "github", func(d *tokenbroker.Token) { d.AccessToken = alice.Token.RefreshToken }},
			{"access token into id token", "alice", "github", func(d *tokenbroker.Token) { d.IDToken = alice.Token.AccessToken }},
			{"extra into refresh token", "alice", "github", func(d *tokenbroker.Token) { d.RefreshToken = alice.Token.Extra["refresh_token_expires_in"] }},
			{"extra under another name", "alice", "github", func(d *tokenbroker.Token) {
				d.Extra = map[string]string{"other": alice.Token.Extra["refresh_token_expires_in"]}
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				victim := MustGetLink(t, inner, tt.user, tt.provider)
				tt.edit(&victim.Token)
				// Write raw, below the decorator, as someone with write
				// access to the database would.
				if ok, err := commitLeased(ctx, inner, victim); err != nil || !ok {
					t.Fatalf("raw CommitRefresh = %v, %v", ok, err)
				}
				_, err := s.GetLink(ctx, tt.user, tt.provider)
				if !errors.Is(err, crypt.ErrAuthentication) {
					t.Fatalf("GetLink after swap: err = %v, want ErrAuthentication", err)
				}
				if tokenbroker.ErrorCode(err) != tokenbroker.EINTERNAL {
					t.Errorf("ErrorCode = %s, want internal", tokenbroker.ErrorCode(err))
				}
				// Restore for the next case.
				MustPutLink(t, s, &tokenbroker.Link{UserID: tt.user, ProviderID: tt.provider, Token: testToken(tt.user, tt.provider, 1)})
			})
		}
	})
}

func TestStoreWrongRing(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		ringA := MustRing(t, MustKey(t, 1))
		MustPutLink(t, crypt.NewStore(inner, ringA), &tokenbroker.Link{UserID: "alice", ProviderID: "github", Token: testToken("alice", "github", 1)})
		_, err := crypt.NewStore(inner, MustRing(t, MustKey(t, 2))).GetLink(ctx, "alice", "github")
		var uk *crypt.UnknownKeyError
		if !errors.As(err, &uk) || uk.KeyID != ringA.PrimaryID() {
			t.Fatalf("GetLink with the wrong ring: %v, want *UnknownKeyError", err)
		}
		if strings.Contains(err.Error(), "Zq8v") {
			t.Errorf("error %q reveals a token", err)
		}
	})
}

func TestCheckRing(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		k1, k2 := MustKey(t, 1), MustKey(t, 2)
		if err := crypt.CheckRing(ctx, inner, MustRing(t, k1)); err != nil {
			t.Fatalf("empty database: %v", err)
		}
		ringA := MustRing(t, k1)
		s := crypt.NewStore(inner, ringA)
		MustPutLink(t, s, &tokenbroker.Link{UserID: "alice", ProviderID: "github", Token: testToken("alice", "github", 1)})
		if err := s.CreateAuthRequest(ctx, &tokenbroker.AuthRequest{ID: "st", Kind: tokenbroker.AuthRequestCode, UserID: "alice",
			ProviderID: "github", Secret: "verifier", ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		for _, ok := range []*crypt.Ring{ringA, MustRing(t, k2, k1), MustRing(t, k1, k2)} {
			if err := crypt.CheckRing(ctx, inner, ok); err != nil {
				t.Errorf("ring %v: %v", ok.KeyIDs(), err)
			}
		}
		err := crypt.CheckRing(ctx, inner, MustRing(t, k2))
		var me *crypt.RingMismatchError
		if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0] != ringA.PrimaryID() {
			t.Fatalf("CheckRing with the wrong key = %v, want RingMismatchError missing %s", err, ringA.PrimaryID())
		}
		want := "encryption key ring cannot open stored tokens: database has rows sealed by keys [" + ringA.PrimaryID() + "] not in TOKENBROKER_ENCRYPTION_KEYS"
		if err.Error() != want {
			t.Errorf("message = %q, want %q", err, want)
		}

		// A sampled row that does not open (here: tampered) also refuses.
		raw := MustGetLink(t, inner, "alice", "github")
		raw.Token.AccessToken = raw.Token.RefreshToken
		if ok, err := commitLeased(ctx, inner, raw); !ok || err != nil {
			t.Fatalf("raw CommitRefresh = %v, %v", ok, err)
		}
		err = crypt.CheckRing(ctx, inner, ringA)
		if !errors.As(err, &me) || !errors.Is(err, crypt.ErrAuthentication) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("CheckRing with an unopenable row = %v, want one-line RingMismatchError wrapping ErrAuthentication", err)
		}
	})
}

// seedLinks puts n links through s: users u000..., provider github.
func seedLinks(tb testing.TB, s tokenbroker.Store, n int) {
	tb.Helper()
	for i := range n {
		u := fmt.Sprintf("u%03d", i)
		MustPutLink(tb, s, &tokenbroker.Link{UserID: u, ProviderID: "github", Token: testToken(u, "github", 0)})
	}
}

func TestRotationThenRekey(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		kOld, kNew := MustKey(t, 1), MustKey(t, 2)
		old := MustRing(t, kOld)
		seedLinks(t, crypt.NewStore(inner, old), 25)
		so := crypt.NewStore(inner, old)
		for i := range 3 {
			if err := so.CreateAuthRequest(ctx, &tokenbroker.AuthRequest{ID: fmt.Sprintf("state-%d", i), Kind: tokenbroker.AuthRequestDevice,
				UserID: "u000", ProviderID: "github", Secret: fmt.Sprintf("device-code-%d", i), ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
				t.Fatal(err)
			}
		}
		if got := MustCounts(t, inner); !reflect.DeepEqual(got, map[string]int64{old.PrimaryID(): 28}) {
			t.Fatalf("counts before = %v", got)
		}

		rotated := MustRing(t, kNew, kOld)
		var calls, lastDone, lastTotal int64
		res, err := crypt.Rekey(ctx, inner, rotated, crypt.RekeyOptions{BatchSize: 7, Progress: func(done, total int64) {
			calls++
			lastDone, lastTotal = done, total
		}})
		if err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		if res.Links != 25 || res.AuthRequests != 3 || res.Total != 28 || res.Failed != 0 {
			t.Errorf("result = %+v", res)
		}
		if lastDone != 28 || lastTotal != 28 || calls < 5 {
			t.Errorf("progress: %d calls, last %d/%d; want batches and 28/28", calls, lastDone, lastTotal)
		}
		if got := MustCounts(t, inner); !reflect.DeepEqual(got, map[string]int64{rotated.PrimaryID(): 28}) {
			t.Fatalf("counts after rekey = %v, want all on the new key", got)
		}
		// The old key can go: a ring of only the new key opens everything.
		newOnly := MustRing(t, kNew)
		if err := crypt.CheckRing(ctx, inner, newOnly); err != nil {
			t.Fatalf("CheckRing(new only): %v", err)
		}
		sn := crypt.NewStore(inner, newOnly)
		for i := range 25 {
			u := fmt.Sprintf("u%03d", i)
			l := MustGetLink(t, sn, u, "github")
			if !sameToken(l.Token, testToken(u, "github", 0)) || l.Generation != 1 {
				t.Errorf("%s after rekey: gen %d token %+v", u, l.Generation, l.Token)
			}
		}
		for i := range 3 {
			r, err := sn.ConsumeAuthRequest(ctx, fmt.Sprintf("state-%d", i))
			if err != nil || r.Secret != fmt.Sprintf("device-code-%d", i) {
				t.Errorf("auth request %d after rekey = %v, %v", i, r, err)
			}
		}
		// A second run finds nothing.
		res, err = crypt.Rekey(ctx, inner, rotated, crypt.RekeyOptions{})
		if err != nil || res.Total != 0 || res.Links != 0 {
			t.Errorf("second Rekey = %+v, %v", res, err)
		}
	})
}

func TestRekeyUnopenableRows(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		k1, k2, k3 := MustKey(t, 1), MustKey(t, 2), MustKey(t, 3)
		seedLinks(t, crypt.NewStore(inner, MustRing(t, k1)), 3)
		MustPutLink(t, crypt.NewStore(inner, MustRing(t, k3)), &tokenbroker.Link{UserID: "lost", ProviderID: "github", Token: testToken("lost", "github", 0)})
		res, err := crypt.Rekey(ctx, inner, MustRing(t, k2, k1), crypt.RekeyOptions{BatchSize: 2, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || res.Failed != 1 || res.Links != 3 {
			t.Fatalf("Rekey = %+v, %v; want 3 re-sealed, 1 failed and an error", res, err)
		}
		if !strings.Contains(err.Error(), "1 rows could not be opened") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestRekeyInterruptedThenResumed(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		kOld, kNew := MustKey(t, 1), MustKey(t, 2)
		seedLinks(t, crypt.NewStore(inner, MustRing(t, kOld)), 60)
		rotated := MustRing(t, kNew, kOld)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		res, err := crypt.Rekey(ctx, inner, rotated, crypt.RekeyOptions{BatchSize: 10, Progress: func(done, total int64) {
			if done >= 20 {
				cancel() // an operator's ^C after two batches
			}
		}})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted Rekey = %+v, %v; want context.Canceled", res, err)
		}
		counts := MustCounts(t, inner)
		if counts[rotated.PrimaryID()] < 20 || counts[crypt.KeyID(kOld)] == 0 {
			t.Fatalf("counts after interruption = %v; want a partial rekey", counts)
		}
		done := counts[rotated.PrimaryID()]

		res, err = crypt.Rekey(context.Background(), inner, rotated, crypt.RekeyOptions{BatchSize: 10})
		if err != nil {
			t.Fatalf("resumed Rekey: %v", err)
		}
		if res.Total != 60-done || res.Links != 60-done {
			t.Errorf("resumed Rekey = %+v; want only the %d rows left", res, 60-done)
		}
		if got := MustCounts(t, inner); !reflect.DeepEqual(got, map[string]int64{rotated.PrimaryID(): 60}) {
			t.Errorf("counts after resume = %v", got)
		}
	})
}

// TestRekeyConcurrentRefreshes runs rekeys while several goroutines
// refresh links 1,000 times through the decorator, half of them as a
// replica still sealing with the old key, and checks that no refreshed
// token is lost (I3, I4) and that a final rekey leaves every row on the new
// key.
func TestRekeyConcurrentRefreshes(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		const links, refreshes, workers = 16, 1000, 4
		kOld, kNew := MustKey(t, 1), MustKey(t, 2)
		seedLinks(t, crypt.NewStore(inner, MustRing(t, kOld)), links)
		rotated := MustRing(t, kNew, kOld)
		replicas := []*crypt.Store{
			crypt.NewStore(inner, rotated),                 // a replica with the new primary
			crypt.NewStore(inner, MustRing(t, kOld, kNew)), // a replica not yet switched
		}

		var (
			mu        sync.Mutex
			committed = map[string]map[int64]tokenbroker.Token{} // user -> generation -> token
			left      atomic.Int64
			wg        sync.WaitGroup
			stop      = make(chan struct{})
		)
		left.Store(refreshes)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := replicas[w%2]
				for i := 0; ; i++ {
					if left.Add(-1) < 0 {
						return
					}
					u := fmt.Sprintf("u%03d", (w*7+i)%links)
					for {
						l, err := s.GetLink(ctx, u, "github")
						if err != nil {
							t.Errorf("GetLink: %v", err)
							return
						}
						next := *l
						next.Token = testToken(u, "github", int(l.Generation+1))
						next.Token.AccessToken += fmt.Sprintf("-w%d", w)
						ok, err := commitLeased(ctx, s, &next)
						if err != nil {
							t.Errorf("CommitRefresh: %v", err)
							return
						}
						if ok {
							mu.Lock()
							if committed[u] == nil {
								committed[u] = map[int64]tokenbroker.Token{}
							}
							committed[u][l.Generation+1] = next.Token
							mu.Unlock()
							break
						}
					}
				}
			}()
		}
		rekeyDone := make(chan crypt.RekeyResult)
		go func() {
			var sum crypt.RekeyResult
			defer func() { rekeyDone <- sum }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := crypt.Rekey(ctx, inner, rotated, crypt.RekeyOptions{BatchSize: 5})
				if err != nil && !errors.Is(err, crypt.ErrRekeyIncomplete) {
					t.Errorf("concurrent Rekey: %v", err)
					return
				}
				sum.Links += res.Links
				sum.CASRetries += res.CASRetries
				sum.AlreadySealed += res.AlreadySealed
				sum.Passes += res.Passes
			}
		}()
		wg.Wait()
		close(stop)
		sum := <-rekeyDone
		t.Logf("concurrent rekeys: %d links re-sealed, %d lost CAS and re-read, %d found sealed by the new key, %d passes",
			sum.Links, sum.CASRetries, sum.AlreadySealed, sum.Passes)

		// The old replica is gone; a last rekey finishes the job.
		if _, err := crypt.Rekey(ctx, inner, rotated, crypt.RekeyOptions{}); err != nil {
			t.Fatalf("final Rekey: %v", err)
		}
		if got := MustCounts(t, inner); !reflect.DeepEqual(got, map[string]int64{rotated.PrimaryID(): links}) {
			t.Errorf("counts = %v, want all %d on the new key", got, links)
		}
		sn := crypt.NewStore(inner, MustRing(t, kNew))
		var total int64
		for i := range links {
			u := fmt.Sprintf("u%03d", i)
			l := MustGetLink(t, sn, u, "github")
			total += l.Generation - 1
			want, ok := committed[u][l.Generation]
			if l.Generation > 1 && (!ok || !sameToken(l.Token, want)) {
				t.Errorf("%s: generation %d holds %q, want the last committed %q", u, l.Generation, l.Token.AccessToken, want.AccessToken)
			}
		}
		if total != refreshes {
			t.Errorf("generations advanced by %d, want %d refreshes", total, refreshes)
		}
	})
}

// TestDumpHoldsNoToken writes tokens through the decorator and searches a
// full textual dump of the database for them.
func TestDumpHoldsNoToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, inner tokenbroker.Store) {
		ctx := context.Background()
		s := crypt.NewStore(inner, MustRing(t, MustKey(t, 1)))
		var secrets []string
		for i := range 5 {
			u := fmt.Sprintf("dump%d", i)
			l := MustPutLink(t, s, &tokenbroker.Link{UserID: u, ProviderID: "github", Token: testToken(u, "github", 1)})
			secrets = append(secrets, secretsOf(l.Token)...)
			l.Token = testToken(u, "github", 2)
			if ok, err := commitLeased(ctx, s, l); !ok || err != nil {
				t.Fatalf("CommitRefresh = %v, %v", ok, err)
			}
			secrets = append(secrets, secretsOf(l.Token)...)
		}
		verifier := "verifier-Kq2n8sLw0pXv"
		if err := s.CreateAuthRequest(ctx, &tokenbroker.AuthRequest{ID: "st", Kind: tokenbroker.AuthRequestCode, UserID: "dump0",
			ProviderID: "github", Secret: verifier, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, verifier)
		dump := b.dump(t, inner)
		if !strings.Contains(dump, "dump3") {
			t.Fatalf("dump does not hold the user ids: is it a dump of this database?")
		}
		for _, sec := range secrets {
			if strings.Contains(dump, sec) {
				t.Errorf("dump contains the secret %q", sec)
			}
		}
	})
}

// commitLeased commits next as a lease holder of next's generation does:
// it takes the lease, then commits with it. It reports false when the
// lease or the commit was lost.
func commitLeased(ctx context.Context, s tokenbroker.Store, next *tokenbroker.Link) (bool, error) {
	g, err := s.AcquireLease(ctx, tokenbroker.LeaseRequest{LinkID: next.ID, Generation: next.Generation, Owner: "crypt-test", TTL: time.Minute})
	if err != nil || !g.Won {
		return false, err
	}
	return s.CommitRefresh(ctx, g.Lease, next, tokenbroker.Record{})
}
