package web

import (
	"context"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"

	"golang.org/x/oauth2"

	"github.com/tokenbroker/tokenbroker"
)

// validSessionID reports whether id has the shape of a connect session id
// (base64url, 16–128 characters), so nothing else reaches the store.
func validSessionID(id string) bool {
	if len(id) < 16 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (h *Handler) connectPath(sessionID string) string {
	return h.basePath + "/connect/" + url.PathEscape(sessionID)
}

var errLinkGone = pageError{Status: http.StatusNotFound, Code: codeNotFound, Title: "Link expired",
	Message: "This connect link is unknown or has expired. Ask the application that sent you here for a new one."}

// session loads the unexpired connect session named in r's path, or
// renders the error page and returns nil.
func (h *Handler) session(w http.ResponseWriter, r *http.Request) *tokenbroker.ConnectSession {
	id := r.PathValue("session")
	if !validSessionID(id) {
		h.renderError(w, r, errLinkGone)
		return nil
	}
	s, err := h.store.GetConnectSession(r.Context(), id)
	if err != nil {
		if !tokenbroker.IsNotFound(err) {
			h.internalError(w, r, "get connect session", err)
			return nil
		}
		h.renderError(w, r, errLinkGone)
		return nil
	}
	return s
}

func (h *Handler) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.log.ErrorContext(r.Context(), "web: "+what, "err", err)
	h.renderError(w, r, pageError{Status: http.StatusInternalServerError, Code: codeInternal,
		Title: "Something went wrong", Message: "An internal error stopped this page. Please try again in a moment."})
}

// sessionProviders returns the providers the session offers, in the
// configured order.
func (h *Handler) sessionProviders(s *tokenbroker.ConnectSession) []tokenbroker.Provider {
	var ps []tokenbroker.Provider
	for _, p := range h.providers.List() {
		if len(s.Providers) == 0 || slices.Contains(s.Providers, p.ID()) {
			ps = append(ps, p)
		}
	}
	return ps
}

type providerRow struct {
	ID          string
	DisplayName string
	StatusText  string
	StatusClass string
	ButtonLabel string
	Connected   bool
	Action      string
}

type banner struct{ DisplayName, Login string }

// serveConnect serves GET /connect/{session}: it claims the session for
// this browser on first open and lists the session's providers with the
// user's link status.
func (h *Handler) serveConnect(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r)
	if s == nil {
		return
	}
	if r.Method == http.MethodHead {
		// Link checkers and previewers often send HEAD first: it must not
		// use up the single-use link.
		w.WriteHeader(http.StatusOK)
		return
	}
	if !h.bound(r, s.ID) {
		// First open: claim the session, once, for this browser. The claim
		// is one conditional statement, so of two browsers racing for the
		// same URL exactly one wins.
		ok, err := h.store.ClaimConnectSession(r.Context(), s.ID)
		switch {
		case tokenbroker.IsNotFound(err):
			h.renderError(w, r, errLinkGone)
			return
		case err != nil:
			h.internalError(w, r, "claim connect session", err)
			return
		case !ok:
			h.log.InfoContext(r.Context(), "web: connect link reopened by another browser", "session", sessionTag(s.ID))
			h.renderError(w, r, pageError{Status: http.StatusForbidden, Code: codeLinkUsed, Title: "This link was already used",
				Message: "Connect links work in one browser only, and this one was already opened. If that was not you, ask the application that sent you here for a new link."})
			return
		}
		if err := h.bind(w, s.ID, s.ExpiresAt.Add(h.stateTTL)); err != nil {
			h.internalError(w, r, "bind connect session", err)
			return
		}
	}

	links, err := h.store.ListLinks(r.Context(), s.UserID)
	if err != nil {
		h.internalError(w, r, "list links", err)
		return
	}
	byProvider := make(map[string]*tokenbroker.Link, len(links))
	for _, l := range links {
		byProvider[l.ProviderID] = l
	}

	data := struct {
		pageData
		Banner    *banner
		Providers []providerRow
		CSRF      string
		ReturnURL string
		UserID    string
		ExpiresAt string
	}{
		pageData:  pageData{Title: "Connect your accounts", CSS: template.CSS(styleCSS)},
		CSRF:      h.csrfToken(s.ID),
		UserID:    s.UserID,
		ExpiresAt: s.ExpiresAt.UTC().Format("15:04 MST, 2 Jan 2006"),
	}
	if s.ReturnURL != "" && h.allow.Allows(s.ReturnURL) {
		data.ReturnURL = s.ReturnURL
	}
	connected := r.URL.Query().Get("connected")
	for _, p := range h.sessionProviders(s) {
		info := p.Info()
		row := providerRow{ID: p.ID(), DisplayName: displayName(info), StatusText: "Not connected",
			StatusClass: "none", ButtonLabel: "Connect", Action: h.connectPath(s.ID) + "/start/" + url.PathEscape(p.ID())}
		if l := byProvider[p.ID()]; l != nil {
			switch {
			case l.State.Refreshable():
				row.Connected, row.StatusClass, row.ButtonLabel = true, "ok", "Reconnect"
				row.StatusText = "Connected"
				if l.AccountLogin != "" {
					row.StatusText = "Connected as " + l.AccountLogin
				}
				if connected == p.ID() {
					data.Banner = &banner{DisplayName: row.DisplayName, Login: accountName(l)}
				}
			default:
				row.StatusClass, row.ButtonLabel = "warn", "Reconnect"
				row.StatusText = "Needs to be reconnected"
			}
		}
		data.Providers = append(data.Providers, row)
	}
	h.render(w, r, http.StatusOK, connectTmpl, data)
}

