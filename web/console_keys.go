package web

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/configfile"
)

type keyRow struct {
	*tokenbroker.APIKey
	LastUsed  time.Time
	Own       bool
	RevokeURL string
}

type keysData struct {
	consolePage
	Keys   []keyRow
	Scopes []option
	Error  string
	Form   keyForm
}

type keyForm struct {
	Name, Users, Providers string
}

// serveKeys lists every API key (prefix, name, scopes, restrictions, last
// use) with the form that creates one.
func (c *Console) serveKeys(w http.ResponseWriter, r *http.Request, a *adminSession) {
	c.renderKeys(w, r, a, http.StatusOK, keyForm{}, nil, "")
}

func (c *Console) renderKeys(w http.ResponseWriter, r *http.Request, a *adminSession, status int, f keyForm, scopes []string, msg string) {
	keys, err := c.cfg.Store.ListAPIKeys(r.Context())
	if err != nil {
		c.internalError(w, r, a, "list API keys", err)
		return
	}
	usage, err := c.cfg.Store.ListAPIKeyUsage(r.Context())
	if err != nil {
		c.internalError(w, r, a, "read API key usage", err)
		return
	}
	d := keysData{consolePage: c.page(a, "API keys", "keys"), Error: msg, Form: f}
	// Newest first: the key just made, and the keys in use, are on top.
	for _, k := range slices.Backward(keys) {
		d.Keys = append(d.Keys, keyRow{APIKey: k, LastUsed: usage[k.ID], Own: k.ID == a.key.ID,
			RevokeURL: c.path("/admin/keys/" + strconv.FormatInt(k.ID, 10) + "/revoke")})
	}
	for _, s := range tokenbroker.AllScopes {
		d.Scopes = append(d.Scopes, option{Value: s, Label: s, Selected: slices.Contains(scopes, s)})
	}
	c.render(w, r, status, keysTmpl, d)
}

// serveCreateKey creates a key as the API does and shows its secret once.
func (c *Console) serveCreateKey(w http.ResponseWriter, r *http.Request, a *adminSession) {
	f := keyForm{Name: r.PostFormValue("name"), Users: r.PostFormValue("users"), Providers: r.PostFormValue("providers")}
	scopes := r.PostForm["scope"]
	if !printable(f.Name, 100) {
		c.renderKeys(w, r, a, http.StatusBadRequest, f, scopes, "name: want 1-100 characters of text, without control characters")
		return
	}
	k, plaintext, err := c.cfg.Backend.CreateKey(r.Context(), f.Name, scopes, configfile.SplitList(f.Users), configfile.SplitList(f.Providers))
	if tokenbroker.ErrorCode(err) == tokenbroker.EINVALID {
		c.renderKeys(w, r, a, http.StatusBadRequest, f, scopes, tokenbroker.ErrorMessage(err))
		return
	}
	detail := "created key"
	if k != nil {
		detail += " " + k.Prefix + " (" + strings.Join(k.Scopes, ",") + ")"
	}
	c.audit(a, tokenbroker.AuditAPIKeyCreate, "", "", err, detail)
	if err != nil {
		c.appError(w, r, a, "create API key", err)
		return
	}
	restr := "any user and any provider"
	if len(k.Users) > 0 || len(k.Providers) > 0 {
		restr = "users: " + orAny(k.Users) + "; providers: " + orAny(k.Providers)
	}
	c.render(w, r, http.StatusOK, resultTmpl, resultData{consolePage: c.page(a, "API key created", "keys"),
		Heading: "API key created",
		Message: "Key " + k.Prefix + " (" + k.Name + ") with scopes " + strings.Join(k.Scopes, ", ") + ", for " + restr + ".",
		Copy:    plaintext, CopyName: "API key",
		Note: "Copy the key now: it is shown only once. tokenbroker keeps only a hash of its secret.",
		Back: c.path("/admin/keys"), BackText: "Back to the API keys"})
}

func orAny(list []string) string {
	if len(list) == 0 {
		return "any"
	}
	return strings.Join(list, ", ")
}

