package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker/internal/configfile"
)

// keySet gives the public keys that may have signed a JWT.
type keySet interface {
	// keys returns the keys whose key id is kid (every key when kid is
	// ""). An empty result with a nil error means no such key, even after
	// whatever refresh the set's policy allowed. An error means the set
	// could not be had at all ([ReasonKeysUnavailable]).
	keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

// staticKeys is a key set read once from a jwks_file.
type staticKeys []jose.JSONWebKey

func (s staticKeys) keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	return matchKID(s, kid), nil
}

// loadJWKSFile reads a JSON Web Key Set file.
func loadJWKSFile(path string) (staticKeys, error) {
	b, err := configfile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, err)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no usable public signing key", path)
	}
	return keys, nil
}

// parseJWKS parses a JSON Web Key Set (RFC 7517 §5), keeping the public
// halves of the asymmetric signing keys go-jose understands and skipping
// the rest, as §5 asks of keys an implementation does not understand.
// Symmetric keys are never kept: a JWT's signature is only ever checked
// with a public key.
func parseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, errors.New("not a JSON Web Key Set")
	}
	var out []jose.JSONWebKey
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(r, &k); err != nil {
			continue // an unsupported kty or curve
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			k = k.Public() // a file may hold key pairs; only the public half is kept
		}
		switch k.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		if !k.Valid() {
			continue
		}
		out = append(out, k)
	}
	return out, nil
}

// matchKID returns the keys with key id kid, or all keys for "".
func matchKID(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

// Key set refresh policy defaults; see [Options].
const (
	DefaultKeyRefresh    = 15 * time.Minute
	DefaultMinKeyRefetch = 30 * time.Second
	maxKeyStaleness      = 24 * time.Hour
	fetchTimeout         = 10 * time.Second
	maxJWKSBytes         = 1 << 20
)

// remoteKeys is the key set of an OpenID Connect issuer: the jwks_uri of
// its discovery document (found with go-oidc, which checks that the
// document names the same issuer), fetched when first needed and cached.
//
// It is refetched (a) when older than refresh, so keys the issuer removed
// stop being trusted, and (b) when a JWT names a key id it does not hold,
// so a rotation is followed at once; but never more often than once per
// minRefetch, so callers presenting made-up key ids cannot make this
// server hammer the issuer. (go-oidc's own RemoteKeySet refetches on every
// unknown key id and never drops a removed key; hence this type.) A
// failed refresh keeps the keys it had, up to a day old.
//
// Its lock guards only the cached keys and timestamps; a fetch runs
// outside it, one at a time (singleflight), on a context of its own so a
// caller giving up does not abort a fetch others wait for. None of
// docs/design.md's refresh invariants is involved.
type remoteKeys struct {
	issuer     string
	client     *http.Client
	now        func() time.Time
	log        *slog.Logger
	refresh    time.Duration
	minRefetch time.Duration

	group singleflight.Group

	mu          sync.Mutex
	jwksURL     string
	cached      []jose.JSONWebKey
	fetchedAt   time.Time // last successful fetch; zero: none yet
	attemptedAt time.Time // last fetch attempt
}

func (r *remoteKeys) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	now := r.now()
	found := matchKID(r.cached, kid)
	fetchedAt := r.fetchedAt
	stale := fetchedAt.IsZero() || now.Sub(fetchedAt) >= r.refresh
	mayFetch := r.attemptedAt.IsZero() || now.Sub(r.attemptedAt) >= r.minRefetch
	if (stale || len(found) == 0) && mayFetch {
		r.attemptedAt = now
	} else {
		mayFetch = false
	}
	r.mu.Unlock()

	if mayFetch {
		_, err, _ := r.group.Do("", func() (any, error) {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
			defer cancel()
			return nil, r.fetch(fctx)
		})
		if err != nil {
			r.log.LogAttrs(ctx, slog.LevelWarn, "workload identity: cannot fetch the issuer's keys",
				slog.String("issuer", r.issuer), slog.String("err", err.Error()))
		}
		r.mu.Lock()
		found = matchKID(r.cached, kid)
		fetchedAt = r.fetchedAt
		r.mu.Unlock()
	}
	if fetchedAt.IsZero() || r.now().Sub(fetchedAt) > maxKeyStaleness {
		return nil, errors.New("the issuer's keys cannot be fetched")
	}
	return found, nil
}

// fetch discovers the jwks_uri (once) and reads the key set.
func (r *remoteKeys) fetch(ctx context.Context) error {
	r.mu.Lock()
	jwksURL := r.jwksURL
	r.mu.Unlock()
	if jwksURL == "" {
		u, err := discoverJWKS(ctx, r.client, r.issuer)
		if err != nil {
			return err
		}
		jwksURL = u
		r.mu.Lock()
		r.jwksURL = u
		r.mu.Unlock()
	}
	keys, err := fetchJWKS(ctx, r.client, jwksURL)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cached, r.fetchedAt = keys, r.now()
	r.mu.Unlock()
	return nil
}

// discoverJWKS reads the issuer's discovery document (OpenID Connect
// Discovery 1.0 §4) with go-oidc and returns its jwks_uri.
func discoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.JWKSURI == "" {
		return "", errors.New("discovery: the document has no jwks_uri")
	}
	if msg := checkIssuerURL(doc.JWKSURI); msg != "" {
		return "", fmt.Errorf("discovery: jwks_uri %s: %s", redact(doc.JWKSURI), msg)
	}
	return doc.JWKSURI, nil
}

// fetchJWKS GETs a key set.
func fetchJWKS(ctx context.Context, client *http.Client, jwksURL string) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: %s answered HTTP %d", redact(jwksURL), resp.StatusCode)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("jwks: %s: %v", redact(jwksURL), err)
	}
	return keys, nil
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