func displayName(info tokenbroker.ProviderInfo) string {
	if info.DisplayName != "" {
		return info.DisplayName
	}
	return info.ID
}

func accountName(l *tokenbroker.Link) string {
	switch {
	case l.AccountLogin != "":
		return l.AccountLogin
	case l.AccountID != "":
		return l.AccountID
	}
	return "your account"
}

// serveStart serves POST /connect/{session}/start/{provider}: it checks the
// binding cookie and CSRF token, stores a single-use, expiring state with a
// fresh PKCE verifier (RFC 7636 §4.1) and sends the browser to the
// provider's authorization endpoint (RFC 6749 §4.1.1) with the S256
// challenge (RFC 7636 §4.2). It answers with a page that goes on to the
// provider (meta refresh, and a link), not with a redirect: a redirect
// answering a form stays under the page's form-action, which would have to
// name every origin the provider's login passes through.
func (h *Handler) serveStart(w http.ResponseWriter, r *http.Request) {
	s := h.session(w, r)
	if s == nil {
		return
	}
	back := h.connectPath(s.ID)
	if !h.bound(r, s.ID) {
		h.renderError(w, r, pageError{Status: http.StatusForbidden, Code: codeWrongBrowser, Title: "Wrong browser",
			Message: "This connect link was opened in another browser. Continue there, or ask for a new link."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil || !h.csrfValid(s.ID, r.PostForm.Get("csrf")) {
		h.renderError(w, r, pageError{Status: http.StatusForbidden, Code: codeCSRF, Title: "Please try again",
			Message: "The form was not sent from the connect page, or the page was too old. Go back and press the button again.", BackURL: back})
		return
	}
	pid := r.PathValue("provider")
	var p tokenbroker.Provider
	if tokenbroker.ValidateProviderID(pid) == nil && (len(s.Providers) == 0 || slices.Contains(s.Providers, pid)) {
		p, _ = h.providers.Provider(pid)
	}
	if p == nil {
		h.renderError(w, r, pageError{Status: http.StatusNotFound, Code: codeUnknownProv, Title: "Unknown provider",
			Message: "This link cannot connect that provider.", BackURL: back})
		return
	}

	var buf [64]byte
	if err := h.readRand(buf[:]); err != nil {
		h.internalError(w, r, "draw state", err)
		return
	}
	now := h.now()
	expires := now.Add(h.stateTTL)
	if s.ExpiresAt.Before(expires) {
		// The state never outlives the binding cookie's reason to exist by
		// much; the session's own expiry bounds it.
		expires = s.ExpiresAt
	}
	req := &tokenbroker.AuthRequest{
		ID:          base64.RawURLEncoding.EncodeToString(buf[:32]),
		Kind:        tokenbroker.AuthRequestCode,
		SessionID:   s.ID,
		UserID:      s.UserID,
		ProviderID:  p.ID(),
		Secret:      base64.RawURLEncoding.EncodeToString(buf[32:]), // PKCE verifier, 43 characters
		RedirectURI: h.redirectURI,
		CreatedAt:   now,
		ExpiresAt:   expires,
	}
	if err := h.store.CreateAuthRequest(r.Context(), req); err != nil {
		h.internalError(w, r, "create auth request", err)
		return
	}
	target := p.AuthCodeURL(req.ID, oauth2.S256ChallengeFromVerifier(req.Secret), h.redirectURI)
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		h.internalError(w, r, "authorization URL", errors.New("provider gave no absolute http(s) authorization URL"))
		return
	}
	data := struct {
		pageData
		DisplayName string
		URL         string
	}{pageData{Title: "Signing in", CSS: template.CSS(styleCSS)}, displayName(p.Info()), target}
	h.render(w, r, http.StatusOK, leaveTmpl, data)
}

// serveCallback serves GET /oauth/callback, the redirect URI (RFC 6749
// §4.1.2). It checks that the state exists, belongs to a session bound to
// this browser, and consumes it (single use); then it exchanges the code
// with the PKCE verifier, asks the provider who the token belongs to,
// stores the link and sends the browser on.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	badState := pageError{Status: http.StatusBadRequest, Code: codeStateInvalid, Title: "Sign-in expired",
		Message: "This sign-in has expired or was already completed. Go back to your connect page and press Connect again."}
	if state == "" || len(state) > 256 {
		h.renderError(w, r, badState)
		return
	}
	// Look before consuming: a callback replayed in a browser that is not
	// bound to the session must not burn the legitimate browser's state.
	req, err := h.store.GetAuthRequest(r.Context(), state)
	if err != nil {
		if !tokenbroker.IsNotFound(err) {
			h.internalError(w, r, "get auth request", err)
			return
		}
		h.renderError(w, r, badState)
		return
	}
	if req.Kind != tokenbroker.AuthRequestCode || len(req.SessionHash) < 8 {
		h.renderError(w, r, badState)
		return
	}
	sessionID, ok := h.boundSession(r, req.SessionHash)
	if !ok {
		// The session's tag is the head of its hash (see sessionTag).
		h.log.WarnContext(r.Context(), "web: callback in a browser not bound to the session", "session", req.SessionHash[:8], "provider", req.ProviderID)
		h.renderError(w, r, pageError{Status: http.StatusForbidden, Code: codeWrongBrowser, Title: "Wrong browser",
			Message: "This sign-in was started in another browser. Finish it there."})
		return
	}
	back := h.connectPath(sessionID)
	// Consume: one statement that deletes and returns the state, so of two
	// concurrent callbacks with the same state exactly one goes on.
	req, err = h.store.ConsumeAuthRequest(r.Context(), state)
	if err != nil {
		if !tokenbroker.IsNotFound(err) {
			h.internalError(w, r, "consume auth request", err)
			return
		}
		h.renderError(w, r, badState)
		return
	}
	p, err := h.providers.Provider(req.ProviderID)
	if err != nil {
		h.renderError(w, r, pageError{Status: http.StatusNotFound, Code: codeUnknownProv, Title: "Unknown provider",
			Message: "The provider of this sign-in is no longer configured.", BackURL: back})
		return
	}
	name := displayName(p.Info())
	if e := q.Get("error"); e != "" {
		code := providerCode(e)
		title, msg := providerErrorMessage(code, name)
		h.log.InfoContext(r.Context(), "web: provider refused authorization", "provider", p.ID(), "error", code)
		h.audit(req, tokenbroker.AuditLinkCreate, code, "authorization refused at the provider")
		h.renderError(w, r, pageError{Status: http.StatusBadRequest, Code: code, Title: title, Message: msg, BackURL: back})
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		h.renderError(w, r, pageError{Status: http.StatusBadRequest, Code: codeInvalidRequest, Title: "Sign-in failed",
			Message: "The provider sent you back without an authorization code. Please try again.", BackURL: back})
		return
	}

	// The exchange and the write run on a context detached from the
	// browser's: a browser that goes away must not abandon a code the
	// provider has already redeemed, or the new grant would be lost.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.exchangeTTL)
	defer cancel()
	link, perr := h.connect(ctx, p, req, code)
	if perr != nil {
		perr.BackURL = back
		h.renderError(w, r, *perr)
		return
	}
	h.finish(w, r, sessionID, p, link)
}

