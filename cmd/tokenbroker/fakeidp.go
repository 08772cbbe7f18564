package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tokenbroker/tokenbroker/fakeidp"
)

func init() { commands = append(commands, newFakeIDPCmd) }

// fakeidpFlags are the flags of `tokenbroker fakeidp`.
type fakeidpFlags struct {
	addr, baseURL                       string
	clientID, clientSecret              string
	publicClient                        bool
	redirectURIs                        []string
	accessTTL, refreshTTL, codeTTL      time.Duration
	deviceTTL, deviceInterval           time.Duration
	flavor, clientAuth                  string
	requirePKCE, noReuseDetection, oidc bool
	reuseGrace                          time.Duration
	autoApprove                         string
	users                               []string
	latency, jitter, retryAfter         time.Duration
	pHang, p429, p500, p502, p503       float64
	hang                                bool
	consumeFail, consumeDrop            float64
	consumeFailNext, consumeDropNext    int
	faultTarget                         string
	seed                                uint64
	logLevel                            string
	jsonOut                             bool
	// imitate holds the settings that imitate other servers, bound to
	// flags directly.
	imitate fakeidp.Config
	overlap string
}

// config turns the flags into a fakeidp.Config.
func (f *fakeidpFlags) config(logOut io.Writer) (fakeidp.Config, error) {
	cfg := fakeidp.Config{
		BaseURL:               f.baseURL,
		ClientID:              f.clientID,
		ClientSecret:          f.clientSecret,
		PublicClient:          f.publicClient,
		RedirectURIs:          f.redirectURIs,
		AccessTokenTTL:        f.accessTTL,
		RefreshTokenTTL:       f.refreshTTL,
		CodeTTL:               f.codeTTL,
		DeviceCodeTTL:         f.deviceTTL,
		DeviceInterval:        f.deviceInterval,
		Flavor:                fakeidp.Flavor(f.flavor),
		RequirePKCE:           f.requirePKCE,
		ClientAuth:            fakeidp.ClientAuthMode(f.clientAuth),
		DisableReuseDetection: f.noReuseDetection,
		ReuseGracePeriod:      f.reuseGrace,
		AutoApprove:           f.autoApprove,
		OIDC:                  f.oidc,

		OverlappingRefresh:         fakeidp.OverlapMode(f.overlap),
		RevokeGrantWithAccessToken: f.imitate.RevokeGrantWithAccessToken,
		RequireOfflineAccess:       f.imitate.RequireOfflineAccess,
		TokenType:                  f.imitate.TokenType,
		IgnoreRefreshScope:         f.imitate.IgnoreRefreshScope,
		NoBasicChallenge:           f.imitate.NoBasicChallenge,
		ExpiresInRoundDown:         f.imitate.ExpiresInRoundDown,
		MinimalUserinfo:            f.imitate.MinimalUserinfo,
		MinStateLength:             f.imitate.MinStateLength,
		NoIssParameter:             f.imitate.NoIssParameter,
		VerboseErrors:              f.imitate.VerboseErrors,
		SeparateLoginOrigin:        f.imitate.SeparateLoginOrigin,
		Faults: fakeidp.Faults{
			Latency: f.latency, Jitter: f.jitter,
			PHang: f.pHang, P429: f.p429, P500: f.p500, P502: f.p502, P503: f.p503,
			Hang: f.hang, RetryAfter: f.retryAfter,
			ConsumeThenFail: f.consumeFail, ConsumeThenDrop: f.consumeDrop,
			ConsumeThenFailNext: f.consumeFailNext, ConsumeThenDropNext: f.consumeDropNext,
			Target: fakeidp.FaultTarget(f.faultTarget),
		},
	}
	for _, u := range f.users {
		user, err := fakeidp.ParseUser(u)
		if err != nil {
			return cfg, err
		}
		cfg.Users = append(cfg.Users, user)
	}
	if f.seed != 0 {
		var key [32]byte
		for i := range 8 {
			key[i] = byte(f.seed >> (8 * i))
		}
		cfg.Rand = rand.NewChaCha8(key)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return cfg, fmt.Errorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}

func newFakeIDPCmd() *cobra.Command {
	f := &fakeidpFlags{}
	cmd := &cobra.Command{
		Use:   "fakeidp",
		Short: "Run a fake OAuth2/OIDC provider for tests, demos and benchmarks",
		Long: `fakeidp runs a real OAuth2 authorization server with one client: the
authorization code grant with PKCE and a login page, the device flow, single-use
rotating refresh tokens with reuse detection (RFC 9700), RFC 7009 revocation,
a userinfo endpoint, optional OpenID Connect, GitHub-style errors, injected
faults, and counters at /stats. Faults can be changed while it runs with
PUT /admin/faults. It runs until interrupted. Never use it for real accounts.

See docs/fakeidp.md for every endpoint and setting.`,
		Example: `  tokenbroker fakeidp --addr 127.0.0.1:8085
  tokenbroker fakeidp --flavor github --access-token-ttl 1m --reuse-grace 5s
  tokenbroker fakeidp --oidc --require-pkce --redirect-uri http://127.0.0.1:8080/callback
  tokenbroker fakeidp --addr 127.0.0.1:0 --json --p503 0.1 --latency 200ms --jitter 100ms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := f.config(cmd.ErrOrStderr())
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				return exitf(2, "%v", err)
			}
			s, err := fakeidp.StartAt(f.addr, cfg)
			if err != nil {
				return exitf(1, "%v", err)
			}
			defer s.Close()
			printFakeIDP(cmd.OutOrStdout(), s, f.jsonOut)
			<-cmd.Context().Done()
			if !f.jsonOut {
				fmt.Fprintln(cmd.OutOrStdout(), "fakeidp: stopping")
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8085", "listen address (host:port; port 0 picks a free one)")
	fl.StringVar(&f.baseURL, "base-url", "", "public base URL if not http://<addr> (issuer, verification URI)")
	fl.StringVar(&f.clientID, "client-id", fakeidp.DefaultClientID, "the registered client's id")
	fl.StringVar(&f.clientSecret, "client-secret", fakeidp.DefaultClientSecret, "the registered client's secret")
	fl.BoolVar(&f.publicClient, "public-client", false, "public client: client_id alone authenticates (a secret sent must still match)")
	fl.StringArrayVar(&f.redirectURIs, "redirect-uri", nil, "registered redirect URI, matched exactly (repeatable; none: any loopback URI)")
	fl.DurationVar(&f.accessTTL, "access-token-ttl", fakeidp.DefaultAccessTokenTTL, "access token lifetime (at least 1s)")
	fl.DurationVar(&f.refreshTTL, "refresh-token-ttl", 0, "refresh token lifetime (0: no expiry)")
	fl.DurationVar(&f.codeTTL, "code-ttl", fakeidp.DefaultCodeTTL, "authorization code lifetime")
	fl.DurationVar(&f.deviceTTL, "device-code-ttl", fakeidp.DefaultDeviceCodeTTL, "device code lifetime")
	fl.DurationVar(&f.deviceInterval, "device-interval", fakeidp.DefaultDeviceInterval, "device polling interval (whole seconds)")
	fl.StringVar(&f.flavor, "flavor", string(fakeidp.FlavorStandard), "error flavour: standard (400 invalid_grant) or github (200 bad_refresh_token)")
	fl.StringVar(&f.clientAuth, "client-auth", string(fakeidp.ClientAuthBoth), "accepted client authentication: both, basic or form")
	fl.BoolVar(&f.requirePKCE, "require-pkce", false, "refuse authorization requests without an S256 code_challenge")
	fl.BoolVar(&f.noReuseDetection, "no-reuse-detection", false, "reject a used refresh token without revoking its family")
	fl.DurationVar(&f.reuseGrace, "reuse-grace", 0, "grace period in which a rotated refresh token may be replayed (0: off)")
	fl.StringVar(&f.autoApprove, "auto-approve", "", "approve /authorize at once as this user id or login (no login page)")
	fl.StringArrayVar(&f.users, "user", nil, `user "id[:login[:email]]" (repeatable; default alice, bob, carol)`)
	fl.BoolVar(&f.oidc, "oidc", false, "OpenID Connect: discovery, JWKS and signed id_tokens")
	fl.DurationVar(&f.latency, "latency", 0, "fault: latency added to every protocol endpoint")
	fl.DurationVar(&f.jitter, "jitter", 0, "fault: extra random latency in [0, jitter)")
	fl.Float64Var(&f.pHang, "p-hang", 0, "fault: probability that a request hangs until the client gives up")
	fl.BoolVar(&f.hang, "hang", false, "fault: every targeted request hangs")
	fl.Float64Var(&f.p429, "p429", 0, "fault: probability of 429 with Retry-After")
	fl.DurationVar(&f.retryAfter, "retry-after", fakeidp.DefaultRetryAfter, "fault: Retry-After of 429 answers")
	fl.Float64Var(&f.p500, "p500", 0, "fault: probability of 500")
	fl.Float64Var(&f.p502, "p502", 0, "fault: probability of 502")
	fl.Float64Var(&f.p503, "p503", 0, "fault: probability of 503")
	fl.Float64Var(&f.consumeFail, "consume-then-fail", 0, "fault: probability that a refresh rotates, then answers 500")
	fl.Float64Var(&f.consumeDrop, "consume-then-drop", 0, "fault: probability that a refresh rotates, then drops the connection")
	fl.IntVar(&f.consumeFailNext, "consume-then-fail-next", 0, "fault: the next N refreshes rotate, then answer 500")
	fl.IntVar(&f.consumeDropNext, "consume-then-drop-next", 0, "fault: the next N refreshes rotate, then drop the connection")
	fl.StringVar(&f.faultTarget, "fault-target", string(fakeidp.TargetToken), "requests the error faults hit: token, refresh or all")
	im := &f.imitate
	fl.StringVar(&f.overlap, "overlapping-refresh", string(fakeidp.OverlapReuse), "a refresh that overlapped the rotation of its token: reuse, server_error or revoked_pair")
	fl.BoolVar(&im.RevokeGrantWithAccessToken, "revoke-grant-with-access-token", false, "revoking an access token (RFC 7009) revokes its whole grant")
	fl.BoolVar(&im.RequireOfflineAccess, "require-offline-access", false, "issue refresh tokens only to grants with the offline_access (or offline) scope")
	fl.StringVar(&im.TokenType, "token-type", "", "token_type of token answers (default Bearer; bearer for --flavor github)")
	fl.BoolVar(&im.IgnoreRefreshScope, "ignore-refresh-scope", false, "ignore the scope parameter of a refresh")
	fl.BoolVar(&im.NoBasicChallenge, "no-basic-challenge", false, "no WWW-Authenticate on invalid_client answers")
	fl.BoolVar(&im.ExpiresInRoundDown, "expires-in-round-down", false, "expires_in one second under the lifetime, as a remaining lifetime rounded down")
	fl.BoolVar(&im.MinimalUserinfo, "minimal-userinfo", false, "userinfo answers sub, preferred_username and email only")
	fl.IntVar(&im.MinStateLength, "min-state-length", 0, "refuse authorization requests whose state is shorter (invalid_state)")
	fl.BoolVar(&im.NoIssParameter, "no-iss-parameter", false, "no iss (RFC 9207) in authorization responses, even with --oidc")
	fl.BoolVar(&im.VerboseErrors, "verbose-errors", false, "error descriptions start with RFC 6749's description of the code")
	fl.BoolVar(&im.SeparateLoginOrigin, "separate-login-origin", false, "serve the login page on a second listener; /authorize redirects there")
	fl.Uint64Var(&f.seed, "seed", 0, "seed for tokens and fault decisions, for reproducible runs (0: crypto/rand)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	fl.BoolVar(&f.jsonOut, "json", false, "print the endpoints as one JSON line instead of a table")
	return cmd
}

// printFakeIDP prints the server's URLs.
func printFakeIDP(w io.Writer, s *fakeidp.Server, asJSON bool) {
	e := s.Endpoints()
	c := s.Config()
	if asJSON {
		b, _ := json.Marshal(struct {
			fakeidp.Endpoints
			URL      string `json:"url"`
			ClientID string `json:"client_id"`
		}{e, s.URL(), c.ClientID})
		fmt.Fprintln(w, string(b))
		return
	}
	rows := [][2]string{
		{"issuer", e.Issuer},
		{"authorize", e.Authorize},
		{"token", e.Token},
		{"device authorization", e.DeviceAuthorization},
		{"device verification", e.DeviceVerification},
		{"userinfo", e.Userinfo},
		{"revocation", e.Revoke},
	}
	if c.OIDC {
		rows = append(rows, [2]string{"discovery", e.Discovery}, [2]string{"jwks", e.JWKS})
	}
	rows = append(rows,
		[2]string{"stats", e.Stats},
		[2]string{"faults (GET/PUT)", e.AdminFaults},
		[2]string{"client_id", c.ClientID},
	)
	logins := make([]string, len(c.Users))
	for i, u := range c.Users {
		logins[i] = u.Login
	}
	rows = append(rows, [2]string{"users", strings.Join(logins, ", ")})
	fmt.Fprintf(w, "fakeidp listening on %s (flavour %s)\n", s.URL(), c.Flavor)
	for _, r := range rows {
		fmt.Fprintf(w, "  %-21s %s\n", r[0], r[1])
	}
	fmt.Fprintln(w, "Press Ctrl-C to stop.")
}
