package web

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// auditPageSize is how many events a page of the audit log shows.
const auditPageSize = 100

// auditActions are the actions the filter offers; any other action may
// still be typed into the URL.
var auditActions = []string{
	tokenbroker.AuditTokenRead, tokenbroker.AuditLinkCreate, tokenbroker.AuditLinkImport,
	tokenbroker.AuditLinkRefresh, tokenbroker.AuditRefreshFailed, tokenbroker.AuditLinkBroken,
	tokenbroker.AuditLostRefresh, tokenbroker.AuditLinkDelete, tokenbroker.AuditConnectSessionCreate,
	tokenbroker.AuditAPIKeyCreate, tokenbroker.AuditAPIKeyRevoke, tokenbroker.AuditConsoleSignIn,
}

// auditTimeLayout is the form's time format (an HTML datetime-local
// value), read as UTC.
const auditTimeLayout = "2006-01-02T15:04"

type auditForm struct {
	User, Provider, Action, Actor, Since, Until string
}

func (f auditForm) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"user": f.User, "provider": f.Provider, "action": f.Action,
		"actor": f.Actor, "since": f.Since, "until": f.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

func parseAuditForm(q url.Values) (auditForm, tokenbroker.AuditFilter, error) {
	f := auditForm{User: strings.TrimSpace(q.Get("user")), Provider: strings.TrimSpace(q.Get("provider")),
		Action: q.Get("action"), Actor: strings.TrimSpace(q.Get("actor")), Since: q.Get("since"), Until: q.Get("until")}
	var af tokenbroker.AuditFilter
	if f.User != "" {
		if err := tokenbroker.ValidateUserID(f.User); err != nil {
			return f, af, err
		}
		af.UserID = f.User
	}
	if f.Provider != "" {
		if err := tokenbroker.ValidateProviderID(f.Provider); err != nil {
			return f, af, err
		}
		af.ProviderID = f.Provider
	}
	if !printable(f.Action, 64) || !printable(f.Actor, 200) {
		return f, af, tokenbroker.Errorf(tokenbroker.EINVALID, "invalid action or actor")
	}
	af.Action, af.Actor = f.Action, f.Actor
	for _, t := range []struct {
		s    string
		dst  *time.Time
		name string
	}{{f.Since, &af.Since, "from"}, {f.Until, &af.Until, "until"}} {
		if t.s == "" {
			continue
		}
		v, err := time.Parse(auditTimeLayout, t.s)
		if err != nil {
			if v, err = time.Parse(time.RFC3339, t.s); err != nil {
				return f, af, tokenbroker.Errorf(tokenbroker.EINVALID, "%s: want a time such as 2026-01-02T15:04 (UTC)", t.name)
			}
		}
		*t.dst = v.UTC()
	}
	if s := q.Get("before_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return f, af, tokenbroker.Errorf(tokenbroker.EINVALID, "invalid page position")
		}
		af.BeforeID = n
	}
	return f, af, nil
}

type auditData struct {
	consolePage
	Form      auditForm
	Actions   []option
	Events    []tokenbroker.AuditEvent
	Older     string
	Newest    string
	ExportCSV string
	ExportJSL string
}