// connect redeems code, validates the token and stores the link. It
// returns the stored link or the error page to show.
func (h *Handler) connect(ctx context.Context, p tokenbroker.Provider, req *tokenbroker.AuthRequest, code string) (*tokenbroker.Link, *pageError) {
	name := displayName(p.Info())
	tok, err := p.Exchange(ctx, code, req.Secret, req.RedirectURI)
	if err != nil {
		h.log.WarnContext(ctx, "web: code exchange failed", "provider", p.ID(), "err", err)
		h.audit(req, tokenbroker.AuditLinkCreate, codeProviderError, "code exchange failed")
		return nil, &pageError{Status: http.StatusBadGateway, Code: codeProviderError, Title: "Connection failed",
			Message: name + " did not accept the sign-in. Please try again."}
	}
	link := &tokenbroker.Link{UserID: req.UserID, ProviderID: p.ID(), Token: *tok, State: tokenbroker.LinkActive}
	if h.validate {
		acct, err := p.Validate(ctx, tok.AccessToken)
		var pe *tokenbroker.ProviderError
		switch {
		case err == nil:
			link.AccountID, link.AccountLogin = acct.ID, acct.Login
		case tokenbroker.ErrorCode(err) == tokenbroker.ENOTIMPLEMENTED:
			// The provider cannot tell who the token belongs to.
		case errors.As(err, &pe) && pe.Transient():
			// Rate-limited or unreachable: the token is good, only the
			// account is unknown for now.
			h.log.WarnContext(ctx, "web: token validation failed transiently; storing the link without account", "provider", p.ID(), "err", err)
		default:
			h.log.WarnContext(ctx, "web: token validation failed", "provider", p.ID(), "err", err)
			h.audit(req, tokenbroker.AuditLinkCreate, codeProviderError, "token validation failed")
			return nil, &pageError{Status: http.StatusBadGateway, Code: codeProviderError, Title: "Connection failed",
				Message: name + " issued a token that it then did not accept. Nothing was connected; please try again."}
		}
	}
	detail := "connected in the browser"
	if link.AccountLogin != "" {
		detail += " as " + link.AccountLogin
	}
	// The link's creation is recorded with it, in the same transaction.
	stored, err := h.store.PutLink(ctx, link, tokenbroker.Record{Audit: []tokenbroker.AuditEvent{
		h.event(req, tokenbroker.AuditLinkCreate, "ok", detail),
	}})
	if err != nil {
		h.log.ErrorContext(ctx, "web: store link", "provider", p.ID(), "err", err)
		h.audit(req, tokenbroker.AuditLinkCreate, tokenbroker.ErrorCode(err), "storing the link failed")
		return nil, &pageError{Status: http.StatusInternalServerError, Code: codeInternal, Title: "Something went wrong",
			Message: "The account could not be saved. Please try again in a moment."}
	}
	h.log.InfoContext(ctx, "web: link connected", "user", req.UserID, "provider", p.ID(), "generation", stored.Generation)
	return stored, nil
}

