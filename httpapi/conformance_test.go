package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/tokenbroker/tokenbroker/apiv1"
	"github.com/tokenbroker/tokenbroker/httpapi"
	"github.com/tokenbroker/tokenbroker/httpapi/httpapitest"
)

// conformanceCase is one real request whose real answer must validate
// against apiv1/openapi.json. Op is the operationId the request must be
// routed to; Status the status it must get.
type conformanceCase struct {
	Op     string
	Status int
	// Request returns the method, path (with query) and JSON body, and the
	// key to send (an admin key when ""), on the shared fixture.
	Request func(f *conformanceFixture) (method, path, body, key string)
}

// conformanceFixture is the world the cases act on: one server, a user
// with a link, and keys.
type conformanceFixture struct {
	env      *httpapitest.Env
	platform string // tokens:read, links:read, links:write
	reader   string // tokens:read only
	deviceID string // set by the startDevice case
	keyID    string // set by the createAPIKey case
	// deadLetterID is a webhook dead letter's id.
	deadLetterID string
}

// conformanceCases exercise every documented operation, in order, with
// successful answers and the usual errors.
//
// To add an operation to the API: route it in httpapi/server.go, describe
// it in apiv1/openapi.json (with an operationId, its parameters, its
// success answer and its problem answers), and add a case here with that
// operationId and a 2xx status, plus any error case worth validating.
// TestOpenAPIConformance fails until every route under /api/v1 is
// documented and every documented operation has a 2xx case here.
var conformanceCases = []conformanceCase{
	{"getOpenAPI", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", "/api/v1/openapi.json", "", ""
	}},
	{"getToken", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "alice", "providers", demo, "token") + "?min_valid=60", "", f.reader
	}},
	{"getToken", 404, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "nobody", "providers", demo, "token"), "", f.reader
	}},
	{"getToken", 400, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "alice", "providers", demo, "token") + "?min_valid=2d", "", f.reader
	}},
	{"getToken", 401, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "alice", "providers", demo, "token"), "", "tbk_wrong"
	}},
	{"listLinks", 403, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "alice", "links"), "", f.reader
	}},
	{"listLinks", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "alice", "links"), "", f.platform
	}},
	{"getLink", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "alice", "links", demo), "", f.platform
	}},
	{"getLink", 404, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "alice", "links", httpapitest.ProviderBare), "", f.platform
	}},
	{"importLink", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "PUT", path("users", "bob", "links", httpapitest.ProviderBare), `{"refresh_token":"rt-bob","scopes":["read"],"extra":{"k":"v"}}`, f.platform
	}},
	{"importLink", 400, func(f *conformanceFixture) (string, string, string, string) {
		return "PUT", path("users", "bob", "links", httpapitest.ProviderBare), `{"scopes":["read"]}`, f.platform
	}},
	{"startDevice", 201, func(f *conformanceFixture) (string, string, string, string) {
		return "POST", path("users", "carol", "links", demo, "device"), "", f.platform
	}},
	{"pollDevice", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("users", "carol", "links", demo, "device", f.deviceID), "", f.platform
	}},
	{"listProviders", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("providers"), "", f.reader
	}},
	{"createConnectSession", 201, func(f *conformanceFixture) (string, string, string, string) {
		return "POST", path("connect-sessions"), `{"user_id":"dave","providers":["demo"]}`, f.platform
	}},
	{"createAPIKey", 201, func(f *conformanceFixture) (string, string, string, string) {
		return "POST", path("api-keys"), `{"name":"ci","scopes":["tokens:read"],"providers":["demo"]}`, ""
	}},
	{"listAPIKeys", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("api-keys"), "", ""
	}},
	{"revokeAPIKey", 204, func(f *conformanceFixture) (string, string, string, string) {
		return "DELETE", path("api-keys", f.keyID), "", ""
	}},
	{"revokeAPIKey", 409, func(f *conformanceFixture) (string, string, string, string) {
		return "DELETE", path("api-keys", "1"), "", ""
	}},
	{"listAPIKeys", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("api-keys"), "", "" // now with a revoked key
	}},
	{"listAudit", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("audit") + "?limit=2", "", ""
	}},
	{"listAudit", 200, func(f *conformanceFixture) (string, string, string, string) {
		// The token reads above, aggregated with their count.
		if err := f.env.Auditor.Flush(context.Background()); err != nil {
			panic(err)
		}
		return "GET", path("audit") + "?action=token.read", "", ""
	}},
	{"listDeadLetters", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("webhooks", "dead-letters") + "?endpoint=crm&limit=10", "", ""
	}},
	{"listDeadLetters", 400, func(f *conformanceFixture) (string, string, string, string) {
		return "GET", path("webhooks", "dead-letters") + "?limit=0", "", ""
	}},
	{"retryDeadLetter", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "POST", path("webhooks", "dead-letters", f.deadLetterID, "retry"), "", ""
	}},
	{"retryDeadLetter", 404, func(f *conformanceFixture) (string, string, string, string) {
		return "POST", path("webhooks", "dead-letters", f.deadLetterID, "retry"), "", "" // no longer dead
	}},
	{"deleteLink", 200, func(f *conformanceFixture) (string, string, string, string) {
		return "DELETE", path("users", "alice", "links", demo), "", f.platform
	}},
}

