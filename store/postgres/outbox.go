package postgres

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// execer is what insertEvents needs: a pgx.Tx, a *pgxpool.Pool or a
// *pgx.Conn.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertEvents writes events to the outbox through q. A state-changing
// write passes its own transaction, so the events commit (or roll back)
// with the change that caused them. Events without ID get a fresh one,
// without Time the database clock; Detail is cut to 500 bytes.
func insertEvents(ctx context.Context, q execer, events []tokenbroker.Event) error {
	for i := range events {
		e := &events[i]
		if err := e.Validate(); err != nil {
			return err
		}
		if e.ID == "" {
			e.ID = tokenbroker.NewEventID()
		}
		_, err := q.Exec(ctx, `INSERT INTO webhook_outbox (event_id, type, event_time, user_id, provider_id, reason, detail)
			VALUES ($1, $2, COALESCE($3::timestamptz, now()), $4, $5, $6, $7)`,
			e.ID, string(e.Type), nullTime(e.Time), e.UserID, e.ProviderID,
			tokenbroker.Truncate(e.Reason, 100), tokenbroker.Truncate(e.Detail, 500))
		if err != nil {
			return translate(err, "webhook event")
		}
	}
	return nil
}

// EnqueueEvents implements [tokenbroker.OutboxStore].
func (s *Store) EnqueueEvents(ctx context.Context, events []tokenbroker.Event) error {
	if len(events) == 0 {
		return nil
	}
	evs := append([]tokenbroker.Event(nil), events...) // ids are filled in a copy
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return insertEvents(ctx, tx, evs) })
}

const deliveryColumns = `id, event_id, type, event_time, user_id, provider_id, reason, detail,
	endpoint, status, attempts, next_attempt_at, lease_owner, lease_until,
	last_status, last_error, created_at, dead_at`

func scanDelivery(r pgx.Row) (*tokenbroker.Delivery, error) {
	var (
		d                    tokenbroker.Delivery
		typ, status          string
		eventTime, next, cre time.Time
		leaseUntil, deadAt   *time.Time
		leaseOwner           *string
	)
	err := r.Scan(&d.ID, &d.Event.ID, &typ, &eventTime, &d.Event.UserID, &d.Event.ProviderID,
		&d.Event.Reason, &d.Event.Detail, &d.Endpoint, &status, &d.Attempts, &next,
		&leaseOwner, &leaseUntil, &d.LastStatus, &d.LastError, &cre, &deadAt)
	if err != nil {
		return nil, err
	}
	d.Event.Type = tokenbroker.EventType(typ)
	d.Event.Time = eventTime.UTC()
	d.Status = tokenbroker.DeliveryStatus(status)
	d.NextAttemptAt = next.UTC()
	if leaseOwner != nil {
		d.LeaseOwner = *leaseOwner
	}
	d.LeaseUntil = fromNull(leaseUntil)
	d.CreatedAt = cre.UTC()
	d.DeadAt = fromNull(deadAt)
	return &d, nil
}

func scanDeliveries(rows pgx.Rows, err error) ([]*tokenbroker.Delivery, error) {
	return collect(rows, err, "webhook deliveries", scanDelivery)
}

// ClaimDeliveries implements [tokenbroker.OutboxStore]: one UPDATE of the
// rows a FOR UPDATE SKIP LOCKED subquery picks, so concurrent claimers on
// many replicas neither get the same row nor wait for each other. Due
// times and leases are judged on now(), the database clock.
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, ttl time.Duration, limit int) ([]*tokenbroker.Delivery, error) {
	if owner == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "lease owner must not be empty")
	}
	if limit <= 0 {
		return nil, nil
	}
	out, err := scanDeliveries(s.pool.Query(ctx, `
		UPDATE webhook_outbox SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond',
			attempts = attempts + 1
		WHERE id IN (
			SELECT id FROM webhook_outbox
			WHERE status = 'pending' AND next_attempt_at <= now()
			  AND (lease_until IS NULL OR lease_until < now())
			ORDER BY next_attempt_at, id
			LIMIT $3
			FOR UPDATE SKIP LOCKED)
		RETURNING `+deliveryColumns, owner, ttl.Milliseconds(), limit))
	if err != nil {
		return nil, err
	}
	sortDeliveries(out)
	return out, nil
}

