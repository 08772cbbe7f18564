package web

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tokenbroker/tokenbroker"
)

// linksPageSize is how many links a page of the list shows.
const linksPageSize = 50

// reauthReasons are the typed reasons the filter offers.
var reauthReasons = tokenbroker.ReauthReasons()

type linkFilter struct {
	Provider string
	State    string
	Reauth   string // typed reason
	Reason   string // failure reason code
	Q        string
	By       string // "user" (id prefix) or "account" (exact login)
}

// query is the filter as URL query parameters, for page links.
func (f linkFilter) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"provider": f.Provider, "state": f.State, "reauth": f.Reauth, "reason": f.Reason, "q": f.Q} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Q != "" && f.By == "account" {
		v.Set("by", "account")
	}
	return v
}

type option struct {
	Value, Label string
	Selected     bool
}

type linkRow struct {
	*tokenbroker.LinkSummary
	ProviderName string
	URL          string
}

type linksData struct {
	consolePage
	Filter    linkFilter
	Providers []option
	States    []option
	Reauths   []option
	Links     []linkRow
	Next      string
	Prev      string
	First     string
}

// encodeCursor and decodeCursor carry a list position in a URL.
func encodeCursor(l *tokenbroker.LinkSummary) string {
	return base64.RawURLEncoding.EncodeToString([]byte(l.UserID + "\x00" + l.ProviderID))
}

func decodeCursor(s string) (*tokenbroker.LinkCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	u, p, ok := strings.Cut(string(b), "\x00")
	if err != nil || !ok || tokenbroker.ValidateUserID(u) != nil || tokenbroker.ValidateProviderID(p) != nil {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "invalid page position")
	}
	return &tokenbroker.LinkCursor{UserID: u, ProviderID: p}, nil
}

