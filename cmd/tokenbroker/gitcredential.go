package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/client"
	"github.com/tokenbroker/tokenbroker/provider"
)

func init() { commands = append(commands, newGitCredentialCmd) }

// gitCredFlags are the settings of `tokenbroker git-credential` (and of
// its GIT_ASKPASS mode, which reads them from the environment only).
type gitCredFlags struct {
	url, user, audience string
	minValid            time.Duration
	envErr              error // an environment value that does not parse
}

// bind declares the flags with defaults from getenv.
func (f *gitCredFlags) bind(cmd *cobra.Command, getenv func(string) string) {
	fs := cmd.Flags()
	fs.StringVar(&f.url, "url", envOr(getenv, "TOKENBROKER_URL", "http://127.0.0.1:8080"), "tokenbroker base URL (env TOKENBROKER_URL)")
	fs.StringVar(&f.user, "user", getenv("TOKENBROKER_USER"), "user whose link to use (env TOKENBROKER_USER); required with an API key, optional with a workload token whose trust entry names the user")
	fs.StringVar(&f.audience, "audience", getenv("TOKENBROKER_IDENTITY_AUDIENCE"), "audience to request from GitHub Actions' OIDC token service (env TOKENBROKER_IDENTITY_AUDIENCE; default --url)")
	fs.DurationVar(&f.minValid, "min-valid", envDuration(getenv, "TOKENBROKER_MIN_VALID", time.Minute, &f.envErr), "with an API key: the token must stay valid at least this long")
}

// gitCredEnv returns the settings from the environment alone.
func gitCredEnv(getenv func(string) string) *gitCredFlags {
	f := &gitCredFlags{}
	f.bind(&cobra.Command{}, getenv)
	return f
}

func newGitCredentialCmd() *cobra.Command {
	f := &gitCredFlags{}
	cmd := &cobra.Command{
		Use:   "git-credential get|store|erase|setup",
		Short: "A git credential helper that answers with tokens from tokenbroker",
		Long: `git-credential speaks git's credential helper protocol (gitcredentials(7)) on
stdin/stdout. For "get" it picks the provider serving the requested host (the
providers' hosts), fetches a valid access token from tokenbroker and prints the
provider kind's username (x-access-token for GitHub, oauth2 for GitLab, ...),
the token as password, and password_expiry_utc. A host no provider serves gets
no answer, so git asks its next helper. "store" and "erase" are accepted and do
nothing: tokenbroker holds the tokens. "setup" prints the git config command.

The credential to ask tokenbroker with is, in order:
  TOKENBROKER_API_KEY               an API key with tokens:read, with --user
  TOKENBROKER_IDENTITY_TOKEN_FILE   a file holding a workload JWT (a Kubernetes
                                    projected service-account token, a SPIFFE
                                    JWT-SVID), read at every use
  ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN  GitHub Actions' OIDC token service
                                    (permissions: id-token: write)
A workload token is exchanged at POST /oauth2/token (RFC 8693); see
docs/identity.md.

When tokenbroker refuses (the link needs re-authentication, the workload is not
trusted, ...), the reason is printed on stderr and nothing on stdout, so git
fails with its usual authentication error.

The tokenbroker binary also works as GIT_ASKPASS: invoked with git's
"Username for '...'" or "Password for '...'" prompt as its only argument, it
prints the username or the token, with the settings from the environment
(TOKENBROKER_URL, TOKENBROKER_USER, TOKENBROKER_IDENTITY_AUDIENCE).`,
		Example: `  tokenbroker git-credential setup --url https://broker.internal
  git config --global credential.helper "$(command -v tokenbroker) git-credential --url https://broker.internal"
  printf 'protocol=https\nhost=github.com\n\n' | TOKENBROKER_API_KEY=tbk_... tokenbroker git-credential get --user alice
  GIT_ASKPASS=$(command -v tokenbroker) TOKENBROKER_URL=https://broker.internal git clone https://github.com/acme/app`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"get", "store", "erase", "setup"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGitCredential(cmd.Context(), f, args[0], cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), getenvFrom)
		},
	}
	f.bind(cmd, getenvFrom)
	return cmd
}