// serveAudit shows the audit log, newest first, filtered by user,
// provider, action, actor and time, paged by event id.
func (c *Console) serveAudit(w http.ResponseWriter, r *http.Request, a *adminSession) {
	f, af, err := parseAuditForm(r.URL.Query())
	if err != nil {
		c.appError(w, r, a, "parse audit filter", err)
		return
	}
	af.Limit = auditPageSize
	events, err := c.cfg.Store.ListAudit(r.Context(), af)
	if err != nil {
		c.internalError(w, r, a, "read the audit log", err)
		return
	}
	d := auditData{consolePage: c.page(a, "Audit log", "audit"), Form: f, Events: events}
	q := f.query()
	base := c.path("/admin/audit")
	if len(events) == auditPageSize {
		older := url.Values{}
		for k, v := range q {
			older[k] = v
		}
		older.Set("before_id", strconv.FormatInt(events[len(events)-1].ID, 10))
		d.Older = base + "?" + older.Encode()
	}
	if af.BeforeID > 0 {
		d.Newest = base + "?" + q.Encode()
	}
	for _, format := range []string{"csv", "jsonl"} {
		v := url.Values{"format": {format}}
		for k, x := range q {
			v[k] = x
		}
		u := c.path("/admin/audit/export?" + v.Encode())
		if format == "csv" {
			d.ExportCSV = u
		} else {
			d.ExportJSL = u
		}
	}
	d.Actions = []option{{Value: "", Label: "Any action"}}
	for _, x := range auditActions {
		d.Actions = append(d.Actions, option{Value: x, Label: x, Selected: x == f.Action})
	}
	c.render(w, r, http.StatusOK, auditTmpl, d)
}

// auditExportMax bounds one export; a larger log is exported in time
// windows.
const auditExportMax = 1_000_000

// serveAuditExport streams the filtered audit log, newest first, as CSV
// (RFC 4180) or JSON lines, a page of 1000 events at a time. Each page
// gets a fresh write deadline, so a long export is not cut by the
// server's WriteTimeout.
func (c *Console) serveAuditExport(w http.ResponseWriter, r *http.Request, a *adminSession) {
	q := r.URL.Query()
	_, af, err := parseAuditForm(q)
	if err != nil {
		c.appError(w, r, a, "parse audit filter", err)
		return
	}
	format := q.Get("format")
	if format != "csv" && format != "jsonl" {
		c.renderError(w, r, a, http.StatusBadRequest, tokenbroker.EINVALID, "Invalid request", "format: want csv or jsonl")
		return
	}
	name := "tokenbroker-audit-" + c.now().UTC().Format("20060102T150405Z") + "." + format
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
	}
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	rc := http.NewResponseController(w)
	cw := csv.NewWriter(w)
	enc := json.NewEncoder(w)
	if format == "csv" {
		_ = cw.Write([]string{"id", "time", "actor", "action", "user_id", "provider_id", "outcome", "detail", "count", "first_at"})
	}
	af.Limit = 1000
	written := 0
	for written < auditExportMax {
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute)) // a measure of the network, not a decision
		events, err := c.cfg.Store.ListAudit(r.Context(), af)
		if err != nil {
			// The header is sent: end the body early; the log says why.
			c.log.ErrorContext(r.Context(), "console: export the audit log", "err", err.Error(), "written", written)
			break
		}
		for _, e := range events {
			if format == "csv" {
				line := auditLine(e)
				_ = cw.Write([]string{strconv.FormatInt(e.ID, 10), line.Time.Format(time.RFC3339Nano),
					csvSafe(e.Actor), csvSafe(e.Action), csvSafe(e.UserID), csvSafe(e.ProviderID), csvSafe(e.Outcome), csvSafe(e.Detail),
					strconv.FormatInt(line.Count, 10), line.FirstAt.Format(time.RFC3339Nano)})
			} else {
				_ = enc.Encode(auditLine(e))
			}
		}
		written += len(events)
		cw.Flush()
		if len(events) < af.Limit || r.Context().Err() != nil {
			break
		}
		af.BeforeID = events[len(events)-1].ID
	}
}

// auditLine is one event of a JSON lines export: the API's
// GET /api/v1/audit entry.
func auditLine(e tokenbroker.AuditEvent) apiv1.AuditEvent {
	return apiv1.AuditEvent{ID: e.ID, Time: e.Time.UTC(), Actor: e.Actor, Action: e.Action,
		UserID: e.UserID, ProviderID: e.ProviderID, Outcome: e.Outcome, Detail: e.Detail,
		Count: e.N(), FirstAt: e.First().UTC(), LastAt: e.Time.UTC()}
}

// csvSafe keeps a spreadsheet from reading a cell as a formula: a value
// starting with = + - @ or a tab or carriage return gets a leading '
// (OWASP's advice for CSV injection).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
