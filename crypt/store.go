package crypt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// Table and column names bound into the associated data of sealed values.
// They name the place of a value, not necessarily the SQL column.
const (
	tableLinks        = "links"
	tableAuthRequests = "auth_requests"

	colAccessToken  = "access_token"
	colRefreshToken = "refresh_token"
	colIDToken      = "id_token"
	colExtraPrefix  = "extra/" // + the member's name
	colSecret       = "secret"
)

// Store decorates a [tokenbroker.Store] so that the secret fields are
// sealed before they reach it and opened when they come back: a link's
// Token.AccessToken, RefreshToken, IDToken and every value of Token.Extra,
// and an auth request's Secret (the PKCE verifier or device code). Every
// other method passes through to the embedded store unchanged.
//
// Writes seal with the ring's primary key and set Link.KeyID and
// AuthRequest.KeyID to its id, the index a rekey and `keys status` use.
// Reads open each value with the key it names. An empty string is stored
// empty: "no token" is not a secret, and a value emptied by someone with
// write access to the database opens as no token, never as another token.
//
// The associated data binds each value to its row and column (see [AD]):
// a link's values to (user id, provider id), because the link's numeric id
// is not known before its first insert; an auth request's secret to the
// hex SHA-256 of its id, which is the key the stores keep.
//
// Store never modifies the values it is given. It is safe for concurrent
// use if the inner store is.
type Store struct {
	tokenbroker.Store
	ring *Ring
}

var (
	_ tokenbroker.Store    = (*Store)(nil)
	_ tokenbroker.Signaler = (*Store)(nil)
)

// NewStore returns inner decorated with sealing by ring.
func NewStore(inner tokenbroker.Store, ring *Ring) *Store {
	return &Store{Store: inner, ring: ring}
}

// Unwrap returns the inner store, which sees sealed values.
func (s *Store) Unwrap() tokenbroker.Store { return s.Store }

// Ring returns the store's key ring.
func (s *Store) Ring() *Ring { return s.ring }

// Subscribe implements [tokenbroker.Signaler] by delegating to the inner
// store. If the inner store is not a Signaler, the channel never receives
// and waiters rely on their poll fallback.
func (s *Store) Subscribe(linkID int64) (<-chan struct{}, func()) {
	if sig, ok := s.Store.(tokenbroker.Signaler); ok {
		return sig.Subscribe(linkID)
	}
	return make(chan struct{}), func() {}
}

// linkAD returns the associated data of a link's column.
func linkAD(userID, providerID, column string) []byte {
	return AD(tableLinks, column, userID, providerID)
}

// authRequestRowID is the row identity of an auth request: the hex SHA-256
// of its id, under which the stores keep it.
func authRequestRowID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// sealField seals v for its place; "" stays "".
func (r *Ring) sealField(v string, ad []byte) (string, error) {
	if v == "" {
		return "", nil
	}
	return r.Seal(v, ad)
}

// openField opens v from its place; "" stays "".
func (r *Ring) openField(v string, ad []byte) (string, error) {
	if v == "" {
		return "", nil
	}
	return r.Open(v, ad)
}

// sealLink returns a copy of l with the token's secrets sealed by the
// primary key and KeyID set to it.
func (r *Ring) sealLink(l *tokenbroker.Link) (*tokenbroker.Link, error) {
	return r.transformLink(l, r.sealField, "seal")
}

// openLink opens the token's secrets of l in place.
func (r *Ring) openLink(l *tokenbroker.Link) error {
	o, err := r.transformLink(l, r.openField, "open")
	if err != nil {
		return err
	}
	*l = *o
	return nil
}

// transformLink returns a copy of l whose secret fields went through f.
// On seal it sets KeyID to the primary's id.
func (r *Ring) transformLink(l *tokenbroker.Link, f func(string, []byte) (string, error), verb string) (*tokenbroker.Link, error) {
	c := *l
	var err error
	field := func(dst *string, col string) {
		if err != nil {
			return
		}
		var v string
		v, err = f(*dst, linkAD(l.UserID, l.ProviderID, col))
		if err != nil {
			err = fmt.Errorf("crypt: %s %s of link %s/%s: %w", verb, col, l.UserID, l.ProviderID, err)
			return
		}
		*dst = v
	}
	field(&c.Token.AccessToken, colAccessToken)
	field(&c.Token.RefreshToken, colRefreshToken)
	field(&c.Token.IDToken, colIDToken)
	if l.Token.Extra != nil {
		c.Token.Extra = make(map[string]string, len(l.Token.Extra))
		for _, name := range sortedKeys(l.Token.Extra) {
			v := l.Token.Extra[name]
			field(&v, colExtraPrefix+name)
			c.Token.Extra[name] = v
		}
	}
	if err != nil {
		return nil, err
	}
	if verb == "seal" {
		c.KeyID = r.PrimaryID()
	}
	return &c, nil
}