func runGitCredential(ctx context.Context, f *gitCredFlags, action string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	if f.envErr != nil {
		return exitf(2, "%v", f.envErr)
	}
	switch action {
	case "store", "erase":
		_, _ = io.Copy(io.Discard, io.LimitReader(stdin, 1<<20))
		return nil
	case "setup":
		exe, err := os.Executable()
		if err != nil {
			exe = "tokenbroker"
		}
		helper := exe + " git-credential --url " + f.url
		if f.user != "" {
			helper += " --user " + f.user
		}
		fmt.Fprintf(stdout, "git config --global credential.helper %s\n", "'"+strings.ReplaceAll(helper, "'", `'\''`)+"'")
		return nil
	case "get":
	default:
		return exitf(2, "unknown action %q: want get, store, erase or setup", action)
	}
	req, err := readCredentialRequest(stdin)
	if err != nil {
		return exitf(1, "%v", err)
	}
	proto, host := req["protocol"], req["host"]
	if (proto != "https" && proto != "http") || host == "" {
		return nil // not ours: git asks its next helper
	}
	cred, err := gitCredential(ctx, f, getenv, host)
	if err != nil {
		// Nothing on stdout: git goes on to its next helper or prompt and
		// fails with its usual authentication error; ours says why.
		fmt.Fprintln(stderr, "tokenbroker:", err)
		return nil
	}
	if cred == nil {
		return nil
	}
	fmt.Fprintf(stdout, "username=%s\npassword=%s\n", cred.username, cred.token.AccessToken)
	if !cred.token.Expiry.IsZero() {
		fmt.Fprintf(stdout, "password_expiry_utc=%d\n", cred.token.Expiry.Unix())
	}
	return nil
}

// readCredentialRequest reads git's key=value lines up to a blank line or
// the end of input.
func readCredentialRequest(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("malformed credential request line")
		}
		out[k] = v
	}
	return out, sc.Err()
}

// gitCred is the answer for a host.
type gitCred struct {
	username string
	token    *client.Token
}

// gitCredential finds the provider serving host and fetches its token,
// or returns nil when no provider serves host.
func gitCredential(ctx context.Context, f *gitCredFlags, getenv func(string) string, host string) (*gitCred, error) {
	if key := getenv("TOKENBROKER_API_KEY"); key != "" {
		if f.user == "" {
			return nil, errors.New("--user (or TOKENBROKER_USER) is required with an API key")
		}
		c := client.New(f.url, key, client.WithUserAgent("tokenbroker-git-credential/"+version()))
		p, err := providerForHost(ctx, c, host)
		if p == nil || err != nil {
			return nil, err
		}
		tok, err := c.Token(ctx, f.user, p.ID, f.minValid)
		if err != nil {
			return nil, explain(err)
		}
		return &gitCred{username: gitUsername(p.Kind), token: tok}, nil
	}
	jwt, err := workloadToken(ctx, f, getenv)
	if err != nil {
		return nil, err
	}
	c := client.New(f.url, jwt, client.WithUserAgent("tokenbroker-git-credential/"+version()))
	p, err := providerForHost(ctx, c, host)
	if p == nil || err != nil {
		return nil, err
	}
	tok, err := c.ExchangeToken(ctx, jwt, p.ID, f.user)
	if err != nil {
		return nil, explain(err)
	}
	return &gitCred{username: gitUsername(p.Kind), token: tok}, nil
}

// providerForHost returns the first provider the caller may use whose
// hosts expression matches host, or nil.
func providerForHost(ctx context.Context, c *client.Client, host string) (*client.Provider, error) {
	ps, err := c.Providers(ctx)
	if err != nil {
		return nil, explain(err)
	}
	for i := range ps {
		if ps[i].Hosts == "" {
			continue
		}
		match, err := provider.HostMatcher(ps[i].Hosts)
		if err == nil && match(host) {
			return &ps[i], nil
		}
	}
	return nil, nil
}

