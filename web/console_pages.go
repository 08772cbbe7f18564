package web

import (
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// The console's pages share one layout (console_layout.html) and one
// inline style sheet, the connect pages' style.css followed by console.css,
// so both look alike. The only script is copy.js, inline and allowed by
// its hash: it adds "Copy" buttons next to read-only fields and nothing
// else; without it the field's text can still be selected and copied.

var (
	consoleCSS = styleCSS + "\n" + mustRead("templates/console.css")
	copyJS     = mustRead("templates/copy.js")
	consoleCSP = "default-src 'none'; style-src " + cspHash(consoleCSS) + "; script-src " + cspHash(copyJS) +
		"; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

	homeTmpl         = mustConsolePage("home.html")
	docTmpl          = mustConsolePage("doc.html")
	signInTmpl       = mustConsolePage("signin.html")
	overviewTmpl     = mustConsolePage("overview.html")
	linksTmpl        = mustConsolePage("links.html")
	linkTmpl         = mustConsolePage("link.html")
	confirmTmpl      = mustConsolePage("confirm.html")
	resultTmpl       = mustConsolePage("result.html")
	auditTmpl        = mustConsolePage("audit.html")
	keysTmpl         = mustConsolePage("keys.html")
	consoleErrorTmpl = mustConsolePage("console_error.html")
)

func mustConsolePage(name string) *template.Template {
	return template.Must(template.New(name).Funcs(consoleFuncs).ParseFS(templateFS,
		"templates/console_layout.html", "templates/head.html", "templates/"+name))
}

var consoleFuncs = template.FuncMap{
	"when": formatTime,
	"ago": func(t, now time.Time) string {
		if t.IsZero() {
			return ""
		}
		return relative(now.Sub(t))
	},
	"join":       strings.Join,
	"num":        formatCount,
	"stateClass": stateClass,
}

// stateClass is the CSS class suffix of a link state: the state itself when
// known, "other" otherwise (a state a newer replica wrote).
func stateClass(s any) string {
	st := tokenbroker.LinkState(fmt.Sprint(s))
	if st.Valid() {
		return string(st)
	}
	return "other"
}

// formatTime shows a time in UTC to the second; the zero time as "—".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// relative says how long ago (d > 0) or how far ahead (d < 0) something is.
func relative(d time.Duration) string {
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, " from now"
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s" + suffix
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min" + suffix
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h" + suffix
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days" + suffix
}

// formatCount writes n with thin separators of thousands.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// consolePage is what the console layout needs; each page embeds it.
type consolePage struct {
	Title  string
	CSS    template.CSS
	JS     template.JS
	Base   string // path prefix of every link
	Nav    string // the current section, for aria-current
	Key    *navKey
	CSRF   string
	Now    time.Time
	Narrow bool // a narrow card, like the connect pages
}

// navKey names the signed-in key in the header.
type navKey struct {
	Prefix     string
	Name       string
	Restricted bool
}

func (c *Console) page(a *adminSession, title, nav string) consolePage {
	p := consolePage{Title: title, CSS: template.CSS(consoleCSS), JS: template.JS(copyJS),
		Base: c.basePath, Nav: nav, Now: c.now()}
	if a != nil {
		p.Key = &navKey{Prefix: a.key.Prefix, Name: a.key.Name, Restricted: a.restricted()}
		p.CSRF = a.csrf
	}
	return p
}

// render executes t into a buffer first, so a template failure never
// leaves half a page behind.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any) {
	renderPage(c.log, w, r, status, t, data)
}

type consoleErrorData struct {
	consolePage
	Code, Message string
}

// renderError shows an error page with a stable code and a safe message.
func (c *Console) renderError(w http.ResponseWriter, r *http.Request, a *adminSession, status int, code, title, msg string) {
	p := c.page(a, title, "")
	p.Narrow = a == nil
	c.render(w, r, status, consoleErrorTmpl, consoleErrorData{consolePage: p, Code: code, Message: msg})
}

// internalError logs err (never shown) and shows the internal error page.
func (c *Console) internalError(w http.ResponseWriter, r *http.Request, a *adminSession, what string, err error) {
	c.log.ErrorContext(r.Context(), "console: "+what, "err", err.Error())
	c.renderError(w, r, a, http.StatusInternalServerError, codeInternal, "Something went wrong",
		"The server could not complete this request. The details are in its log.")
}

// appError shows an application error: its code decides the status.
func (c *Console) appError(w http.ResponseWriter, r *http.Request, a *adminSession, what string, err error) {
	switch code := tokenbroker.ErrorCode(err); code {
	case tokenbroker.ENOTFOUND:
		c.renderError(w, r, a, http.StatusNotFound, code, "Not found", tokenbroker.ErrorMessage(err))
	case tokenbroker.EINVALID:
		c.renderError(w, r, a, http.StatusBadRequest, code, "Invalid request", tokenbroker.ErrorMessage(err))
	case tokenbroker.EFORBIDDEN:
		c.renderError(w, r, a, http.StatusForbidden, code, "Not allowed", tokenbroker.ErrorMessage(err))
	case tokenbroker.ECONFLICT:
		c.renderError(w, r, a, http.StatusConflict, code, "Conflict", tokenbroker.ErrorMessage(err))
	default:
		c.internalError(w, r, a, what, err)
	}
}

// providerName is a provider's display name, or its id when it is not
// configured (any more).
func (c *Console) providerName(id string) string {
	p, err := c.cfg.Providers.Provider(id)
	if err != nil {
		return id
	}
	return displayName(p.Info())
}