// TestOpenAPIConformance validates apiv1/openapi.json as OpenAPI 3.1, then
// sends every case to a real server and validates the request and the real
// answer (status, headers, body) against the description with
// kin-openapi. Every /api/v1 route must be documented, and every
// documented operation must have a case answered 2xx.
func TestOpenAPIConformance(t *testing.T) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(apiv1.OpenAPI)
	if err != nil {
		t.Fatalf("load apiv1/openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("apiv1/openapi.json is not valid OpenAPI: %v", err)
	}

	env := MustEnv(t)
	f := &conformanceFixture{
		env:      env,
		platform: env.MustKey(t, "platform", platform, nil, nil),
		reader:   env.MustKey(t, "reader", readTokens, nil, nil),
	}
	env.MustLink(t, "alice", demo, "alice")
	f.deadLetterID = fmt.Sprint(mustDeadLetters(t, env.Store, 1)[0])
	doc.Servers = openapi3.Servers{{URL: env.URL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}

	// Every route under /api/v1 is documented.
	documented := map[string]string{} // "METHOD /path" -> operationId
	for p, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			documented[method+" "+p] = op.OperationID
		}
	}
	for _, route := range httpapi.Operations(env.API) {
		if _, ok := documented[route]; !ok {
			t.Errorf("route %s is not described in apiv1/openapi.json", route)
		}
	}

	answered := map[string]bool{} // operationIds answered 2xx
	for i, c := range conformanceCases {
		method, p, body, key := c.Request(f)
		if key == "" {
			key = env.AdminKey
		}
		resp, rb := env.Do(t, method, p, key, body)
		route, pathParams, err := router.FindRoute(httpapitest.NewRequest(t, method, env.URL+p, "", body))
		if err != nil {
			t.Fatalf("case %d (%s %s): no documented route: %v", i, method, p, err)
		}
		if route.Operation.OperationID != c.Op {
			t.Fatalf("case %d: %s %s is operation %s, want %s", i, method, p, route.Operation.OperationID, c.Op)
		}
		if resp.StatusCode != c.Status {
			t.Fatalf("case %d (%s): status %d, want %d: %s", i, c.Op, resp.StatusCode, c.Status, rb)
		}
		in := &openapi3filter.RequestValidationInput{
			Request: httpapitest.NewRequest(t, method, env.URL+p, "", body), PathParams: pathParams, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		}
		if c.Status < 400 {
			// Requests that must succeed must also be what the
			// description allows.
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				t.Errorf("case %d (%s): request does not match the description: %v", i, c.Op, err)
			}
		}
		out := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
			Body: io.NopCloser(bytes.NewReader(rb)), Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			t.Errorf("case %d (%s %d): answer does not match the description: %v\n%s", i, c.Op, resp.StatusCode, err, rb)
		}
		if c.Status < 300 {
			answered[c.Op] = true
		}
		f.remember(t, c.Op, rb)
	}
	for route, op := range documented {
		if !answered[op] {
			t.Errorf("operation %s (%s) has no case answered 2xx in conformanceCases", op, route)
		}
	}
}

// remember keeps what later cases need from an answer.
func (f *conformanceFixture) remember(t *testing.T, op string, body []byte) {
	t.Helper()
	switch op {
	case "startDevice":
		var d apiv1.DeviceStart
		MustDecode(t, &http.Response{StatusCode: 201}, body, 201, &d)
		f.deviceID = d.ID
	case "createAPIKey":
		var k apiv1.CreatedAPIKey
		MustDecode(t, &http.Response{StatusCode: 201}, body, 201, &k)
		f.keyID = strconv.FormatInt(k.ID, 10)
	}
}
