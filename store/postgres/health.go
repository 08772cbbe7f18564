package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const healthColumns = `provider_id, failures, opens, open_until, probe_until, misconfigured, misconfigured_since, updated_at`

func scanHealth(r pgx.Row) (*tokenbroker.ProviderHealth, error) {
	var (
		h                            tokenbroker.ProviderHealth
		openUntil, probeUntil, since *time.Time
		updated, now                 time.Time
	)
	if err := r.Scan(&h.ProviderID, &h.Failures, &h.Opens, &openUntil, &probeUntil, &h.Misconfigured, &since, &updated, &now); err != nil {
		return nil, err
	}
	h.OpenUntil, h.ProbeUntil, h.MisconfiguredSince = fromNull(openUntil), fromNull(probeUntil), fromNull(since)
	h.UpdatedAt, h.Now = updated.UTC(), now.UTC()
	return &h, nil
}

// GetProviderHealth implements [tokenbroker.ProviderHealthStore].
func (s *Store) GetProviderHealth(ctx context.Context, providerID string) (*tokenbroker.ProviderHealth, error) {
	// One round trip whether the provider has a row or not: a provider
	// without one is healthy.
	h, err := scanHealth(s.pool.QueryRow(ctx, `
		SELECT $1::text, COALESCE(p.failures, 0), COALESCE(p.opens, 0), p.open_until, p.probe_until,
			COALESCE(p.misconfigured, ''), p.misconfigured_since, COALESCE(p.updated_at, n.now), n.now
		FROM (SELECT now() AS now) n LEFT JOIN provider_health p ON p.provider_id = $1`, providerID))
	if err != nil {
		return nil, translate(err, "provider health")
	}
	if h.Failures == 0 && h.Opens == 0 && h.OpenUntil.IsZero() && h.Misconfigured == "" {
		h.UpdatedAt = time.Time{}
	}
	return h, nil
}

// ListProviderHealth implements [tokenbroker.ProviderHealthStore].
func (s *Store) ListProviderHealth(ctx context.Context) ([]*tokenbroker.ProviderHealth, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+healthColumns+`, now() FROM provider_health ORDER BY provider_id`)
	return collect(rows, err, "provider health", scanHealth)
}

// RecordProviderFailure implements [tokenbroker.ProviderHealthStore] in one
// short transaction: the failure is counted (the upsert locks the row) and
// the circuit opens when the failures reach the threshold (or at once for a
// misconfiguration) unless it is already open for the same cause, for
// OpenFor doubled per earlier consecutive opening, at least RetryAfter.
func (s *Store) RecordProviderFailure(ctx context.Context, providerID string, f tokenbroker.ProviderFailure) (*tokenbroker.ProviderHealth, bool, error) {
	var (
		after  *tokenbroker.ProviderHealth
		opened bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		after, err = scanHealth(tx.QueryRow(ctx, `
			INSERT INTO provider_health (provider_id, failures, updated_at) VALUES ($1, 1, now())
			ON CONFLICT (provider_id) DO UPDATE SET failures = provider_health.failures + 1, updated_at = now()
			RETURNING `+healthColumns+`, now()`, providerID))
		if err != nil {
			return err
		}
		open := f.Misconfigured != "" || (f.Threshold > 0 && after.Failures >= f.Threshold)
		if !open || after.Open() && (f.Misconfigured == "" || after.Misconfigured != "") {
			return nil // nothing to open, or already open for the same cause
		}
		// The upsert locked the row: this is the state before this call.
		becomesMisconfigured := f.Misconfigured != "" && after.Misconfigured == ""
		d := min(f.OpenFor<<min(after.Opens, 16), f.MaxOpenFor)
		if d <= 0 {
			d = f.MaxOpenFor
		}
		d = max(d, f.RetryAfter)
		after, err = scanHealth(tx.QueryRow(ctx, `
			UPDATE provider_health SET
				opens = opens + 1, open_until = now() + $2 * interval '1 millisecond', probe_owner = NULL, probe_until = NULL,
				misconfigured = CASE WHEN $3 <> '' THEN $3 ELSE misconfigured END,
				misconfigured_since = CASE WHEN $3 <> '' AND misconfigured_since IS NULL THEN now() ELSE misconfigured_since END
			WHERE provider_id = $1
			RETURNING `+healthColumns+`, now()`, providerID, d.Milliseconds(), f.Misconfigured))
		if err != nil {
			return err
		}
		opened = true
		if becomesMisconfigured {
			return writeRecord(ctx, tx, f.Record)
		}
		return nil
	})
	if err != nil {
		return nil, false, translate(err, "provider health")
	}
	return after, opened, nil
}

// RecordProviderSuccess implements [tokenbroker.ProviderHealthStore] in one
// statement that locks the row to report what it cleared and, when it
// cleared a misconfiguration, rec in the same transaction.
func (s *Store) RecordProviderSuccess(ctx context.Context, providerID string, rec tokenbroker.Record) (*tokenbroker.ProviderHealth, error) {
	var before *tokenbroker.ProviderHealth
	clear := func(q querier) error {
		var err error
		before, err = scanHealth(q.QueryRow(ctx, `
			WITH old AS (
				SELECT * FROM provider_health WHERE provider_id = $1
				  AND (failures > 0 OR open_until IS NOT NULL OR misconfigured <> '')
				FOR UPDATE
			), u AS (
				UPDATE provider_health p SET failures = 0, opens = 0, open_until = NULL, probe_owner = NULL,
					probe_until = NULL, misconfigured = '', misconfigured_since = NULL, updated_at = now()
				FROM old WHERE p.provider_id = old.provider_id
				RETURNING p.provider_id
			)
			SELECT `+healthColumns+`, now() FROM old`, providerID))
		if errors.Is(err, pgx.ErrNoRows) {
			before = nil
			return nil
		}
		return err
	}
	var err error
	if rec.Empty() {
		err = clear(s.pool)
	} else {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if err := clear(tx); err != nil || before == nil || before.Misconfigured == "" {
				return err
			}
			return writeRecord(ctx, tx, rec)
		})
	}
	if err != nil {
		return nil, translate(err, "provider health")
	}
	return before, nil
}

// AcquireProviderProbe implements [tokenbroker.ProviderHealthStore]: one
// conditional UPDATE on the database clock.
func (s *Store) AcquireProviderProbe(ctx context.Context, providerID, owner string, ttl time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE provider_health SET probe_owner = $2, probe_until = now() + $3 * interval '1 millisecond'
		WHERE provider_id = $1 AND open_until IS NOT NULL AND open_until <= now()
		  AND (probe_until IS NULL OR probe_until < now())`,
		providerID, owner, ttl.Milliseconds())
	return won(tag, err, "provider probe")
}
