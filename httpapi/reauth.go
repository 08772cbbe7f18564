package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// reauthSessions remembers, per caller, user and provider, the connect
// session last handed out with a reauth_required answer, so that a caller
// asking again (a platform retrying in a loop) gets the same connect URL
// instead of a new session row each time. The store keeps only hashes of
// session ids, so the ids live here, in memory: each replica keeps its own
// (at most one open session per caller, user and provider per replica).
type reauthSessions struct {
	mu sync.Mutex
	m  map[reauthKey]*tokenbroker.ConnectSession
}

type reauthKey struct{ createdBy, userID, providerID string }

// maxReauthSessions bounds the memory: past it, expired entries go, and if
// none has expired the map is emptied (a forgotten session only costs a
// new row).
const maxReauthSessions = 10000

// minReuseLeft is how long a remembered session must still be valid to be
// handed out again: the user needs time to open it and sign in.
const minReuseLeft = 5 * time.Minute

// reauthSession returns an open, unused connect session for the caller,
// user and provider: the remembered one while it is valid for at least
// minReuseLeft and no browser has opened it, else a new one.
func (s *Server) reauthSession(ctx context.Context, k *caller, userID, providerID string) (*tokenbroker.ConnectSession, error) {
	key := reauthKey{k.createdBy(), userID, providerID}
	s.reauth.mu.Lock()
	prev := s.reauth.m[key]
	s.reauth.mu.Unlock()
	if prev != nil {
		cur, err := s.store.GetConnectSession(ctx, prev.ID)
		now, nerr := s.store.Now(ctx)
		if err == nil && nerr == nil && cur.ClaimedAt.IsZero() && cur.ExpiresAt.Sub(now) >= minReuseLeft {
			return prev, nil
		}
		if err != nil && !tokenbroker.IsNotFound(err) {
			return nil, err
		}
	}
	sess, err := s.newConnectSession(ctx, k, userID, []string{providerID}, "")
	if err != nil {
		return nil, err
	}
	s.reauth.mu.Lock()
	defer s.reauth.mu.Unlock()
	if s.reauth.m == nil {
		s.reauth.m = map[reauthKey]*tokenbroker.ConnectSession{}
	}
	if len(s.reauth.m) >= maxReauthSessions {
		now := s.now()
		for k, v := range s.reauth.m {
			if !v.ExpiresAt.After(now) {
				delete(s.reauth.m, k)
			}
		}
		if len(s.reauth.m) >= maxReauthSessions {
			clear(s.reauth.m)
		}
	}
	s.reauth.m[key] = sess
	return sess, nil
}
