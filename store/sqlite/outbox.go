package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"slices"
	"time"

	tokenbroker "github.com/tokenbroker/tokenbroker"
)

// execer is what insertEvents needs: a *sql.Tx, *sql.DB or *sql.Conn.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
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
		_, err := q.ExecContext(ctx, `INSERT INTO webhook_outbox (event_id, type, event_time, user_id, provider_id,
				reason, detail, next_attempt_at, created_at)
			VALUES (?, ?, COALESCE(?, `+nowMS+`), ?, ?, ?, ?, `+nowMS+`, `+nowMS+`)`,
			e.ID, string(e.Type), toMS(e.Time), e.UserID, e.ProviderID,
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
	return s.write(ctx, "webhook events", func(tx *sql.Tx) error { return insertEvents(ctx, tx, evs) })
}

const deliveryColumns = `id, event_id, type, event_time, user_id, provider_id, reason, detail,
	endpoint, status, attempts, next_attempt_at, lease_owner, lease_until,
	last_status, last_error, created_at, dead_at`

func scanDelivery(r rowScanner) (*tokenbroker.Delivery, error) {
	var (
		d                                      tokenbroker.Delivery
		typ, status                            string
		eventTime, next, leaseUntil, cre, dead sql.NullInt64
		leaseOwner                             sql.NullString
	)
	err := r.Scan(&d.ID, &d.Event.ID, &typ, &eventTime, &d.Event.UserID, &d.Event.ProviderID,
		&d.Event.Reason, &d.Event.Detail, &d.Endpoint, &status, &d.Attempts, &next,
		&leaseOwner, &leaseUntil, &d.LastStatus, &d.LastError, &cre, &dead)
	if err != nil {
		return nil, err
	}
	d.Event.Type = tokenbroker.EventType(typ)
	d.Event.Time = fromMS(eventTime)
	d.Status = tokenbroker.DeliveryStatus(status)
	d.NextAttemptAt = fromMS(next)
	d.LeaseOwner = leaseOwner.String
	d.LeaseUntil = fromMS(leaseUntil)
	d.CreatedAt = fromMS(cre)
	d.DeadAt = fromMS(dead)
	return &d, nil
}

func scanDeliveries(rows *sql.Rows, err error) ([]*tokenbroker.Delivery, error) {
	return collect(rows, err, "webhook deliveries", scanDelivery)
}

