package fakeidp

import (
	"bytes"
	"html/template"
	"net/http"
)

// hiddenField is a hidden input of the login form.
type hiddenField struct{ Name, Value string }

var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fakeidp — {{.}}</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:1rem 0 .3rem;font-weight:600}
select,input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
.buttons{margin-top:1.5rem;display:flex;gap:.5rem}button{padding:.5rem 1.2rem;font-size:1rem;cursor:pointer}
button.primary{background:#2557d6;color:#fff;border:0;border-radius:4px}
.error{color:#b00020;font-weight:600}code{background:#eee;padding:0 .2rem}
.note{color:#666;font-size:.85rem;margin-top:1.5rem}
</style></head><body><main>{{end}}
{{define "foot"}}<p class="note">fakeidp — a fake OAuth2 provider for tests and demos. Never use it for real accounts.</p></main></body></html>{{end}}
{{define "users"}}
<label for="login">Sign in as</label>
<select id="login" name="login">{{range .}}<option value="{{.Login}}">{{.Login}}{{if .Email}} ({{.Email}}){{end}}</option>{{end}}</select>
<label for="username">or type a username</label>
<input id="username" name="username" autocomplete="username" placeholder="new or existing username">
{{end}}
{{define "login"}}{{template "head" "sign in"}}
<h1>Sign in to fakeidp</h1>
<p>The application <b>{{.ClientID}}</b> asks for access to your account{{if .Scope}} with scope <code>{{.Scope}}</code>{{end}}.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}{{template "users" .Users}}
<div class="buttons"><button class="primary" type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button></div>
</form>{{template "foot"}}{{end}}
{{define "device"}}{{template "head" "connect a device"}}
<h1>Connect a device</h1>
<p>Type the code your device shows.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label for="user_code">Code</label>
<input id="user_code" name="user_code" value="{{.UserCode}}" placeholder="BCDF-GHJK" autocomplete="off" autocapitalize="characters" required>
{{template "users" .Users}}
<div class="buttons"><button class="primary" type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button></div>
</form>{{template "foot"}}{{end}}
{{define "message"}}{{template "head" .Title}}
<h1 id="result">{{.Title}}</h1><p{{if .IsError}} class="error" role="alert"{{end}}>{{.Message}}</p>{{template "foot"}}{{end}}
{{define "index"}}{{template "head" "index"}}
<h1>fakeidp</h1>
<p>Client <code>{{.ClientID}}</code>, flavour <code>{{.Flavor}}</code>{{if .OIDC}}, OpenID Connect{{end}}.</p>
<ul>
<li>Authorize: <code>{{.E.Authorize}}</code></li>
<li>Token: <code>{{.E.Token}}</code></li>
<li>Device authorization: <code>{{.E.DeviceAuthorization}}</code></li>
<li><a href="{{.E.DeviceVerification}}">Device verification page</a></li>
<li>Userinfo: <code>{{.E.Userinfo}}</code></li>
<li>Revocation: <code>{{.E.Revoke}}</code></li>
{{if .OIDC}}<li><a href="{{.E.Discovery}}">Discovery document</a>, <a href="{{.E.JWKS}}">JWKS</a></li>{{end}}
<li><a href="{{.E.Stats}}">Stats</a>, <a href="{{.E.AdminFaults}}">faults</a></li>
</ul>
<p>Users:</p><ul>{{range .Users}}<li><code>{{.Login}}</code> (id {{.ID}}, {{.Email}})</li>{{end}}</ul>
{{template "foot"}}{{end}}
`))

// render executes template name into w with status.
func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.log.Error("fakeidp: rendering page", "page", name, "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *Server) usersSnapshot() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]User(nil), s.users...)
}

// renderLogin shows the login page for req.
func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, req *authRequest, msg string) {
	s.render(w, status, "login", map[string]any{
		"ClientID": req.clientID,
		"Scope":    req.scope,
		"Error":    msg,
		"Action":   s.base(r) + PathAuthorize,
		"Hidden":   req.hidden(),
		"Users":    s.usersSnapshot(),
	})
}

// renderDevice shows the device verification page.
func (s *Server) renderDevice(w http.ResponseWriter, r *http.Request, status int, userCode, msg string) {
	s.render(w, status, "device", map[string]any{
		"UserCode": userCode,
		"Error":    msg,
		"Action":   s.base(r) + PathDevice,
		"Users":    s.usersSnapshot(),
	})
}

// renderError shows an error page that does not go back to the client.
func (s *Server) renderError(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, "message", map[string]any{"Title": "Request refused", "Message": msg, "IsError": true})
}

// renderDone shows a final message.
func (s *Server) renderDone(w http.ResponseWriter, title, msg string) {
	s.render(w, http.StatusOK, "message", map[string]any{"Title": title, "Message": msg})
}

// handleIndex lists the endpoints and users, for people trying the
// server in a browser.
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	s.render(w, http.StatusOK, "index", map[string]any{
		"ClientID": s.cfg.ClientID,
		"Flavor":   s.cfg.Flavor,
		"OIDC":     s.cfg.OIDC,
		"E":        endpointsAt(s.base(r)),
		"Users":    s.usersSnapshot(),
	})
}
