package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/fakeidp"
	"github.com/tokenbroker/tokenbroker/webhook"
)

// collector is an in-process OTLP/HTTP trace receiver: it decodes each
// protobuf export and keeps the spans with their resource.
type collector struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []*tracepb.ResourceSpans
	wake chan struct{}
}

func newCollector(t *testing.T) *collector {
	c := &collector{wake: make(chan struct{}, 1)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want a protobuf POST to /v1/traces", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			t.Errorf("collector: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.got = append(c.got, req.ResourceSpans...)
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// spans returns every span received so far.
func (c *collector) spans() []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, rs := range c.got {
		for _, ss := range rs.ScopeSpans {
			out = append(out, ss.Spans...)
		}
	}
	return out
}

// waitFor waits until ok holds for the spans received, woken by each export.
func (c *collector) waitFor(ctx context.Context, t *testing.T, what string, ok func([]*tracepb.Span) bool) {
	t.Helper()
	for !ok(c.spans()) {
		select {
		case <-c.wake:
		case <-ctx.Done():
			t.Fatalf("no %s exported; got %d spans: %v", what, len(c.spans()), spanNames(c.spans()))
		}
	}
}

func spanNames(spans []*tracepb.Span) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// strings lists every string an export carries: names, attribute values
// (of resources, spans, events and links) and status messages.
func (c *collector) strings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	var add func(v *commonpb.AnyValue)
	add = func(v *commonpb.AnyValue) {
		switch x := v.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out = append(out, x.StringValue)
		case *commonpb.AnyValue_ArrayValue:
			for _, e := range x.ArrayValue.Values {
				add(e)
			}
		case *commonpb.AnyValue_KvlistValue:
			for _, kv := range x.KvlistValue.Values {
				out = append(out, kv.Key)
				add(kv.Value)
			}
		case *commonpb.AnyValue_BytesValue:
			out = append(out, string(x.BytesValue))
		}
	}
	kvs := func(list []*commonpb.KeyValue) {
		for _, kv := range list {
			out = append(out, kv.Key)
			add(kv.Value)
		}
	}
	for _, rs := range c.got {
		kvs(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				out = append(out, s.Name, s.GetStatus().GetMessage(), s.TraceState)
				kvs(s.Attributes)
				for _, e := range s.Events {
					out = append(out, e.Name)
					kvs(e.Attributes)
				}
				for _, l := range s.Links {
					kvs(l.Attributes)
				}
			}
		}
	}
	return out
}

