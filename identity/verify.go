package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tokenbroker/tokenbroker"
)

// Algorithms is the signature algorithm allow-list: RSA PKCS#1 v1.5 and
// PSS, ECDSA and EdDSA. "none" and the HMAC algorithms are never accepted,
// so a JWT "signed" with a public key as an HMAC secret fails to parse
// (RFC 8725 §2.1, §3.1).
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = time.Minute

// MaxJWTBytes bounds a presented JWT.
const MaxJWTBytes = 16 << 10

// Reasons a JWT is refused, the values of [Error.Reason]. They are the
// labels of the authentication failure metric: a small, fixed set.
const (
	ReasonMalformed       = "malformed"        // not a compact JWS JWT, or too large
	ReasonAlgorithm       = "algorithm"        // alg not on the allow-list (none, HS256, ...)
	ReasonUntrustedIssuer = "untrusted_issuer" // no trust entry has its iss
	ReasonKeysUnavailable = "keys_unavailable" // the issuer's keys cannot be fetched
	ReasonSignature       = "signature"        // unknown kid (after a refresh) or bad signature
	ReasonExpired         = "expired"          // exp passed, or exp missing
	ReasonNotYetValid     = "not_yet_valid"    // nbf or iat in the future
	ReasonTooOld          = "too_old"          // older than the entry's max_token_age
	ReasonAudience        = "audience"         // no entry of the issuer accepts its aud
	ReasonNoMatch         = "no_matching_trust"
	ReasonUser            = "user_claim" // the user claim is missing or not a valid user id
)

// Error is a refused JWT. Reason is one of the Reason constants; the
// message is safe to show to the caller (it never holds the JWT).
type Error struct {
	Reason string
	Msg    string
	// Issuer is the JWT's unverified iss claim, for logs (truncated).
	Issuer string
}

// Error implements the error interface.
func (e *Error) Error() string { return "workload identity: " + e.Reason + ": " + e.Msg }

// RefusalReason returns Reason (httpapi.WorkloadRefusal).
func (e *Error) RefusalReason() string { return e.Reason }

// Description returns Msg (httpapi.WorkloadRefusal).
func (e *Error) Description() string { return e.Msg }

// ClaimedIssuer returns Issuer (httpapi.WorkloadRefusal).
func (e *Error) ClaimedIssuer() string { return e.Issuer }

func refuse(reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Msg: fmt.Sprintf(format, args...)}
}

// Options tune a [Verifier]. The zero value is usable.
type Options struct {
	// HTTPClient fetches discovery documents and key sets (default: a
	// client with a 10s timeout).
	HTTPClient *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives warnings about key sets that cannot be fetched.
	Logger *slog.Logger
	// KeyRefresh is how old fetched keys may get before they are fetched
	// again (default [DefaultKeyRefresh]).
	KeyRefresh time.Duration
	// MinKeyRefetch bounds how often one issuer's keys are fetched (default
	// [DefaultMinKeyRefetch]).
	MinKeyRefetch time.Duration
}

// Verifier checks workload JWTs against the trust entries. It is safe for
// concurrent use.
type Verifier struct {
	byIssuer map[string][]*trust
	trusts   []*trust
	now      func() time.Time
}

// trust is a Trust ready to match.
type trust struct {
	Trust
	subject *regexp.Regexp // nil: any
	keys    keySet
}

// NewVerifier builds a verifier for cfg, which must have passed
// [Config.Validate]. It reads every jwks_file now and makes no request:
// OpenID Connect issuers are discovered when first needed, so an issuer
// that is down does not stop the server from starting.
func NewVerifier(cfg *Config, opts Options) (*Verifier, error) {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KeyRefresh <= 0 {
		opts.KeyRefresh = DefaultKeyRefresh
	}
	if opts.MinKeyRefetch <= 0 {
		opts.MinKeyRefetch = DefaultMinKeyRefetch
	}
	v := &Verifier{byIssuer: map[string][]*trust{}, now: opts.Now}
	// Entries of one issuer share its remote key set.
	remote := map[string]*remoteKeys{}
	for _, tc := range cfg.WorkloadIdentities {
		t := &trust{Trust: tc}
		if tc.Subject != "" {
			t.subject = globRegexp(tc.Subject)
		}
		if tc.JWKSFile != "" {
			ks, err := loadJWKSFile(tc.JWKSFile)
			if err != nil {
				return nil, &FieldError{Trust: tc.ID, Field: "jwks_file", Msg: err.Error()}
			}
			t.keys = ks
		} else {
			rk := remote[tc.Issuer]
			if rk == nil {
				rk = &remoteKeys{issuer: tc.Issuer, client: opts.HTTPClient, now: opts.Now, log: opts.Logger,
					refresh: opts.KeyRefresh, minRefetch: opts.MinKeyRefetch}
				remote[tc.Issuer] = rk
			}
			t.keys = rk
		}
		v.trusts = append(v.trusts, t)
		v.byIssuer[tc.Issuer] = append(v.byIssuer[tc.Issuer], t)
	}
	return v, nil
}

