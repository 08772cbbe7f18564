package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
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