func sortedKeys(m map[string]string) []string {
	// Order only makes errors deterministic.
	return slices.Sorted(maps.Keys(m))
}

func (r *Ring) openLinks(links []*tokenbroker.Link) error {
	for _, l := range links {
		if err := r.openLink(l); err != nil {
			return err
		}
	}
	return nil
}

// authRequestAD returns the associated data of an auth request's secret;
// rowID is the hex SHA-256 of its id.
func authRequestAD(rowID string) []byte {
	return AD(tableAuthRequests, colSecret, rowID)
}

// openedLink opens the token of a link the inner store returned with err.
func (s *Store) openedLink(l *tokenbroker.Link, err error) (*tokenbroker.Link, error) {
	if err != nil {
		return nil, err
	}
	if err := s.ring.openLink(l); err != nil {
		return nil, err
	}
	return l, nil
}

// openedLinks opens the tokens of links the inner store returned with err.
func (s *Store) openedLinks(links []*tokenbroker.Link, err error) ([]*tokenbroker.Link, error) {
	if err != nil {
		return nil, err
	}
	if err := s.ring.openLinks(links); err != nil {
		return nil, err
	}
	return links, nil
}

// openedAuthRequest opens the Secret of the auth request id that the inner
// store returned with err.
func (s *Store) openedAuthRequest(r *tokenbroker.AuthRequest, err error, id string) (*tokenbroker.AuthRequest, error) {
	if err != nil {
		return nil, err
	}
	if err := s.ring.openAuthRequest(r, authRequestRowID(id)); err != nil {
		return nil, err
	}
	return r, nil
}

// GetLink implements [tokenbroker.LinkStore], opening the token.
func (s *Store) GetLink(ctx context.Context, userID, providerID string) (*tokenbroker.Link, error) {
	return s.openedLink(s.Store.GetLink(ctx, userID, providerID))
}

// ListLinks implements [tokenbroker.LinkStore], opening the tokens.
func (s *Store) ListLinks(ctx context.Context, userID string) ([]*tokenbroker.Link, error) {
	return s.openedLinks(s.Store.ListLinks(ctx, userID))
}

// PutLink implements [tokenbroker.LinkStore]: it seals l's token with the
// primary key and returns the stored link with its token opened.
func (s *Store) PutLink(ctx context.Context, l *tokenbroker.Link, rec tokenbroker.Record) (*tokenbroker.Link, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	sealed, err := s.ring.sealLink(l)
	if err != nil {
		return nil, err
	}
	return s.openedLink(s.Store.PutLink(ctx, sealed, rec))
}

// CommitRefresh implements [tokenbroker.LinkStore]: it seals l's token
// with the primary key and commits by the inner store's fenced
// compare-and-swap on the generation (docs/design.md step 5, I3), which
// sealing does not affect.
func (s *Store) CommitRefresh(ctx context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	sealed, err := s.ring.sealLink(l)
	if err != nil {
		return false, err
	}
	return s.Store.CommitRefresh(ctx, lease, sealed, rec)
}

// ListLinksExpiringBefore implements [tokenbroker.LinkStore], opening the
// tokens.
func (s *Store) ListLinksExpiringBefore(ctx context.Context, t time.Time, after tokenbroker.ExpiryCursor, limit int) ([]*tokenbroker.Link, error) {
	return s.openedLinks(s.Store.ListLinksExpiringBefore(ctx, t, after, limit))
}

// ListStaleLinks implements [tokenbroker.LinkStore], opening the tokens.
func (s *Store) ListStaleLinks(ctx context.Context, q tokenbroker.StaleLinkQuery) ([]*tokenbroker.Link, error) {
	return s.openedLinks(s.Store.ListStaleLinks(ctx, q))
}

