package hydratest

import (
	"html/template"
	"net/http"
	"net/url"
)

// loginApp is the smallest login and consent app Hydra can work with: the
// login page signs in the authorization request's login_hint at once, else
// AutoLogin, else whoever its form names; the consent
// page grants every requested scope and audience, with the subject as
// preferred_username and an e-mail address in the id_token.
type loginApp struct {
	admin     string
	autoLogin string
}

var loginForm = template.Must(template.New("login").Parse(`<!doctype html>
<html><head><title>Hydra test login</title></head><body>
<form method="post" action="/login">
<input type="hidden" name="challenge" value="{{.}}">
<label>Subject <input type="text" id="subject" name="subject" value="alice"></label>
<button type="submit" id="signin">Sign in</button>
</form></body></html>`))

func (a *loginApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/login" && r.Method == http.MethodGet:
		challenge := r.URL.Query().Get("login_challenge")
		var lr struct {
			Skip    bool   `json:"skip"`
			Subject string `json:"subject"`
			OIDC    struct {
				LoginHint string `json:"login_hint"`
			} `json:"oidc_context"`
		}
		if err := adminCall(r.Context(), http.MethodGet, a.admin+"/admin/oauth2/auth/requests/login?login_challenge="+url.QueryEscape(challenge), nil, &lr, http.StatusOK); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		switch {
		case lr.Skip:
			a.acceptLogin(w, r, challenge, lr.Subject)
		case lr.OIDC.LoginHint != "":
			a.acceptLogin(w, r, challenge, lr.OIDC.LoginHint)
		case a.autoLogin != "":
			a.acceptLogin(w, r, challenge, a.autoLogin)
		default:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_ = loginForm.Execute(w, challenge)
		}
	case r.URL.Path == "/login" && r.Method == http.MethodPost:
		a.acceptLogin(w, r, r.PostFormValue("challenge"), r.PostFormValue("subject"))
	case r.URL.Path == "/consent" && r.Method == http.MethodGet:
		a.consent(w, r, r.URL.Query().Get("consent_challenge"))
	default:
		http.NotFound(w, r)
	}
}

func (a *loginApp) acceptLogin(w http.ResponseWriter, r *http.Request, challenge, subject string) {
	var redirect struct {
		To string `json:"redirect_to"`
	}
	err := adminCall(r.Context(), http.MethodPut, a.admin+"/admin/oauth2/auth/requests/login/accept?login_challenge="+url.QueryEscape(challenge),
		map[string]any{"subject": subject}, &redirect, http.StatusOK)
	a.redirect(w, r, redirect.To, err)
}

func (a *loginApp) consent(w http.ResponseWriter, r *http.Request, challenge string) {
	ctx := r.Context()
	var cr struct {
		Subject   string   `json:"subject"`
		Scopes    []string `json:"requested_scope"`
		Audiences []string `json:"requested_access_token_audience"`
	}
	q := "?consent_challenge=" + url.QueryEscape(challenge)
	if err := adminCall(ctx, http.MethodGet, a.admin+"/admin/oauth2/auth/requests/consent"+q, nil, &cr, http.StatusOK); err != nil {
		a.redirect(w, r, "", err)
		return
	}
	var redirect struct {
		To string `json:"redirect_to"`
	}
	err := adminCall(ctx, http.MethodPut, a.admin+"/admin/oauth2/auth/requests/consent/accept"+q, map[string]any{
		"grant_scope":                 cr.Scopes,
		"grant_access_token_audience": cr.Audiences,
		"session": map[string]any{"id_token": map[string]any{
			"preferred_username": cr.Subject,
			"email":              cr.Subject + "@example.test",
		}},
	}, &redirect, http.StatusOK)
	a.redirect(w, r, redirect.To, err)
}

func (a *loginApp) redirect(w http.ResponseWriter, r *http.Request, to string, err error) {
	if err != nil || to == "" {
		msg := "no redirect"
		if err != nil {
			msg = err.Error()
		}
		http.Error(w, msg, http.StatusBadGateway)
		return
	}
	http.Redirect(w, r, to, http.StatusFound)
}
