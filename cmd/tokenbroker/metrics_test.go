package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/internal/idptest"
	"github.com/tokenbroker/tokenbroker/webhook"
)

func get(t *testing.T, ctx context.Context, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsAddr: with --metrics-addr, /metrics (with the webhook
// outbox's series) is served there and not on the main listener.
func TestMetricsAddr(t *testing.T) {
	for _, separate := range []bool{false, true} {
		cfg := defaultServeConfig()
		cfg.Addr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
		if separate {
			cfg.MetricsAddr = "127.0.0.1:0"
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb bytes.Buffer
		err := serveWith(ctx, cfg, &out, &errb, appOptions{onStart: func(ctx context.Context, a *app) error {
			defer cancel()
			mainCode, _ := get(t, ctx, cfg.BaseURL+"/metrics")
			metricsURL := cfg.BaseURL + "/metrics"
			if separate {
				metricsURL = a.metricsURL
				if mainCode != http.StatusNotFound {
					t.Errorf("main listener /metrics = %d, want 404 with --metrics-addr", mainCode)
				}
			}
			code, body := get(t, ctx, metricsURL)
			if code != http.StatusOK || !strings.Contains(body, "tokenbroker_webhook_outbox_pending 0") ||
				!strings.Contains(body, "tokenbroker_webhook_dead_letters 0") {
				t.Errorf("separate=%v: %s = %d:\n%.2000s", separate, metricsURL, code, body)
			}
			return nil
		}})
		cancel()
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, errb.String())
		}
	}
}

// TestMetricsExposeEveryListedSeries: a serve that refreshed a link,
// refused a key and delivered a webhook exposes on /metrics every series
// docs/production.md lists for operators: token requests by outcome,
// refreshes by outcome and provider, provider latency, lease acquisitions
// (takeovers included), renewals, waits and wake-ups, links by state per
// provider, the refresher's lag, webhook deliveries and outbox depth, the
// audit lag, failed authentications.
func TestMetricsExposeEveryListedSeries(t *testing.T) {
	idp := idptest.MustStart(t, fakeidp.Config{})
	delivered := make(chan struct{}, 16)
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		delivered <- struct{}{}
	}))
	defer hooks.Close()
	dir := t.TempDir()
	ep := idp.Endpoints()
	cfgFile := writeFile(t, dir, "tokenbroker.yaml", `providers:
  - id: bench
    kind: oauth2
    client_id: `+fakeidp.DefaultClientID+`
    client_secret: `+fakeidp.DefaultClientSecret+`
    auth_url: `+ep.Authorize+`
    token_url: `+ep.Token+`
    validate_url: `+ep.Userinfo+`
webhooks:
  - url: `+hooks.URL+`/hooks
    secret: `+webhook.NewSecret()+`
`)
	cfg := defaultServeConfig()
	cfg.Addr, cfg.DataDir, cfg.ProvidersFile = "127.0.0.1:0", dir, cfgFile
	cfg.WebhookPollInterval = 20 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	err := serveWith(ctx, cfg, &out, &errb, appOptions{onStart: func(ctx context.Context, a *app) error {
		defer cancel()
		key, _, err := createKey(ctx, a.store, "ops", tokenbroker.ScopeAdmin)
		if err != nil {
			return err
		}
		tok, err := idp.IssueToken("alice")
		if err != nil {
			return err
		}
		api := client.New(cfg.BaseURL, key)
		past := time.Now().Add(-time.Minute)
		if _, err := api.ImportLink(ctx, "alice", "bench", client.ImportRequest{AccessToken: tok.AccessToken,
			RefreshToken: tok.RefreshToken, TokenType: "Bearer", Expiry: &past}); err != nil {
			return err
		}
		if _, err := api.Token(ctx, "alice", "bench", 0); err != nil { // a refresh at the provider
			return err
		}
		if _, err := client.New(cfg.BaseURL, "tb_nope_nothing").Token(ctx, "alice", "bench", 0); err == nil {
			t.Error("an unknown key got a token")
		}
		select {
		case <-delivered: // link.created
		case <-ctx.Done():
			t.Error("no webhook delivered")
		}
		// The dispatcher counts the delivery once the receiver's answer
		// is in; nothing signals it to the test.
		var body string
		for {
			_, body = get(t, ctx, cfg.BaseURL+"/metrics")
			if strings.Contains(body, "\ntokenbroker_webhook_deliveries_total{") || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, series := range []string{
			`tokenbroker_token_requests_total{outcome="ok"} 1`,
			`tokenbroker_token_requests_total{outcome="reauth_required"} 0`,
			`tokenbroker_refreshes_total{outcome="ok",provider="bench"} 1`,
			`tokenbroker_provider_refresh_duration_seconds_count{provider="bench"} 1`,
			`tokenbroker_lease_acquisitions_total{outcome="won"}`,
			`tokenbroker_lease_acquisitions_total{outcome="takeover"} 0`,
			`tokenbroker_lease_renewals_total{outcome="ok"}`,
			`tokenbroker_lease_waits_total 0`,
			`tokenbroker_lease_wakeups_total{source="signal"} 0`,
			`tokenbroker_lease_wakeups_total{source="poll"} 0`,
			`tokenbroker_links{provider="bench",state="active"} 1`,
			`tokenbroker_refresher_lag_seconds`,
			`tokenbroker_refresher_due_links`,
			`tokenbroker_refresher_actions_total{action="refresh"}`,
			`tokenbroker_webhook_deliveries_total{endpoint=`,
			`tokenbroker_webhook_outbox_pending`,
			`tokenbroker_webhook_dead_letters 0`,
			`tokenbroker_audit_lag_seconds`,
			`tokenbroker_audit_events_written_total`,
			`tokenbroker_auth_failures_total{reason="malformed"} 1`,
			`tokenbroker_provider_misconfigured{provider="bench"} 0`,
			`tokenbroker_refresh_lost_total{reason="holder_died"} 0`,
		} {
			if !strings.Contains(body, "\n"+series) {
				t.Errorf("/metrics lacks %s", series)
			}
		}
		if t.Failed() {
			t.Logf("/metrics:\n%s", body)
		}
		return nil
	}})
	if err != nil {
		t.Fatalf("serve: %v\n%s", err, errb.String())
	}
}