// audit records a connect-flow event that changed nothing; it never
// carries a token.
func (h *Handler) audit(req *tokenbroker.AuthRequest, action, outcome, detail string) {
	ev := h.event(req, action, outcome, detail)
	ev.Time = h.now()
	h.auditor.Record(ev)
}

// event is a connect-flow audit event; written with a change, its time is
// the database's.
func (h *Handler) event(req *tokenbroker.AuthRequest, action, outcome, detail string) tokenbroker.AuditEvent {
	return tokenbroker.AuditEvent{
		Actor:      "browser",
		Action:     action,
		UserID:     req.UserID,
		ProviderID: req.ProviderID,
		Outcome:    outcome,
		Detail:     detail,
	}
}

// finish sends the browser on after a link was stored: to the session's
// return URL when it is on the allow-list and every provider of the session
// is now connected, otherwise back to the connect page with a banner. If
// the session has expired meanwhile it shows a final page.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, sessionID string, p tokenbroker.Provider, link *tokenbroker.Link) {
	s, err := h.store.GetConnectSession(r.Context(), sessionID)
	if err != nil {
		if !tokenbroker.IsNotFound(err) {
			h.log.ErrorContext(r.Context(), "web: get connect session after connect", "err", err)
		}
		data := struct {
			pageData
			banner
		}{pageData{Title: "Account connected", CSS: template.CSS(styleCSS)}, banner{displayName(p.Info()), accountName(link)}}
		h.render(w, r, http.StatusOK, doneTmpl, data)
		return
	}
	if s.ReturnURL != "" && h.allow.Allows(s.ReturnURL) && h.allConnected(r.Context(), s) {
		http.Redirect(w, r, s.ReturnURL, http.StatusSeeOther)
		return
	}
	if s.ReturnURL != "" && !h.allow.Allows(s.ReturnURL) {
		h.log.WarnContext(r.Context(), "web: return URL not on the allow-list; not redirecting", "session", sessionTag(s.ID))
	}
	http.Redirect(w, r, h.connectPath(s.ID)+"?connected="+url.QueryEscape(p.ID()), http.StatusSeeOther)
}

// allConnected reports whether the user has a link that needs nothing of
// them (active, degraded or idle) to every provider the session offers.
func (h *Handler) allConnected(ctx context.Context, s *tokenbroker.ConnectSession) bool {
	links, err := h.store.ListLinks(ctx, s.UserID)
	if err != nil {
		h.log.ErrorContext(ctx, "web: list links", "err", err)
		return false
	}
	for _, p := range h.sessionProviders(s) {
		if !slices.ContainsFunc(links, func(l *tokenbroker.Link) bool {
			return l.ProviderID == p.ID() && l.State.Refreshable()
		}) {
			return false
		}
	}
	return true
}