// ListLinksNotSealedBy implements [tokenbroker.LinkStore], opening the
// tokens. [Rekey] works on the inner store instead, so that one row it
// cannot open does not stop a batch.
func (s *Store) ListLinksNotSealedBy(ctx context.Context, keyID string, afterID int64, limit int) ([]*tokenbroker.Link, error) {
	return s.openedLinks(s.Store.ListLinksNotSealedBy(ctx, keyID, afterID, limit))
}

// ResealLink implements [tokenbroker.LinkStore]: l carries opened tokens,
// which are sealed with the primary key and written by the inner store's
// compare-and-swap on l.Generation, without bumping it.
func (s *Store) ResealLink(ctx context.Context, l *tokenbroker.Link) (bool, error) {
	sealed, err := s.ring.sealLink(l)
	if err != nil {
		return false, err
	}
	return s.Store.ResealLink(ctx, sealed)
}

// sealAuthRequest returns a copy of r with Secret sealed by the primary
// key for the row rowID, and KeyID set.
func (r *Ring) sealAuthRequest(ar *tokenbroker.AuthRequest, rowID string) (*tokenbroker.AuthRequest, error) {
	c := *ar
	v, err := r.sealField(ar.Secret, authRequestAD(rowID))
	if err != nil {
		return nil, fmt.Errorf("crypt: seal secret of auth request: %w", err)
	}
	c.Secret, c.KeyID = v, r.PrimaryID()
	return &c, nil
}

// openAuthRequest opens r.Secret in place.
func (r *Ring) openAuthRequest(ar *tokenbroker.AuthRequest, rowID string) error {
	v, err := r.openField(ar.Secret, authRequestAD(rowID))
	if err != nil {
		return fmt.Errorf("crypt: open secret of auth request for %s/%s: %w", ar.UserID, ar.ProviderID, err)
	}
	ar.Secret = v
	return nil
}

// CreateAuthRequest implements [tokenbroker.ConnectStore], sealing
// r.Secret. It sets r.CreatedAt and r.KeyID; r.Secret stays as given.
func (s *Store) CreateAuthRequest(ctx context.Context, r *tokenbroker.AuthRequest) error {
	sealed, err := s.ring.sealAuthRequest(r, authRequestRowID(r.ID))
	if err != nil {
		return err
	}
	if err := s.Store.CreateAuthRequest(ctx, sealed); err != nil {
		return err
	}
	r.CreatedAt, r.KeyID = sealed.CreatedAt, sealed.KeyID
	return nil
}

// GetAuthRequest implements [tokenbroker.ConnectStore], opening Secret.
func (s *Store) GetAuthRequest(ctx context.Context, id string) (*tokenbroker.AuthRequest, error) {
	r, err := s.Store.GetAuthRequest(ctx, id)
	return s.openedAuthRequest(r, err, id)
}

// ConsumeAuthRequest implements [tokenbroker.ConnectStore], opening
// Secret.
func (s *Store) ConsumeAuthRequest(ctx context.Context, id string) (*tokenbroker.AuthRequest, error) {
	r, err := s.Store.ConsumeAuthRequest(ctx, id)
	return s.openedAuthRequest(r, err, id)
}

// ListAuthRequestsNotSealedBy implements [tokenbroker.ConnectStore],
// opening Secret. As the stores document, the returned requests carry the
// hash of their id as ID.
func (s *Store) ListAuthRequestsNotSealedBy(ctx context.Context, keyID string, limit int) ([]*tokenbroker.AuthRequest, error) {
	reqs, err := s.Store.ListAuthRequestsNotSealedBy(ctx, keyID, limit)
	if err != nil {
		return nil, err
	}
	for _, r := range reqs {
		if err := s.ring.openAuthRequest(r, r.ID); err != nil {
			return nil, err
		}
	}
	return reqs, nil
}

// ResealAuthRequest implements [tokenbroker.ConnectStore]: r, as returned
// by [Store.ListAuthRequestsNotSealedBy] (ID is the hash of the id),
// carries an opened Secret, which is sealed with the primary key.
func (s *Store) ResealAuthRequest(ctx context.Context, r *tokenbroker.AuthRequest) error {
	sealed, err := s.ring.sealAuthRequest(r, r.ID)
	if err != nil {
		return err
	}
	return s.Store.ResealAuthRequest(ctx, sealed)
}