// sortDeliveries orders claimed rows oldest due first (RETURNING keeps no
// order).
func sortDeliveries(ds []*tokenbroker.Delivery) {
	slices.SortFunc(ds, func(a, b *tokenbroker.Delivery) int {
		if c := a.NextAttemptAt.Compare(b.NextAttemptAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// fence is the WHERE clause of a holder's write: its owner and attempt.
const fence = `id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'pending'`

// RouteDelivery implements [tokenbroker.OutboxStore].
func (s *Store) RouteDelivery(ctx context.Context, d *tokenbroker.Delivery, endpoints []string) ([]*tokenbroker.Delivery, error) {
	var out []*tokenbroker.Delivery
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM webhook_outbox WHERE `+fence+` AND endpoint = ''`,
			d.ID, d.LeaseOwner, d.Attempts)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		for _, ep := range endpoints {
			nd, err := scanDelivery(tx.QueryRow(ctx, `
				INSERT INTO webhook_outbox (event_id, type, event_time, user_id, provider_id, reason, detail,
					endpoint, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
				RETURNING `+deliveryColumns,
				d.Event.ID, string(d.Event.Type), d.Event.Time, d.Event.UserID, d.Event.ProviderID,
				d.Event.Reason, d.Event.Detail, ep, d.CreatedAt))
			if err != nil {
				return err
			}
			out = append(out, nd)
		}
		return nil
	})
	if err != nil {
		return nil, translate(err, "webhook delivery")
	}
	return out, nil
}

// CompleteDelivery implements [tokenbroker.OutboxStore].
func (s *Store) CompleteDelivery(ctx context.Context, d *tokenbroker.Delivery) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_outbox WHERE `+fence, d.ID, d.LeaseOwner, d.Attempts)
	return tag.RowsAffected() > 0, translate(err, "webhook delivery")
}

// RetryDelivery implements [tokenbroker.OutboxStore].
func (s *Store) RetryDelivery(ctx context.Context, d *tokenbroker.Delivery, delay time.Duration, status int, lastErr string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE webhook_outbox SET lease_owner = NULL, lease_until = NULL,
			next_attempt_at = now() + $4 * interval '1 millisecond', last_status = $5, last_error = $6
		WHERE `+fence, d.ID, d.LeaseOwner, d.Attempts, delay.Milliseconds(), status, tokenbroker.Truncate(lastErr, 500))
	return tag.RowsAffected() > 0, translate(err, "webhook delivery")
}

// KillDelivery implements [tokenbroker.OutboxStore].
func (s *Store) KillDelivery(ctx context.Context, d *tokenbroker.Delivery, status int, lastErr string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE webhook_outbox SET status = 'dead', dead_at = now(), lease_owner = NULL, lease_until = NULL,
			last_status = $4, last_error = $5
		WHERE `+fence, d.ID, d.LeaseOwner, d.Attempts, status, tokenbroker.Truncate(lastErr, 500))
	return tag.RowsAffected() > 0, translate(err, "webhook delivery")
}

// RetryDeadLetter implements [tokenbroker.OutboxStore].
func (s *Store) RetryDeadLetter(ctx context.Context, id int64) (*tokenbroker.Delivery, error) {
	d, err := scanDelivery(s.pool.QueryRow(ctx, `
		UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
			created_at = now(), dead_at = NULL
		WHERE id = $1 AND status = 'dead'
		RETURNING `+deliveryColumns, id))
	if err != nil {
		return nil, translate(err, "dead letter")
	}
	return d, nil
}

// ListDeadLetters implements [tokenbroker.OutboxStore] on the partial
// index webhook_outbox_dead.
func (s *Store) ListDeadLetters(ctx context.Context, f tokenbroker.DeadLetterFilter) ([]*tokenbroker.Delivery, error) {
	before := f.BeforeID
	if before <= 0 {
		before = 1<<63 - 1
	}
	return scanDeliveries(s.pool.Query(ctx, `
		SELECT `+deliveryColumns+` FROM webhook_outbox
		WHERE status = 'dead' AND id < $1 AND ($2::text = '' OR endpoint = $2::text)
		ORDER BY id DESC LIMIT $3`, before, f.Endpoint, tokenbroker.PageLimit(f.Limit)))
}

// OutboxStats implements [tokenbroker.OutboxStore].
func (s *Store) OutboxStats(ctx context.Context) (tokenbroker.OutboxStats, error) {
	var st tokenbroker.OutboxStats
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM webhook_outbox WHERE status = 'pending'),
		       (SELECT count(*) FROM webhook_outbox WHERE status = 'dead'),
		       (SELECT min(created_at) FROM webhook_outbox WHERE status = 'pending')`).Scan(&st.Pending, &st.Dead, &oldest)
	st.OldestPending = fromNull(oldest)
	return st, translate(err, "webhook outbox")
}