// Len returns the number of trust entries.
func (v *Verifier) Len() int { return len(v.trusts) }

// globRegexp compiles a subject glob: '*' matches any run of characters.
func globRegexp(glob string) *regexp.Regexp {
	parts := strings.Split(glob, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`\A` + strings.Join(parts, `.*`) + `\z`)
}

// Verify checks raw, a compact JWS JWT (RFC 7519), and returns the
// workload of the first trust entry (in configuration order) that accepts
// it: the signature by a key of the issuer's key set under an allowed
// algorithm, iss, one aud equal to the entry's audience, exp (required),
// nbf and iat with [Leeway], the entry's max_token_age, its subject glob,
// its claims and its user claim. A refused JWT is an [*Error]. A JWT may be
// presented again within its lifetime (it is a bearer token):
// [tokenbroker.Workload.TokenID] lets the audit trail tell.
func (v *Verifier) Verify(ctx context.Context, raw string) (*tokenbroker.Workload, error) {
	if len(raw) > MaxJWTBytes || strings.Count(raw, ".") != 2 {
		return nil, refuse(ReasonMalformed, "the token is not a signed JWT")
	}
	tok, err := jwt.ParseSigned(raw, Algorithms)
	if err != nil {
		if alg := headerAlg(raw); alg != "" && !slices.Contains(Algorithms, jose.SignatureAlgorithm(alg)) {
			return nil, refuse(ReasonAlgorithm, "the JWT's algorithm %q is not accepted", tokenbroker.Truncate(alg, 20))
		}
		return nil, refuse(ReasonMalformed, "the token is not a signed JWT")
	}
	if len(tok.Headers) != 1 {
		return nil, refuse(ReasonMalformed, "the JWT must have exactly one signature")
	}
	hdr := tok.Headers[0]
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, refuse(ReasonMalformed, "the JWT's claims are not a JSON object")
	}
	issuer := tokenbroker.Truncate(unverified.Issuer, 200)
	trusts := v.byIssuer[unverified.Issuer]
	if len(trusts) == 0 {
		e := refuse(ReasonUntrustedIssuer, "no trust entry accepts JWTs of this issuer")
		e.Issuer = issuer
		return nil, e
	}
	fail := func(e *Error) (*tokenbroker.Workload, error) {
		e.Issuer = issuer
		return nil, e
	}

	// The signature, with the keys of the issuer's key set (entries of
	// one issuer share one; Config.Validate sees to it). A key that
	// declares an alg must be used with it.
	keys, err := trusts[0].keys.keys(ctx, hdr.KeyID)
	if err != nil {
		return fail(refuse(ReasonKeysUnavailable, "%v", err))
	}
	var std jwt.Claims
	var all map[string]any
	verified := false
	for i := range keys {
		k := &keys[i]
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if err := tok.Claims(k, &std, &all); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		if len(keys) == 0 {
			return fail(refuse(ReasonSignature, "the issuer has no key with the JWT's key id"))
		}
		return fail(refuse(ReasonSignature, "the JWT's signature does not verify"))
	}

	// Validity (RFC 7519 §4.1.4, §4.1.5, §4.1.6).
	now := v.now()
	if std.Expiry == nil {
		return fail(refuse(ReasonExpired, "the JWT has no exp claim"))
	}
	exp := std.Expiry.Time()
	if now.After(exp.Add(Leeway)) {
		return fail(refuse(ReasonExpired, "the JWT has expired"))
	}
	if std.NotBefore != nil && now.Add(Leeway).Before(std.NotBefore.Time()) {
		return fail(refuse(ReasonNotYetValid, "the JWT is not valid yet (nbf)"))
	}
	if std.IssuedAt != nil && now.Add(Leeway).Before(std.IssuedAt.Time()) {
		return fail(refuse(ReasonNotYetValid, "the JWT was issued in the future (iat)"))
	}

	audOK := false
	var lastErr *Error
	for _, t := range trusts {
		if !std.Audience.Contains(t.Audience) {
			continue
		}
		audOK = true
		if e := t.checkAge(&std, now); e != nil {
			lastErr = e
			continue
		}
		if t.subject != nil && !t.subject.MatchString(std.Subject) {
			lastErr = refuse(ReasonNoMatch, "no trust entry of this issuer accepts the JWT's subject and claims")
			continue
		}
		if !claimsMatch(t.Claims, all) {
			lastErr = refuse(ReasonNoMatch, "no trust entry of this issuer accepts the JWT's subject and claims")
			continue
		}
		users := t.Users
		if t.UserClaim != "" {
			u, ok := all[t.UserClaim].(string)
			if !ok || tokenbroker.ValidateUserID(u) != nil {
				lastErr = refuse(ReasonUser, "the JWT's %s claim is missing or not a valid user id", t.UserClaim)
				continue
			}
			users = []string{u}
		}
		w := &tokenbroker.Workload{
			TrustID:   t.ID,
			Issuer:    std.Issuer,
			Subject:   std.Subject,
			Scopes:    append([]string(nil), t.scopes()...),
			Users:     append([]string(nil), users...),
			Providers: append([]string(nil), t.Providers...),
			TokenID:   tokenID(std.ID, raw),
			Expiry:    exp,
		}
		return w, nil
	}
	if !audOK {
		return fail(refuse(ReasonAudience, "no trust entry of this issuer accepts the JWT's audience"))
	}
	return fail(lastErr)
}

