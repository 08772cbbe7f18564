package provider_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/provider"
)

// Secrets of the fuzzed refreshes. A fuzzed answer writes {rt}, {cs} (and
// {rtq}, {csq} for their form-encoded forms) where a server would echo
// what it was sent.
const (
	fuzzRefreshToken = "rt-fuzz/0123+456789=abcdef"
	fuzzClientSecret = "cs-fuzz-client-secret"
)

// answerTransport answers every request with the current fuzzed answer,
// in memory.
type answerTransport struct {
	status int
	header http.Header
	body   string
}

func (a *answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{
		StatusCode: a.status,
		Status:     http.StatusText(a.status),
		Header:     a.header.Clone(),
		Body:       io.NopCloser(strings.NewReader(a.body)),
		Request:    req,
	}, nil
}

// FuzzRefreshAnswer feeds every kind's refresh any answer a token endpoint
// may give (status, headers, body) and checks what comes out, whatever the
// classification decides: no panic; either a usable token from a 2xx
// answer or a *tokenbroker.ProviderError naming the provider, of one of the
// four failure classes, with a status
// that is the answer's, a Retry-After within bounds and a code and
// description that are short single lines; the refresh token and client
// secret never in the error even when the answer echoes them; and the same
// answer classified the same way twice.
func FuzzRefreshAnswer(f *testing.F) {
	at := &answerTransport{}
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var providers []tokenbroker.Provider
	for _, pc := range []provider.ProviderConfig{
		{ID: "std", Kind: provider.KindOAuth2, AuthURL: "https://idp.example/authorize", TokenURL: "https://idp.example/token"},
		{ID: "gh", Kind: provider.KindGitHub},
		{ID: "slack", Kind: provider.KindSlack},
		{ID: "entra", Kind: provider.KindMicrosoft},
	} {
		pc.ClientID, pc.ClientSecret = "client-id", fuzzClientSecret
		p, err := provider.New(context.Background(), pc, provider.Options{
			HTTPClient: &http.Client{Transport: at},
			Now:        func() time.Time { return now },
			Logger:     slog.New(slog.DiscardHandler),
		})
		if err != nil {
			f.Fatal(err)
		}
		providers = append(providers, p)
	}
	secrets := strings.NewReplacer(
		"{rtq}", url.QueryEscape(fuzzRefreshToken), "{csq}", url.QueryEscape(fuzzClientSecret),
		"{rt}", fuzzRefreshToken, "{cs}", fuzzClientSecret)

	f.Fuzz(func(t *testing.T, kind uint8, status int, header, body string) {
		p := providers[int(kind)%len(providers)]
		if status < 100 || status > 599 {
			status = 100 + int(uint(status)%500)
		}
		at.status = status
		at.header = parseHeader(secrets.Replace(header))
		at.body = secrets.Replace(body)

		tok, err := p.Refresh(context.Background(), fuzzRefreshToken)
		if err == nil {
			if at.status < 200 || at.status > 299 {
				t.Fatalf("HTTP %d gave a token", at.status)
			}
			if tok == nil || tok.AccessToken == "" || tok.RefreshToken == "" {
				t.Fatalf("a token without an access or refresh token: %+v", tok)
			}
			return
		}
		var pe *tokenbroker.ProviderError
		if !errors.As(err, &pe) {
			t.Fatalf("error %T %v is not a *tokenbroker.ProviderError", err, err)
		}
		if pe.ProviderID != p.ID() {
			t.Fatalf("error names provider %q, want %q", pe.ProviderID, p.ID())
		}
		if pe.StatusCode != 0 && pe.StatusCode != at.status {
			t.Fatalf("error has status %d, the answer %d", pe.StatusCode, at.status)
		}
		switch pe.Class {
		case tokenbroker.FailureRejected, tokenbroker.FailureClient, tokenbroker.FailureNotProcessed, tokenbroker.FailureUncertain:
		default:
			t.Fatalf("error has no known class: %q", pe.Class)
		}
		if pe.RetryAfter < 0 || pe.RetryAfter > 24*time.Hour {
			t.Fatalf("Retry-After %s out of [0, 24h]", pe.RetryAfter)
		}
		for name, s := range map[string]string{"code": pe.Code, "description": pe.Description} {
			if len(s) > 256 || !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x00") {
				t.Fatalf("%s %q is not a short single line", name, s)
			}
		}
		msg := err.Error()
		for _, s := range []string{fuzzRefreshToken, fuzzClientSecret, url.QueryEscape(fuzzRefreshToken), url.QueryEscape(fuzzClientSecret)} {
			if strings.Contains(msg, s) || strings.Contains(pe.Code, s) || strings.Contains(pe.Description, s) {
				t.Fatalf("error %q echoes a secret", msg)
			}
		}
		// The same answer again: the same classification.
		_, err2 := p.Refresh(context.Background(), fuzzRefreshToken)
		var pe2 *tokenbroker.ProviderError
		if !errors.As(err2, &pe2) || pe2.Class != pe.Class || pe2.Code != pe.Code ||
			pe2.Description != pe.Description || pe2.StatusCode != pe.StatusCode || pe2.RetryAfter != pe.RetryAfter {
			t.Fatalf("one answer classified twice: %+v then %+v", pe, pe2)
		}
		// Classify of a classified error is the same error.
		if c := provider.Classify("other", pe); c.Class != pe.Class || c.Code != pe.Code || c.ProviderID != pe.ProviderID {
			t.Fatalf("Classify changed a classified error: %+v -> %+v", pe, c)
		}
	})
}

// parseHeader reads "Name: value" lines; others are skipped.
func parseHeader(s string) http.Header {
	h := http.Header{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if ok && name != "" {
			h.Add(name, strings.TrimSpace(value))
		}
	}
	return h
}