// printable reports whether s is UTF-8 text without control or format
// characters (no NUL, no bidi override), at most n bytes.
func printable(s string, n int) bool {
	if len(s) > n || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

func parseLinkFilter(q url.Values) (linkFilter, tokenbroker.LinkQuery, error) {
	f := linkFilter{Provider: q.Get("provider"), State: q.Get("state"), Reauth: q.Get("reauth"), Reason: q.Get("reason"),
		Q: strings.TrimSpace(q.Get("q")), By: q.Get("by")}
	var lq tokenbroker.LinkQuery
	if f.Provider != "" {
		if err := tokenbroker.ValidateProviderID(f.Provider); err != nil {
			return f, lq, err
		}
		lq.ProviderID = f.Provider
	}
	if f.State != "" {
		if !tokenbroker.LinkState(f.State).Valid() {
			return f, lq, tokenbroker.Errorf(tokenbroker.EINVALID, "unknown link state")
		}
		lq.State = tokenbroker.LinkState(f.State)
	}
	if f.Reauth != "" {
		if !slices.Contains(reauthReasons, tokenbroker.ReauthReason(f.Reauth)) {
			return f, lq, tokenbroker.Errorf(tokenbroker.EINVALID, "unknown re-authentication reason")
		}
		lq.ReauthReason = tokenbroker.ReauthReason(f.Reauth)
	}
	if f.Reason != "" {
		if !printable(f.Reason, 200) {
			return f, lq, tokenbroker.Errorf(tokenbroker.EINVALID, "invalid reason")
		}
		lq.ReasonCode = f.Reason
	}
	if !printable(f.Q, 255) {
		return f, lq, tokenbroker.Errorf(tokenbroker.EINVALID, "invalid search text")
	}
	switch f.By {
	case "", "user":
		f.By = "user"
		lq.UserPrefix = f.Q
	case "account":
		lq.AccountLogin = f.Q
	default:
		return f, lq, tokenbroker.Errorf(tokenbroker.EINVALID, "search by user or account")
	}
	var err error
	if s := q.Get("after"); s != "" {
		if lq.After, err = decodeCursor(s); err != nil {
			return f, lq, err
		}
	}
	if s := q.Get("before"); s != "" {
		if lq.Before, err = decodeCursor(s); err != nil {
			return f, lq, err
		}
	}
	return f, lq, nil
}

// serveLinks is the list: filters, and pages by key (after/before a
// (user, provider) position), so every page costs one index range read
// however many links there are.
func (c *Console) serveLinks(w http.ResponseWriter, r *http.Request, a *adminSession) {
	f, lq, err := parseLinkFilter(r.URL.Query())
	if err != nil {
		c.appError(w, r, a, "parse link filter", err)
		return
	}
	lq.LinkScope = a.scope()
	lq.Limit = linksPageSize + 1
	links, err := c.cfg.Store.ListLinkSummaries(r.Context(), lq)
	if err != nil {
		c.appError(w, r, a, "list links", err)
		return
	}
	d := linksData{consolePage: c.page(a, "Links", "links"), Filter: f}
	hasNext, hasPrev := false, lq.After != nil
	if lq.Before != nil {
		hasNext = true
		if len(links) > linksPageSize {
			hasPrev, links = true, links[1:]
		}
	} else if len(links) > linksPageSize {
		hasNext, links = true, links[:linksPageSize]
	}
	base := c.path("/admin/links")
	page := func(k, cursor string) string {
		v := f.query()
		if k != "" {
			v.Set(k, cursor)
		}
		if len(v) == 0 {
			return base
		}
		return base + "?" + v.Encode()
	}
	if len(links) > 0 {
		if hasNext {
			d.Next = page("after", encodeCursor(links[len(links)-1]))
		}
		if hasPrev {
			d.Prev = page("before", encodeCursor(links[0]))
		}
	}
	if lq.After != nil || lq.Before != nil {
		d.First = page("", "")
	}
	for _, l := range links {
		d.Links = append(d.Links, linkRow{LinkSummary: l, ProviderName: c.providerName(l.ProviderID), URL: c.linkURL(l.UserID, l.ProviderID)})
	}
	d.Providers = append(d.Providers, option{Value: "", Label: "Any provider"})
	for _, p := range c.cfg.Providers.List() {
		info := p.Info()
		if a.key.AllowsProvider(info.ID) {
			d.Providers = append(d.Providers, option{Value: info.ID, Label: displayName(info), Selected: info.ID == f.Provider})
		}
	}
	d.Reauths = []option{{Value: "", Label: "Any reason"}}
	for _, x := range reauthReasons {
		d.Reauths = append(d.Reauths, option{Value: string(x), Label: string(x), Selected: string(x) == f.Reauth})
	}
	d.States = []option{{Value: "", Label: "Any state"}}
	for _, s := range tokenbroker.LinkStates() {
		d.States = append(d.States, option{Value: string(s), Label: string(s), Selected: string(s) == f.State})
	}
	c.render(w, r, http.StatusOK, linksTmpl, d)
}

func (c *Console) linkURL(userID, providerID string) string {
	return c.path("/admin/links/" + url.PathEscape(userID) + "/" + url.PathEscape(providerID))
}

// linkParams validates the {user} and {provider} of the path and checks
// that the session's key may see that link.
func (c *Console) linkParams(w http.ResponseWriter, r *http.Request, a *adminSession) (userID, providerID string, ok bool) {
	userID, providerID = r.PathValue("user"), r.PathValue("provider")
	if err := tokenbroker.ValidateUserID(userID); err != nil {
		c.appError(w, r, a, "", err)
		return "", "", false
	}
	if err := tokenbroker.ValidateProviderID(providerID); err != nil {
		c.appError(w, r, a, "", err)
		return "", "", false
	}
	if !a.key.AllowsUser(userID) || !a.key.AllowsProvider(providerID) {
		c.renderError(w, r, a, http.StatusForbidden, tokenbroker.EFORBIDDEN, "Not allowed",
			"The key you signed in with may not see this user's or provider's links.")
		return "", "", false
	}
	return userID, providerID, true
}

type linkData struct {
	consolePage
	Link          *tokenbroker.LinkSummary
	ProviderName  string
	Configured    bool
	History       []tokenbroker.AuditEvent
	MoreHistory   string
	ReconnectURL  string
	DeleteURL     string
	ExpiresIn     string
	LeaseHeldTill string
	NextAttempt   string
}

// historyLength is how many of a link's audit events its page shows.
const historyLength = 50

// serveLink shows one link: state, reason, account, scopes, expiry,
// generation, refresh times and its history from the audit log. Never a
// token: the store's summary does not even read them.
func (c *Console) serveLink(w http.ResponseWriter, r *http.Request, a *adminSession) {
	userID, providerID, ok := c.linkParams(w, r, a)
	if !ok {
		return
	}
	l, err := c.cfg.Store.GetLinkSummary(r.Context(), userID, providerID)
	if err != nil {
		c.appError(w, r, a, "read link", err)
		return
	}
	history, err := c.cfg.Store.ListAudit(r.Context(), tokenbroker.AuditFilter{UserID: userID, ProviderID: providerID, Limit: historyLength})
	if err != nil {
		c.internalError(w, r, a, "read link history", err)
		return
	}
	_, perr := c.cfg.Providers.Provider(providerID)
	d := linkData{consolePage: c.page(a, userID+" · "+c.providerName(providerID), "links"), Link: l,
		ProviderName: c.providerName(providerID), Configured: perr == nil, History: history,
		ReconnectURL: c.linkURL(userID, providerID) + "/reconnect", DeleteURL: c.linkURL(userID, providerID) + "/delete"}
	if len(history) == historyLength && !a.restricted() {
		d.MoreHistory = c.path("/admin/audit?" + url.Values{"user": {userID}, "provider": {providerID}}.Encode())
	}
	if !l.Expiry.IsZero() {
		d.ExpiresIn = relative(d.Now.Sub(l.Expiry))
	}
	if l.LeaseUntil.After(d.Now) {
		d.LeaseHeldTill = formatTime(l.LeaseUntil)
	}
	if l.NextAttemptAt.After(d.Now) {
		d.NextAttempt = formatTime(l.NextAttemptAt)
	}
	c.render(w, r, http.StatusOK, linkTmpl, d)
}

type confirmData struct {
	consolePage
	Heading  string
	Message  string
	Action   string
	Button   string
	Danger   bool
	Cancel   string
	Checkbox string // when set, a checkbox "confirm" with this label must be ticked
	Error    string
}

func (c *Console) serveReconnectConfirm(w http.ResponseWriter, r *http.Request, a *adminSession) {
	userID, providerID, ok := c.linkParams(w, r, a)
	if !ok {
		return
	}
	link := c.linkURL(userID, providerID)
	c.render(w, r, http.StatusOK, confirmTmpl, confirmData{consolePage: c.page(a, "Create a reconnect link", "links"),
		Heading: "Create a reconnect link?",
		Message: "This makes a single-use connect link for user " + userID + " and " + c.providerName(providerID) +
			". Whoever opens it first can connect an account for this user, so send it to the user only.",
		Action: link + "/reconnect", Button: "Create reconnect link", Cancel: link})
}

type resultData struct {
	consolePage
	Heading  string
	Message  string
	Copy     string // a value to show in a read-only, copyable field
	CopyName string
	Note     string
	Back     string
	BackText string
}

// serveReconnect creates a connect session for the link's user and
// provider, as the API's POST /api/v1/connect-sessions does, and shows its
// URL once.
func (c *Console) serveReconnect(w http.ResponseWriter, r *http.Request, a *adminSession) {
	userID, providerID, ok := c.linkParams(w, r, a)
	if !ok {
		return
	}
	if _, err := c.cfg.Providers.Provider(providerID); err != nil {
		c.renderError(w, r, a, http.StatusBadRequest, codeUnknownProv, "Provider not configured",
			"This server has no provider "+providerID+" configured, so the user cannot reconnect to it.")
		return
	}
	u, expires, err := c.cfg.Backend.CreateConnectURL(r.Context(), a.key, userID, []string{providerID})
	c.audit(a, tokenbroker.AuditConnectSessionCreate, userID, providerID, err, "reconnect link")
	if err != nil {
		c.appError(w, r, a, "create connect session", err)
		return
	}
	c.render(w, r, http.StatusOK, resultTmpl, resultData{consolePage: c.page(a, "Reconnect link", "links"),
		Heading: "Reconnect link created",
		Message: "Send this link to user " + userID + ". It works once, in one browser, until " + formatTime(expires) + ".",
		Copy:    u, CopyName: "Reconnect link",
		Note: "The link is shown only now; it is not stored in readable form.",
		Back: c.linkURL(userID, providerID), BackText: "Back to the link"})
}

func (c *Console) serveDeleteConfirm(w http.ResponseWriter, r *http.Request, a *adminSession) {
	userID, providerID, ok := c.linkParams(w, r, a)
	if !ok {
		return
	}
	link := c.linkURL(userID, providerID)
	c.render(w, r, http.StatusOK, confirmTmpl, confirmData{consolePage: c.page(a, "Delete link", "links"),
		Heading: "Delete this link?",
		Message: "The grant of user " + userID + " at " + c.providerName(providerID) +
			" is revoked at the provider (where it supports revocation) and the link is deleted. Callers then get not_found until the user connects again.",
		Action: link + "/delete", Button: "Revoke and delete", Danger: true, Cancel: link})
}

// serveDelete revokes the grant at the provider and deletes the link, as
// the API's DELETE does.
func (c *Console) serveDelete(w http.ResponseWriter, r *http.Request, a *adminSession) {
	userID, providerID, ok := c.linkParams(w, r, a)
	if !ok {
		return
	}
	revocation, err := c.cfg.Backend.DeleteLinkRevoking(r.Context(), userID, providerID, func(revocation string) tokenbroker.AuditEvent {
		return c.event(a, tokenbroker.AuditLinkDelete, userID, providerID, nil, "revocation: "+revocation)
	})
	if err != nil && revocation == "" {
		c.appError(w, r, a, "delete link", err)
		return
	}
	if err != nil {
		c.audit(a, tokenbroker.AuditLinkDelete, userID, providerID, err, "revocation: "+revocation)
		c.appError(w, r, a, "delete link", err)
		return
	}
	msg := "The link of user " + userID + " to " + c.providerName(providerID) + " was deleted. "
	switch {
	case revocation == "revoked":
		msg += "The provider revoked the grant."
	case revocation == "not_supported":
		msg += "The provider does not support revocation; the grant may stay valid there until it expires."
	default:
		msg += "Revoking the grant at the provider failed (" + strings.TrimPrefix(revocation, "failed: ") + "); it may stay valid there until it expires."
	}
	c.render(w, r, http.StatusOK, resultTmpl, resultData{consolePage: c.page(a, "Link deleted", "links"),
		Heading: "Link deleted", Message: msg, Back: c.path("/admin/links"), BackText: "Back to the links"})
}
