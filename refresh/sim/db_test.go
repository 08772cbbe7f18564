package sim_test

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/refresh/sim"
	"github.com/tokenbroker/tokenbroker/store/storetest"
)

// conformanceStore serves the protocol part of the store conformance
// suite from a simulated database on the wall clock: the simulation's
// statements must be the stores' (store/sqlite, store/postgres). The
// methods the suite does not use are left to the nil embedded Store.
type conformanceStore struct {
	tokenbroker.Store
	mu sync.Mutex
	db *sim.DB
}

func (s *conformanceStore) now() time.Time { return time.Now().UTC() }

func (s *conformanceStore) Now(context.Context) (time.Time, error) {
	return s.now().Truncate(time.Millisecond), nil
}

func (s *conformanceStore) GetLink(_ context.Context, user, provider string) (*tokenbroker.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.GetLink(user, provider)
}

func (s *conformanceStore) ListLinks(_ context.Context, user string) ([]*tokenbroker.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.ListLinks(user), nil
}

func (s *conformanceStore) PutLink(_ context.Context, l *tokenbroker.Link, rec tokenbroker.Record) (*tokenbroker.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.PutLink(s.now(), l, rec)
}

func (s *conformanceStore) AcquireLease(_ context.Context, r tokenbroker.LeaseRequest) (*tokenbroker.LeaseGrant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.AcquireLease(s.now(), r)
}

func (s *conformanceStore) RenewLease(_ context.Context, lease tokenbroker.Lease, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.RenewLease(s.now(), lease, ttl)
}

func (s *conformanceStore) ReleaseLease(_ context.Context, lease tokenbroker.Lease, r tokenbroker.Release, rec tokenbroker.Record) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.ReleaseLease(s.now(), lease, r, rec)
}

func (s *conformanceStore) CommitRefresh(_ context.Context, lease tokenbroker.Lease, l *tokenbroker.Link, rec tokenbroker.Record) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.CommitRefresh(s.now(), lease, l, rec)
}

func (s *conformanceStore) MarkReauthRequired(_ context.Context, lease tokenbroker.Lease, r tokenbroker.Reauth, rec tokenbroker.Record) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.MarkReauthRequired(s.now(), lease, r, rec)
}

func (s *conformanceStore) ListLinksExpiringBefore(_ context.Context, t time.Time, after tokenbroker.ExpiryCursor, limit int) ([]*tokenbroker.Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*tokenbroker.Link
	for _, l := range s.db.Links() {
		if (l.State == tokenbroker.LinkActive || l.State == tokenbroker.LinkDegraded) && !l.Token.Expiry.IsZero() && l.Token.Expiry.Before(t) &&
			(after.Expiry.IsZero() || l.Token.Expiry.After(after.Expiry) || l.Token.Expiry.Equal(after.Expiry) && l.ID > after.ID) {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Token.Expiry.Equal(out[j].Token.Expiry) {
			return out[i].Token.Expiry.Before(out[j].Token.Expiry)
		}
		return out[i].ID < out[j].ID
	})
	return out[:min(limit, len(out))], nil
}

func (s *conformanceStore) GetProviderHealth(_ context.Context, id string) (*tokenbroker.ProviderHealth, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.GetProviderHealth(s.now(), id), nil
}

func (s *conformanceStore) ListProviderHealth(context.Context) ([]*tokenbroker.ProviderHealth, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.ListProviderHealth(s.now()), nil
}

func (s *conformanceStore) RecordProviderFailure(_ context.Context, id string, f tokenbroker.ProviderFailure) (*tokenbroker.ProviderHealth, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.RecordProviderFailure(s.now(), id, f)
}

func (s *conformanceStore) RecordProviderSuccess(_ context.Context, id string, rec tokenbroker.Record) (*tokenbroker.ProviderHealth, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.RecordProviderSuccess(s.now(), id, rec)
}

func (s *conformanceStore) AcquireProviderProbe(_ context.Context, id, owner string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.AcquireProviderProbe(s.now(), id, owner, ttl), nil
}

func (s *conformanceStore) ListAudit(_ context.Context, f tokenbroker.AuditFilter) ([]tokenbroker.AuditEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []tokenbroker.AuditEvent
	for _, e := range slices.Backward(s.db.Audit()) {
		if f.Action == "" || e.Action == f.Action {
			out = append(out, e)
		}
	}
	return out, nil
}

// TestDBConformance runs the store conformance suite's protocol part
// against the simulated database: its statements are the real stores'.
func TestDBConformance(t *testing.T) {
	storetest.RunProtocolConformance(t, func(t *testing.T) tokenbroker.Store {
		return &conformanceStore{db: sim.NewDB()}
	})
}
