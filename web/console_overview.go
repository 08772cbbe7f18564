package web

import (
	"bufio"
	"context"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// RuntimeStatus is what the overview shows beyond what the store keeps
// (links, the audit log, each provider's health and the webhook outbox,
// which the overview reads itself): measures that live in a process, such
// as provider call latency and the background refresher's lag. Each part
// is optional; a nil part (or a provider missing from Providers) is left
// off the page rather than shown as a made-up figure.
type RuntimeStatus struct {
	// Providers adds to each provider's health, by id; only the latency
	// fields are used (the rest comes from the store).
	Providers map[string]ProviderStatus
	// Refresher is the background refresher's progress.
	Refresher *RefresherStatus
}

// ProviderStatus is one provider's health as the refresh coordinator sees
// it.
type ProviderStatus struct {
	// Misconfigured: the provider refused the client's credentials; the
	// links keep their state until a refresh succeeds again.
	Misconfigured bool
	Detail        string
	Since         time.Time
	// CircuitOpenUntil, when set, is when calls resume after repeated
	// failures across links; Failures counts the consecutive failed
	// refresh calls.
	CircuitOpenUntil time.Time
	Failures         int
	// LatencyP50 and LatencyP99 of provider calls; zero when unknown.
	LatencyP50 time.Duration
	LatencyP99 time.Duration
}

// RefresherStatus is the background refresher's progress.
type RefresherStatus struct {
	// Lag is how late the most overdue link's refresh is.
	Lag time.Duration
	// Due is how many links are due now.
	Due int64
}

// overviewActivity lists the audit actions the overview counts, in the
// order it shows them.
var overviewActivity = []struct{ Action, Label string }{
	{tokenbroker.AuditLinkRefresh, "Refreshed"},
	{tokenbroker.AuditRefreshFailed, "Refresh failed (transient)"},
	{tokenbroker.AuditLinkBroken, "Marked reauth_required"},
	{tokenbroker.AuditLostRefresh, "Lost refreshes"},
}

type overviewData struct {
	consolePage
	Providers []*providerOverview
	Totals    stateCounts
	Status    *RuntimeStatus
	// Webhooks is the outbox's state, for unrestricted keys only (it
	// spans every user).
	Webhooks  *tokenbroker.OutboxStats
	Hour, Day time.Time // the windows' starts, on the database clock
}

type stateCounts struct {
	Total          int64
	Active         int64
	Degraded       int64
	Idle           int64
	ReauthRequired int64
	Other          int64 // any other state
}

type providerOverview struct {
	ID, Name   string
	Configured bool
	Counts     stateCounts
	States     []stateOverview
	Activity   []activityOverview
	Health     *ProviderStatus
}

type stateOverview struct {
	State   string
	Count   int64
	Reasons []reasonOverview
}

type reasonOverview struct {
	Reauth string // the typed reason, "" for none
	Code   string // the failure reason's code, "" for links without one
	Count  int64
}

type activityOverview struct {
	Action, Label string
	Hour, Day     int64
}

// serveOverview shows, per provider the key may see, its links by state
// and reason and its refresh activity over the last hour and day, read
// from the store; and whatever [ConsoleConfig.Status] adds.
func (c *Console) serveOverview(w http.ResponseWriter, r *http.Request, a *adminSession) {
	data, err := c.overview(r.Context(), a)
	if err != nil {
		c.internalError(w, r, a, "read the overview", err)
		return
	}
	c.render(w, r, http.StatusOK, overviewTmpl, data)
}

func (c *Console) overview(ctx context.Context, a *adminSession) (*overviewData, error) {
	now, err := c.cfg.Store.Now(ctx)
	if err != nil {
		return nil, err
	}
	scope := a.scope()
	counts, err := c.cfg.Store.CountLinks(ctx, scope)
	if err != nil {
		return nil, err
	}
	actions := make([]string, len(overviewActivity))
	for i, x := range overviewActivity {
		actions[i] = x.Action
	}
	d := &overviewData{consolePage: c.page(a, "Overview", "overview"), Hour: now.Add(-time.Hour), Day: now.Add(-24 * time.Hour)}
	tallies, err := c.cfg.Store.CountAudit(ctx, tokenbroker.AuditCountQuery{LinkScope: scope, Actions: actions, Since: d.Day, Recent: d.Hour})
	if err != nil {
		return nil, err
	}
	if c.cfg.Status != nil {
		d.Status = c.cfg.Status(ctx)
	}
	if !a.restricted() {
		st, err := c.cfg.Store.OutboxStats(ctx)
		if err != nil {
			return nil, err
		}
		d.Webhooks = &st
	}

	byID := map[string]*providerOverview{}
	get := func(id string) *providerOverview {
		if p := byID[id]; p != nil {
			return p
		}
		p := &providerOverview{ID: id, Name: id}
		for _, x := range overviewActivity {
			p.Activity = append(p.Activity, activityOverview{Action: x.Action, Label: x.Label})
		}
		byID[id] = p
		return p
	}
	for _, p := range c.cfg.Providers.List() {
		info := p.Info()
		if !a.key.AllowsProvider(info.ID) {
			continue
		}
		o := get(info.ID)
		o.Name, o.Configured = displayName(info), true
	}
	for _, lc := range counts {
		o := get(lc.ProviderID)
		o.Counts.add(lc.State, lc.Count)
		d.Totals.add(lc.State, lc.Count)
		i := slices.IndexFunc(o.States, func(s stateOverview) bool { return s.State == string(lc.State) })
		if i < 0 {
			o.States = append(o.States, stateOverview{State: string(lc.State)})
			i = len(o.States) - 1
		}
		o.States[i].Count += lc.Count
		o.States[i].Reasons = append(o.States[i].Reasons, reasonOverview{Reauth: string(lc.Reauth), Code: lc.ReasonCode, Count: lc.Count})
	}
	for _, t := range tallies {
		o := get(t.ProviderID)
		for i := range o.Activity {
			if o.Activity[i].Action == t.Action {
				o.Activity[i].Hour, o.Activity[i].Day = t.Recent, t.Total
			}
		}
	}
	healths, err := c.cfg.Store.ListProviderHealth(ctx)
	if err != nil {
		return nil, err
	}
	for _, h := range healths {
		// Only providers this key may see are in byID already.
		if o := byID[h.ProviderID]; o != nil && h.Troubled() {
			o.Health = &ProviderStatus{Misconfigured: h.Misconfigured != "", Detail: h.Misconfigured,
				Since: h.MisconfiguredSince, Failures: h.Failures}
			if h.Open() {
				o.Health.CircuitOpenUntil = h.OpenUntil
			}
		}
	}
	for _, o := range byID {
		slices.SortFunc(o.States, func(x, y stateOverview) int { return stateRank(x.State) - stateRank(y.State) })
		if d.Status != nil {
			if h, ok := d.Status.Providers[o.ID]; ok && (h.LatencyP50 > 0 || h.LatencyP99 > 0) {
				if o.Health == nil {
					o.Health = &ProviderStatus{}
				}
				o.Health.LatencyP50, o.Health.LatencyP99 = h.LatencyP50, h.LatencyP99
			}
		}
		d.Providers = append(d.Providers, o)
	}
	slices.SortFunc(d.Providers, func(x, y *providerOverview) int { return strings.Compare(x.ID, y.ID) })
	return d, nil
}

func (s *stateCounts) add(state tokenbroker.LinkState, n int64) {
	s.Total += n
	switch state {
	case tokenbroker.LinkActive:
		s.Active += n
	case tokenbroker.LinkDegraded:
		s.Degraded += n
	case tokenbroker.LinkIdle:
		s.Idle += n
	case tokenbroker.LinkReauthRequired:
		s.ReauthRequired += n
	default:
		s.Other += n
	}
}

// stateRank orders states from healthy to broken; unknown states go
// before the broken ones.
func stateRank(s string) int {
	switch tokenbroker.LinkState(s) {
	case tokenbroker.LinkActive:
		return 0
	case tokenbroker.LinkIdle:
		return 1
	case tokenbroker.LinkDegraded:
		return 2
	case tokenbroker.LinkReauthRequired:
		return 4
	}
	return 3
}

type homeData struct {
	consolePage
	Version string
	Docs    []docLink
}

type docLink struct{ Name, Title string }

// serveHome is the front door: what this server is and where to go.
func (c *Console) serveHome(w http.ResponseWriter, r *http.Request) {
	p := c.page(c.session(w, r), "Welcome", "")
	p.Narrow = true
	c.render(w, r, http.StatusOK, homeTmpl, homeData{consolePage: p, Version: c.cfg.Version, Docs: c.docs()})
}

// docs lists the Markdown files of [ConsoleConfig.Docs] with the title of
// each (its first "# " line).
func (c *Console) docs() []docLink {
	if c.cfg.Docs == nil {
		return nil
	}
	names, err := fs.Glob(c.cfg.Docs, "*.md")
	if err != nil {
		return nil
	}
	var out []docLink
	for _, n := range names {
		title := strings.TrimSuffix(n, ".md")
		if f, err := c.cfg.Docs.Open(n); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if t, ok := strings.CutPrefix(sc.Text(), "# "); ok {
					title = t
					break
				}
			}
			f.Close()
		}
		out = append(out, docLink{Name: n, Title: title})
	}
	return out
}

type docData struct {
	consolePage
	Name, Text string
}

// serveDoc shows one documentation file as preformatted text.
func (c *Console) serveDoc(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if c.cfg.Docs == nil || path.Ext(name) != ".md" || strings.ContainsAny(name, "/\\") {
		c.renderError(w, r, nil, http.StatusNotFound, codeNotFound, "Page not found", "There is no such document.")
		return
	}
	b, err := fs.ReadFile(c.cfg.Docs, name)
	if err != nil {
		c.renderError(w, r, nil, http.StatusNotFound, codeNotFound, "Page not found", "There is no such document.")
		return
	}
	title := name
	for _, d := range c.docs() {
		if d.Name == name {
			title = d.Title
		}
	}
	c.render(w, r, http.StatusOK, docTmpl, docData{consolePage: c.page(nil, title, ""), Name: name, Text: string(b)})
}