// checkAge applies the entry's max_token_age.
func (t *trust) checkAge(c *jwt.Claims, now time.Time) *Error {
	limit := t.maxTokenAge()
	var issued time.Time
	switch {
	case c.IssuedAt != nil:
		issued = c.IssuedAt.Time()
	case c.NotBefore != nil:
		issued = c.NotBefore.Time()
	default:
		// No issue time: bound what is left of its life instead.
		if c.Expiry.Time().Sub(now) > limit {
			return refuse(ReasonTooOld, "the JWT has no iat and is valid for longer than %s", limit)
		}
		return nil
	}
	if now.Sub(issued) > limit+Leeway {
		return refuse(ReasonTooOld, "the JWT was issued more than %s ago", limit)
	}
	return nil
}

// claimsMatch reports whether every wanted claim has exactly its value.
func claimsMatch(want map[string]string, got map[string]any) bool {
	for name, value := range want {
		var s string
		switch v := got[name].(type) {
		case string:
			s = v
		case bool:
			s = strconv.FormatBool(v)
		case float64:
			s = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			return false
		}
		if s != value {
			return false
		}
	}
	return true
}

// fingerprint is the first 16 hex digits of SHA-256 of the JWT: it tells
// two presentations of one JWT apart from others without being usable.
func fingerprint(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:8])
}

// tokenID is "jti:<jti>" when the JWT has one, else "sha256:<fingerprint>".
func tokenID(jti, raw string) string {
	if jti != "" {
		return "jti:" + tokenbroker.Truncate(jti, 64)
	}
	return "sha256:" + fingerprint(raw)
}

// headerAlg returns the alg of a compact JWS's header, or "".
func headerAlg(raw string) string {
	seg, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return ""
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &h) != nil {
		return ""
	}
	return h.Alg
}

// Probe checks trust entry id's keys the way `tokenbroker providers check
// --online` reports them: for an OpenID Connect issuer it fetches the
// discovery document and the key set now (ignoring the cache and its
// refetch bound); for a jwks_file it counts the keys read at start. It
// returns where the keys come from and how many usable keys there are.
func (v *Verifier) Probe(ctx context.Context, id string) (source string, keys int, err error) {
	for _, t := range v.trusts {
		if t.ID != id {
			continue
		}
		switch ks := t.keys.(type) {
		case staticKeys:
			return "file " + t.JWKSFile, len(ks), nil
		case *remoteKeys:
			u, err := discoverJWKS(ctx, ks.client, ks.issuer)
			if err != nil {
				return "", 0, err
			}
			keys, err := fetchJWKS(ctx, ks.client, u)
			if err != nil {
				return u, 0, err
			}
			if len(keys) == 0 {
				return u, 0, errors.New("jwks: no usable public signing key")
			}
			return u, len(keys), nil
		}
	}
	return "", 0, fmt.Errorf("no trust entry %q", id)
}