// ClaimDeliveries implements [tokenbroker.OutboxStore]: one UPDATE judged
// on the database clock. SQLite runs one write statement at a time, so
// concurrent claimers (of this process or another on the same file) never
// get the same row.
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, ttl time.Duration, limit int) ([]*tokenbroker.Delivery, error) {
	if owner == "" {
		return nil, tokenbroker.Errorf(tokenbroker.EINVALID, "lease owner must not be empty")
	}
	if limit <= 0 {
		return nil, nil
	}
	out, err := scanDeliveries(s.wdb.QueryContext(ctx, `
		UPDATE webhook_outbox SET lease_owner = ?, lease_until = `+nowMS+` + ?, attempts = attempts + 1
		WHERE id IN (
			SELECT id FROM webhook_outbox
			WHERE status = 'pending' AND next_attempt_at <= `+nowMS+`
			  AND (lease_until IS NULL OR lease_until < `+nowMS+`)
			ORDER BY next_attempt_at, id
			LIMIT ?)
		RETURNING `+deliveryColumns, owner, ttl.Milliseconds(), limit))
	if err != nil {
		return nil, err
	}
	// RETURNING keeps no order: oldest due first.
	slices.SortFunc(out, func(a, b *tokenbroker.Delivery) int {
		if c := a.NextAttemptAt.Compare(b.NextAttemptAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// fence is the WHERE clause of a holder's write: its owner and attempt.
const fence = `id = ? AND lease_owner = ? AND attempts = ? AND status = 'pending'`

// RouteDelivery implements [tokenbroker.OutboxStore].
func (s *Store) RouteDelivery(ctx context.Context, d *tokenbroker.Delivery, endpoints []string) ([]*tokenbroker.Delivery, error) {
	var out []*tokenbroker.Delivery
	err := s.write(ctx, "webhook delivery", func(tx *sql.Tx) error {
		n, err := rowsAffected(tx.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE `+fence+` AND endpoint = ''`,
			d.ID, d.LeaseOwner, d.Attempts))
		if err != nil || n == 0 {
			return err // n == 0: the lease was lost, nothing to route
		}
		for _, ep := range endpoints {
			nd, err := scanDelivery(tx.QueryRowContext(ctx, `
				INSERT INTO webhook_outbox (event_id, type, event_time, user_id, provider_id, reason, detail,
					endpoint, next_attempt_at, created_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, `+nowMS+`, ?)
				RETURNING `+deliveryColumns,
				d.Event.ID, string(d.Event.Type), toMS(d.Event.Time), d.Event.UserID, d.Event.ProviderID,
				d.Event.Reason, d.Event.Detail, ep, toMS(d.CreatedAt)))
			if err != nil {
				return err
			}
			out = append(out, nd)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CompleteDelivery implements [tokenbroker.OutboxStore].
func (s *Store) CompleteDelivery(ctx context.Context, d *tokenbroker.Delivery) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE `+fence, d.ID, d.LeaseOwner, d.Attempts)
	return affected(res, err, "webhook delivery")
}

// RetryDelivery implements [tokenbroker.OutboxStore].
func (s *Store) RetryDelivery(ctx context.Context, d *tokenbroker.Delivery, delay time.Duration, status int, lastErr string) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE webhook_outbox SET lease_owner = NULL, lease_until = NULL,
			next_attempt_at = `+nowMS+` + ?, last_status = ?, last_error = ?
		WHERE `+fence, delay.Milliseconds(), status, tokenbroker.Truncate(lastErr, 500), d.ID, d.LeaseOwner, d.Attempts)
	return affected(res, err, "webhook delivery")
}

// KillDelivery implements [tokenbroker.OutboxStore].
func (s *Store) KillDelivery(ctx context.Context, d *tokenbroker.Delivery, status int, lastErr string) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE webhook_outbox SET status = 'dead', dead_at = `+nowMS+`, lease_owner = NULL, lease_until = NULL,
			last_status = ?, last_error = ?
		WHERE `+fence, status, tokenbroker.Truncate(lastErr, 500), d.ID, d.LeaseOwner, d.Attempts)
	return affected(res, err, "webhook delivery")
}

// RetryDeadLetter implements [tokenbroker.OutboxStore].
func (s *Store) RetryDeadLetter(ctx context.Context, id int64) (*tokenbroker.Delivery, error) {
	d, err := scanDelivery(s.wdb.QueryRowContext(ctx, `
		UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_attempt_at = `+nowMS+`,
			created_at = `+nowMS+`, dead_at = NULL
		WHERE id = ? AND status = 'dead'
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
	return scanDeliveries(s.rdb.QueryContext(ctx, `
		SELECT `+deliveryColumns+` FROM webhook_outbox
		WHERE status = 'dead' AND id < ? AND (? = '' OR endpoint = ?)
		ORDER BY id DESC LIMIT ?`, before, f.Endpoint, f.Endpoint, tokenbroker.PageLimit(f.Limit)))
}

// OutboxStats implements [tokenbroker.OutboxStore].
func (s *Store) OutboxStats(ctx context.Context) (tokenbroker.OutboxStats, error) {
	var st tokenbroker.OutboxStats
	var oldest sql.NullInt64
	err := s.rdb.QueryRowContext(ctx, `
		SELECT (SELECT count(*) FROM webhook_outbox WHERE status = 'pending'),
		       (SELECT count(*) FROM webhook_outbox WHERE status = 'dead'),
		       (SELECT min(created_at) FROM webhook_outbox WHERE status = 'pending')`).Scan(&st.Pending, &st.Dead, &oldest)
	st.OldestPending = fromMS(oldest)
	return st, translate(err, "webhook outbox")
}
