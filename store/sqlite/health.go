package sqlite

import (
	"context"
	"database/sql"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

const healthColumns = `provider_id, failures, opens, open_until, probe_until, misconfigured, misconfigured_since, updated_at`

func scanHealth(r rowScanner) (*tokenbroker.ProviderHealth, error) {
	var (
		h                                    tokenbroker.ProviderHealth
		openUntil, probeUntil, since, upd, n sql.NullInt64
	)
	if err := r.Scan(&h.ProviderID, &h.Failures, &h.Opens, &openUntil, &probeUntil, &h.Misconfigured, &since, &upd, &n); err != nil {
		return nil, err
	}
	h.OpenUntil, h.ProbeUntil = fromMS(openUntil), fromMS(probeUntil)
	h.MisconfiguredSince, h.UpdatedAt, h.Now = fromMS(since), fromMS(upd), fromMS(n)
	return &h, nil
}

// GetProviderHealth implements [tokenbroker.ProviderHealthStore].
func (s *Store) GetProviderHealth(ctx context.Context, providerID string) (*tokenbroker.ProviderHealth, error) {
	// One read whether the provider has a row or not: a provider without
	// one is healthy.
	h, err := scanHealth(s.rdb.QueryRowContext(ctx, `
		SELECT ?, COALESCE(p.failures, 0), COALESCE(p.opens, 0), p.open_until, p.probe_until,
			COALESCE(p.misconfigured, ''), p.misconfigured_since, p.updated_at, n.now
		FROM (SELECT `+nowMS+` AS now) n LEFT JOIN provider_health p ON p.provider_id = ?`, providerID, providerID))
	if err != nil {
		return nil, translate(err, "provider health")
	}
	return h, nil
}

// ListProviderHealth implements [tokenbroker.ProviderHealthStore].
func (s *Store) ListProviderHealth(ctx context.Context) ([]*tokenbroker.ProviderHealth, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+healthColumns+`, `+nowMS+` FROM provider_health ORDER BY provider_id`)
	return collect(rows, err, "provider health", scanHealth)
}

// RecordProviderFailure implements [tokenbroker.ProviderHealthStore] with
// one upsert: the circuit opens when the failures reach the threshold (or
// at once for a misconfiguration) and is not already open, for OpenFor
// doubled per earlier consecutive opening, at least RetryAfter.
func (s *Store) RecordProviderFailure(ctx context.Context, providerID string, f tokenbroker.ProviderFailure) (*tokenbroker.ProviderHealth, bool, error) {
	var after *tokenbroker.ProviderHealth
	opened := false
	err := s.write(ctx, "provider health", func(tx *sql.Tx) error {
		var err error
		after, err = scanHealth(tx.QueryRowContext(ctx, `
			INSERT INTO provider_health (provider_id, failures, opens, open_until, misconfigured, misconfigured_since, updated_at)
			VALUES (?, 1, 0, NULL, '', NULL, `+nowMS+`)
			ON CONFLICT (provider_id) DO UPDATE SET failures = failures + 1, updated_at = excluded.updated_at
			RETURNING `+healthColumns+`, `+nowMS, providerID))
		if err != nil {
			return err
		}
		open := f.Misconfigured != "" || (f.Threshold > 0 && after.Failures >= f.Threshold)
		if !open || after.Open() && (f.Misconfigured == "" || after.Misconfigured != "") {
			return nil // nothing to open, or already open for the same cause
		}
		becomesMisconfigured := f.Misconfigured != "" && after.Misconfigured == ""
		d := min(f.OpenFor<<min(after.Opens, 16), f.MaxOpenFor)
		if d <= 0 {
			d = f.MaxOpenFor
		}
		d = max(d, f.RetryAfter)
		after, err = scanHealth(tx.QueryRowContext(ctx, `
			UPDATE provider_health SET
				opens = opens + 1, open_until = `+nowMS+` + ?, probe_owner = NULL, probe_until = NULL,
				misconfigured = CASE WHEN ? <> '' THEN ? ELSE misconfigured END,
				misconfigured_since = CASE WHEN ? <> '' AND misconfigured_since IS NULL THEN `+nowMS+` ELSE misconfigured_since END
			WHERE provider_id = ?
			RETURNING `+healthColumns+`, `+nowMS,
			d.Milliseconds(), f.Misconfigured, f.Misconfigured, f.Misconfigured, providerID))
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
		return nil, false, err
	}
	return after, opened, nil
}

// RecordProviderSuccess implements [tokenbroker.ProviderHealthStore]: the
// read and the clearing are one immediate transaction, so of racing
// callers one clears (and writes rec for a misconfiguration).
func (s *Store) RecordProviderSuccess(ctx context.Context, providerID string, rec tokenbroker.Record) (*tokenbroker.ProviderHealth, error) {
	var before *tokenbroker.ProviderHealth
	err := s.write(ctx, "provider health", func(tx *sql.Tx) error {
		var err error
		before, err = scanHealth(tx.QueryRowContext(ctx,
			`SELECT `+healthColumns+`, `+nowMS+` FROM provider_health WHERE provider_id = ?`, providerID))
		if err == sql.ErrNoRows {
			before = nil
			return nil
		}
		if err != nil {
			return err
		}
		if !before.Troubled() {
			before = nil
			return nil
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE provider_health SET failures = 0, opens = 0, open_until = NULL, probe_owner = NULL,
				probe_until = NULL, misconfigured = '', misconfigured_since = NULL, updated_at = `+nowMS+`
			WHERE provider_id = ?`, providerID)
		if err != nil || before.Misconfigured == "" {
			return err
		}
		return writeRecord(ctx, tx, rec)
	})
	return before, err
}

// AcquireProviderProbe implements [tokenbroker.ProviderHealthStore]: one
// conditional UPDATE on the database clock.
func (s *Store) AcquireProviderProbe(ctx context.Context, providerID, owner string, ttl time.Duration) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE provider_health SET probe_owner = ?, probe_until = `+nowMS+` + ?
		WHERE provider_id = ? AND open_until IS NOT NULL AND open_until <= `+nowMS+`
		  AND (probe_until IS NULL OR probe_until < `+nowMS+`)`,
		owner, ttl.Milliseconds(), providerID)
	return affected(res, err, "provider probe")
}