// TestTracesExportedWithoutSecrets runs a real `tokenbroker serve` with
// OTEL_EXPORTER_OTLP_ENDPOINT pointing at an in-process collector, makes
// requests that carry every kind of secret (an API key, tokens in an
// import body and a token answer, a refresh at the provider with the
// client secret, an OAuth callback's code and state in the query, a
// connect session id in the path, a webhook delivery to a URL with a
// credential in its query), and checks the exported spans: the server's
// (continuing the caller's traceparent), the refresh's span tree under it
// (flight; lease, provider call, commit; the provider client's), and the
// webhook client's are there, and no secret appears anywhere in them.
func TestTracesExportedWithoutSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	col := newCollector(t)
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hooks.Close()

	dir := t.TempDir()
	const (
		hookQuerySecret = "hook-query-credential-5d1e"
		codeSecret      = "oauth-code-secret-8f2a"
		stateSecret     = "oauth-state-secret-3c9b"
		sessionSecret   = "connect-session-secret-7e4d"
	)
	hookSecret := webhook.NewSecret()
	cfgFile := filepath.Join(dir, "tokenbroker.yaml")
	if err := os.WriteFile(cfgFile, []byte("webhooks:\n  - id: crm\n    url: "+hooks.URL+"/hooks?token="+hookQuerySecret+
		"\n    secret: "+hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl := newCluster(t, fakeidp.Config{}, "", []string{
		"TOKENBROKER_CONFIG=" + cfgFile,
		"TOKENBROKER_WEBHOOK_POLL_INTERVAL=50ms",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + col.srv.URL,
		"OTEL_BSP_SCHEDULE_DELAY=50",
	})
	idp, apiKey := cl.idp, cl.apiKey
	r := cl.startReplica(t, "traced")
	defer func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	}()

	// An expired link: the token request refreshes it at the provider.
	issued, err := idp.IssueToken("alice")
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute)
	api := client.New(r.URL, apiKey)
	if _, err := api.ImportLink(ctx, "alice", "bench", client.ImportRequest{AccessToken: issued.AccessToken,
		RefreshToken: issued.RefreshToken, TokenType: "Bearer", Expiry: &past}); err != nil {
		t.Fatal(err)
	}
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/api/v1/users/alice/providers/bench/token", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var refreshed apiv1.Token
	if err := json.Unmarshal(body, &refreshed); err != nil || refreshed.AccessToken == "" || refreshed.AccessToken == issued.AccessToken {
		t.Fatalf("token answer %s: want a refreshed token (%v)", body, err)
	}
	for _, p := range []string{"/oauth/callback?code=" + codeSecret + "&state=" + stateSecret, "/connect/" + sessionSecret} {
		resp, err := http.Get(r.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// A webhook delivery, to a URL with a credential in its query: the
	// event is written to the database serve uses.
	h, err := openStore(ctx, "", filepath.Join(cl.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	err = h.Store().EnqueueEvents(ctx, []tokenbroker.Event{{Type: tokenbroker.EventLinkCreated, UserID: "alice", ProviderID: "bench"}})
	h.Close()
	if err != nil {
		t.Fatal(err)
	}

	tokenRoute := "GET /api/v1/users/{user_id}/providers/{provider_id}/token"
	col.waitFor(ctx, t, "token, provider and webhook spans", func(spans []*tracepb.Span) bool {
		var server, provider, hook bool
		for _, s := range spans {
			switch {
			case s.Name == tokenRoute && s.Kind == tracepb.Span_SPAN_KIND_SERVER:
				server = true
			case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && attr(s, "url.full") == idp.Endpoints().Token:
				provider = true
			case s.Kind == tracepb.Span_SPAN_KIND_CLIENT && strings.HasPrefix(attr(s, "url.full"), hooks.URL+"/hooks"):
				hook = true
			}
		}
		return server && provider && hook
	})
	for _, s := range col.spans() {
		if s.Name == tokenRoute && hex.EncodeToString(s.TraceId) != traceID {
			t.Errorf("the token request's span has trace %x, want the caller's %s", s.TraceId, traceID)
		}
	}
	// The refresh's span tree, in the caller's trace: the token request,
	// the coordinator's flight under it, the lease, the provider call and
	// the commit under the flight, and the provider HTTP client's span
	// under the provider call.
	col.waitFor(ctx, t, "the refresh's span tree", func(spans []*tracepb.Span) bool {
		byName := map[string]*tracepb.Span{}
		for _, s := range spans {
			if hex.EncodeToString(s.TraceId) == traceID {
				byName[s.Name] = s
			}
		}
		return byName["refresh.flight"] != nil && byName["refresh.commit"] != nil
	})
	tree := map[string]*tracepb.Span{}
	var httpClient *tracepb.Span
	for _, s := range col.spans() {
		if hex.EncodeToString(s.TraceId) != traceID {
			continue
		}
		tree[s.Name] = s
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT && attr(s, "url.full") == idp.Endpoints().Token {
			httpClient = s
		}
	}
	parentOf := func(child, parent *tracepb.Span) bool {
		return child != nil && parent != nil && string(child.ParentSpanId) == string(parent.SpanId)
	}
	if !parentOf(tree["refresh.flight"], tree[tokenRoute]) {
		t.Errorf("refresh.flight is not a child of the token request's span: %v", spanNames(col.spans()))
	}
	for _, name := range []string{"refresh.lease", "refresh.provider_call", "refresh.commit"} {
		if !parentOf(tree[name], tree["refresh.flight"]) {
			t.Errorf("%s is not a child of refresh.flight", name)
		}
		if got := attr(tree[name], "tokenbroker.outcome"); got != "ok" {
			t.Errorf("%s outcome %q, want ok", name, got)
		}
	}
	if !parentOf(httpClient, tree["refresh.provider_call"]) {
		t.Errorf("the provider's HTTP client span is not a child of refresh.provider_call")
	}

	secrets := map[string]string{
		"API key": apiKey, "issued access token": issued.AccessToken, "issued refresh token": issued.RefreshToken,
		"client secret": fakeidp.DefaultClientSecret, "webhook URL credential": hookQuerySecret,
		"webhook secret": hookSecret[len(webhook.SecretPrefix):], "authorization code": codeSecret,
		"state": stateSecret, "connect session id": sessionSecret, "encryption key": cl.key,
		"refreshed access token": refreshed.AccessToken,
	}
	all := col.strings()
	for what, secret := range secrets {
		for _, v := range all {
			if strings.Contains(v, secret) {
				t.Errorf("an exported span holds the %s: %q", what, v)
			}
		}
	}
}
