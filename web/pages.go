package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

//go:embed templates
var templateFS embed.FS

var (
	styleCSS = mustRead("templates/style.css")
	// connectCSP is the content security policy of the connect pages; see
	// setSecurityHeaders.
	connectCSP = "default-src 'none'; style-src " + cspHash(styleCSS) +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
	connectTmpl = mustPage("connect.html")
	errorTmpl   = mustPage("error.html")
	doneTmpl    = mustPage("done.html")
	leaveTmpl   = mustPage("leave.html")
)

func mustRead(name string) string {
	b, err := templateFS.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// cspHash is the source expression that allows the inline style sheet or
// script s in a content security policy: its SHA-256 hash.
func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func mustPage(name string) *template.Template {
	return template.Must(template.New(name).ParseFS(templateFS,
		"templates/layout.html", "templates/head.html", "templates/"+name))
}

// setSecurityHeaders sets the headers every response carries. The content
// security policy allows nothing but the one inline style sheet (by hash),
// and form submissions to this origin only. Chromium checks form-action on
// every redirect that follows a form submission, and a provider's
// authorization endpoint may redirect on to origins nobody can list (a
// separate login app, a federated identity provider), so the browser
// leaves for the provider from a page of its own (see serveStart), never
// by a redirect answering the form.
func setSecurityHeaders(hd http.Header) { setPageHeaders(hd, connectCSP) }

// setPageHeaders sets the headers of every page, the connect pages' and the
// console's, with csp as the content security policy: no framing, no
// sniffing, no referrer, no caching, no cross-origin opener or embedding.
func setPageHeaders(hd http.Header, csp string) {
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// pageData is what the layout needs; each page embeds it.
type pageData struct {
	Title string
	CSS   template.CSS
}

// render executes t with data into a buffer first, so a template failure
// never leaves half a page behind.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	renderPage(h.log, w, r, status, t, data)
}

// renderPage writes the page of t's layout executed with data, with status
// (and no body for HEAD). It executes into a buffer first, so a template
// failure never leaves half a page behind: it is logged to log and
// answered with a plain 500.
func renderPage(log *slog.Logger, w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		log.ErrorContext(r.Context(), "web: render page", "template", t.Name(), "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// Stable error codes shown on error pages (and documented in
// docs/connect-flow.md). They name what went wrong, never a secret.
const (
	codeNotFound       = "not_found"         // unknown or expired connect link
	codeLinkUsed       = "link_already_used" // session claimed by another browser
	codeWrongBrowser   = "wrong_browser"     // callback or form without the binding cookie
	codeCSRF           = "csrf_failed"       // form without a valid CSRF token
	codeStateInvalid   = "state_invalid"     // unknown, expired or replayed OAuth2 state
	codeInvalidRequest = "invalid_request"   // malformed request
	codeUnknownProv    = "unknown_provider"  // provider not configured or not in the session
	codeProviderError  = "provider_error"    // token exchange or validation failed
	codeInternal       = "internal"          // anything else; details are in the log
)

// pageError is an error page: an HTTP status, a stable code and a message
// safe to show.
type pageError struct {
	Status  int
	Code    string
	Title   string
	Message string
	BackURL string
}

func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, e pageError) {
	data := struct {
		pageData
		Code, Message, BackURL string
	}{pageData{Title: e.Title, CSS: template.CSS(styleCSS)}, e.Code, e.Message, e.BackURL}
	h.render(w, r, e.Status, errorTmpl, data)
}

// providerCode keeps an RFC 6749 §4.1.2.1 error code from the callback's
// query only if it has the shape of one, so nothing odd reaches the page.
func providerCode(s string) string {
	if s == "" || len(s) > 64 {
		return "unknown_error"
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c == '_') {
			return "unknown_error"
		}
	}
	return s
}

// providerErrorMessage is the friendly text for a provider's error answer
// to an authorization request (RFC 6749 §4.1.2.1).
func providerErrorMessage(code, name string) (title, msg string) {
	switch code {
	case "access_denied":
		return "Access not granted", "You did not allow access at " + name + ", so nothing was connected. You can try again whenever you like."
	case "temporarily_unavailable", "server_error":
		return "Provider unavailable", name + " could not complete the sign-in right now. Please try again in a few minutes."
	default:
		return "Connection failed", name + " refused the sign-in (" + strings.ReplaceAll(code, "_", " ") + "). Nothing was connected."
	}
}
