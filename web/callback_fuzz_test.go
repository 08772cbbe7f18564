package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/fakeidp"
)

// FuzzCallback sends the OAuth2 callback (RFC 6749 §4.1.2) any query, in
// the browser bound to a connect session or in another one, against a real
// flow: a pending state whose authorization fakeidp really granted. A byte
// of the input says whether the state and the code are the real ones or
// fuzzed, so both the front checks and the exchange are reached. It checks:
// no panic and no 500; success only for the pending state in the bound
// browser, and then a redirect only to the session's connect page or an
// allowed return URL; every error page carries a status and code; a
// refused callback changes no link; the verifier, the real code and the
// issued tokens never appear on a page or in the log.
func FuzzCallback(f *testing.F) {
	const returnURL = "https://app.example/done"
	e := MustStartEnv(f, envOptions{idp: fakeidp.Config{AutoApprove: "alice"}, allowList: []string{"https://app.example/"}})
	b := newBrowser(f)
	connectURL := e.MustSession("u1", returnURL)
	authURL := b.MustStart(e, connectURL)
	state := mustQuery(f, authURL, "state")
	ctx := context.Background()
	pending, err := e.store.GetAuthRequest(ctx, state)
	if err != nil {
		f.Fatal(err)
	}
	cb, _ := url.Parse(e.srv.URL + "/oauth/callback")
	cookies := b.c.Jar.Cookies(cb)
	if len(cookies) == 0 {
		f.Fatal("the browser holds no binding cookie for the callback")
	}
	handler := e.srv.Config.Handler

	f.Fuzz(func(t *testing.T, flags uint8, fuzzState, code, errParam, extra string) {
		// The real state is single use: put it back when a previous input
		// consumed it.
		if _, err := e.store.GetAuthRequest(ctx, state); tokenbroker.IsNotFound(err) {
			pending.ExpiresAt = time.Now().Add(5 * time.Minute)
			if err := e.store.CreateAuthRequest(ctx, pending); err != nil {
				t.Fatal(err)
			}
		}
		q := url.Values{}
		if flags&1 != 0 {
			q.Set("state", state)
		} else if fuzzState != "" {
			q.Set("state", fuzzState)
		}
		realCode := ""
		if flags&2 != 0 {
			// A code fakeidp really issued for this state.
			p := (&browser{tb: t, c: b.c}).get(authURL)
			realCode = mustQuery(t, p.location(), "code")
			code = realCode
		}
		if code != "" {
			q.Set("code", code)
		}
		if errParam != "" {
			q.Set("error", errParam)
		}
		raw := q.Encode()
		if extra != "" {
			raw += "&" + extra
		}
		req := httptest.NewRequest(http.MethodGet, "/oauth/callback", nil)
		req.URL.RawQuery = raw
		if flags&4 == 0 {
			for _, c := range cookies {
				req.AddCookie(c)
			}
		}
		before, beforeErr := e.store.GetLink(ctx, "u1", "demo")
		e.logs.drain()

		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		page := rec.Body.String()

		switch st := rec.Code; {
		case st == http.StatusSeeOther:
			if flags&4 != 0 {
				t.Fatalf("a callback in a browser without the binding cookie was accepted (query %q)", raw)
			}
			if q.Get("state") != state {
				t.Fatalf("a callback with another state was accepted (query %q)", raw)
			}
			loc := rec.Header().Get("Location")
			if loc != returnURL && !strings.HasPrefix(loc, strings.TrimPrefix(connectURL, e.srv.URL)+"?connected=") {
				t.Fatalf("callback redirected to %q", loc)
			}
		case st >= 400 && st < 500 || st == http.StatusBadGateway:
			if !strings.Contains(page, "<code>") {
				t.Fatalf("error page %d without a code:\n%s", st, page)
			}
			after, afterErr := e.store.GetLink(ctx, "u1", "demo")
			if (beforeErr == nil) != (afterErr == nil) || beforeErr == nil && after.Generation != before.Generation {
				t.Fatalf("a refused callback (%d) changed the link", st)
			}
		default:
			t.Fatalf("callback answered %d:\n%s", st, page)
		}

		secrets := []string{pending.Secret}
		if realCode != "" {
			secrets = append(secrets, realCode)
		}
		if l, err := e.store.GetLink(ctx, "u1", "demo"); err == nil {
			secrets = append(secrets, l.Token.AccessToken, l.Token.RefreshToken)
		}
		logged := e.logs.drain()
		for _, s := range secrets {
			if strings.Contains(page, s) || strings.Contains(logged, s) || strings.Contains(rec.Header().Get("Location"), s) {
				t.Fatalf("a secret reached the page or the log (query %q)", raw)
			}
		}
	})
}

// drain returns what was logged since the last drain and forgets it.
func (l *logBuffer) drain() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	l.buf.Reset()
	return s
}