// workloadToken reads the workload JWT: TOKENBROKER_IDENTITY_TOKEN_FILE, or
// GitHub Actions' OIDC token service.
func workloadToken(ctx context.Context, f *gitCredFlags, getenv func(string) string) (string, error) {
	if path := getenv("TOKENBROKER_IDENTITY_TOKEN_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("TOKENBROKER_IDENTITY_TOKEN_FILE: %v", errors.Unwrap(err))
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("TOKENBROKER_IDENTITY_TOKEN_FILE %s is empty", path)
	}
	reqURL, reqToken := getenv("ACTIONS_ID_TOKEN_REQUEST_URL"), getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
	if reqURL == "" || reqToken == "" {
		return "", errors.New("no credential: set TOKENBROKER_API_KEY (with --user) or TOKENBROKER_IDENTITY_TOKEN_FILE, or run in GitHub Actions with permissions id-token: write")
	}
	aud := f.audience
	if aud == "" {
		aud = f.url
	}
	sep := "?"
	if strings.Contains(reqURL, "?") {
		sep = "&"
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reqURL+sep+"audience="+url.QueryEscape(aud), nil)
	if err != nil {
		return "", fmt.Errorf("ACTIONS_ID_TOKEN_REQUEST_URL: %v", err)
	}
	req.Header.Set("Authorization", "bearer "+reqToken)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", errors.New("GitHub Actions' OIDC token service cannot be reached")
	}
	defer resp.Body.Close()
	var v struct {
		Value string `json:"value"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v) != nil || v.Value == "" {
		return "", fmt.Errorf("GitHub Actions' OIDC token service answered HTTP %d (does the job have permissions id-token: write?)", resp.StatusCode)
	}
	return v.Value, nil
}

// explain turns an API error into the line git's user sees.
func explain(err error) error {
	var e *client.Error
	var oe *client.OAuthError
	switch {
	case errors.As(err, &e):
		msg := e.Code + ": " + e.Detail
		if e.ConnectURL != "" {
			msg += " (connect again at " + e.ConnectURL + ")"
		}
		return errors.New(msg)
	case errors.As(err, &oe):
		return errors.New(oe.Code + ": " + oe.Description)
	}
	return err
}

// gitUsername is the username a provider kind expects with an OAuth access
// token as the password over HTTPS.
func gitUsername(kind string) string {
	switch kind {
	case provider.KindGitHub:
		return "x-access-token"
	case "bitbucket-cloud":
		return "x-token-auth"
	}
	return "oauth2" // GitLab, Gitea, Forgejo, and what accepts any name
}

// isAskpassPrompt reports whether args are git's GIT_ASKPASS call.
func isAskpassPrompt(args []string) bool {
	return len(args) == 1 && (strings.HasPrefix(args[0], "Username for '") || strings.HasPrefix(args[0], "Password for '"))
}

// runAskpass answers a GIT_ASKPASS prompt: the username or the token for
// the URL in the prompt, with the settings from the environment.
func runAskpass(ctx context.Context, prompt string, stdout, stderr io.Writer, getenv func(string) string) int {
	_, rest, _ := strings.Cut(prompt, "'")
	raw, _, _ := strings.Cut(rest, "'")
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		fmt.Fprintln(stderr, "tokenbroker: cannot read the URL in git's prompt")
		return 1
	}
	f := gitCredEnv(getenv)
	if f.envErr != nil {
		fmt.Fprintln(stderr, "tokenbroker:", f.envErr)
		return 1
	}
	cred, err := gitCredential(ctx, f, getenv, u.Host)
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "tokenbroker:", err)
		return 1
	case cred == nil:
		fmt.Fprintf(stderr, "tokenbroker: no provider serves %s\n", u.Host)
		return 1
	}
	if strings.HasPrefix(prompt, "Username") {
		fmt.Fprintln(stdout, cred.username)
	} else {
		fmt.Fprintln(stdout, cred.token.AccessToken)
	}
	return 0
}