// keyParam finds the key named by the {id} of the path.
func (c *Console) keyParam(w http.ResponseWriter, r *http.Request, a *adminSession) *tokenbroker.APIKey {
	s := r.PathValue("id")
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != s {
		c.renderError(w, r, a, http.StatusBadRequest, tokenbroker.EINVALID, "Invalid request", "key id: want a positive integer")
		return nil
	}
	keys, err := c.cfg.Store.ListAPIKeys(r.Context())
	if err != nil {
		c.internalError(w, r, a, "list API keys", err)
		return nil
	}
	i := slices.IndexFunc(keys, func(k *tokenbroker.APIKey) bool { return k.ID == id })
	if i < 0 {
		c.renderError(w, r, a, http.StatusNotFound, codeNotFound, "Not found", "There is no API key with this id.")
		return nil
	}
	return keys[i]
}

func (c *Console) revokeConfirm(a *adminSession, k *tokenbroker.APIKey, msg string) confirmData {
	d := confirmData{consolePage: c.page(a, "Revoke API key", "keys"),
		Heading: "Revoke key " + k.Prefix + " (" + k.Name + ")?",
		Message: "Every request made with this key is refused from now on (on other replicas within seconds). This cannot be undone.",
		Action:  c.path("/admin/keys/" + strconv.FormatInt(k.ID, 10) + "/revoke"), Button: "Revoke key", Danger: true,
		Cancel: c.path("/admin/keys"), Error: msg}
	if k.ID == a.key.ID {
		d.Checkbox = "This is the key you signed in with: revoking it also signs you out. I understand."
	}
	return d
}

func (c *Console) serveRevokeConfirm(w http.ResponseWriter, r *http.Request, a *adminSession) {
	k := c.keyParam(w, r, a)
	if k == nil {
		return
	}
	if k.Revoked() {
		c.renderError(w, r, a, http.StatusConflict, tokenbroker.ECONFLICT, "Already revoked", "This key was revoked on "+formatTime(k.RevokedAt)+".")
		return
	}
	c.render(w, r, http.StatusOK, confirmTmpl, c.revokeConfirm(a, k, ""))
}

// serveRevoke revokes a key. The key of the caller's own session needs
// the extra confirmation box ticked, and revoking it ends the session.
func (c *Console) serveRevoke(w http.ResponseWriter, r *http.Request, a *adminSession) {
	k := c.keyParam(w, r, a)
	if k == nil {
		return
	}
	own := k.ID == a.key.ID
	if own && r.PostFormValue("confirm") != "yes" {
		c.render(w, r, http.StatusBadRequest, confirmTmpl, c.revokeConfirm(a, k, "Tick the box to revoke the key of your own session."))
		return
	}
	revoked, err := c.cfg.Backend.RevokeKey(r.Context(), k.ID)
	if revoked != nil {
		c.audit(a, tokenbroker.AuditAPIKeyRevoke, "", "", err, "revoked key "+revoked.Prefix)
	}
	if err != nil {
		c.appError(w, r, a, "revoke API key", err)
		return
	}
	if own {
		if err := c.cfg.Store.DeleteAdminSession(r.Context(), a.sess.ID); err != nil {
			c.log.WarnContext(r.Context(), "delete console session", "err", err.Error())
		}
		c.clearCookie(w, sessionCookie)
		c.render(w, r, http.StatusOK, resultTmpl, resultData{consolePage: c.page(nil, "Key revoked", ""),
			Heading: "Key revoked, you are signed out",
			Message: "Key " + k.Prefix + " was the key of your session. Sign in again with another admin key.",
			Back:    c.path("/admin/sign-in"), BackText: "Sign in"})
		return
	}
	c.render(w, r, http.StatusOK, resultTmpl, resultData{consolePage: c.page(a, "Key revoked", "keys"),
		Heading: "Key revoked", Message: "Key " + k.Prefix + " (" + k.Name + ") is revoked.",
		Back: c.path("/admin/keys"), BackText: "Back to the API keys"})
}
