package sqlite

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	tokenbroker "github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/store/internal/prefix"
)

// reasonCodeSQL is [tokenbroker.ReasonCode] in SQL. It must stay identical
// to the expression of the index links_reason_user (migration 00004), or
// the reason filter reads the whole table.
const reasonCodeSQL = `rtrim(CASE WHEN instr(failure_reason, ':') > 0 THEN substr(failure_reason, 1, instr(failure_reason, ':') - 1) ELSE failure_reason END, ' ')`

// summaryColumns are a link's columns without the token values.
const summaryColumns = `id, user_id, provider_id, account_id, account_login, scopes, expiry,
	refresh_token <> '', generation, state, reauth_reason, failure_reason,
	failures, failing_since, last_error, next_attempt_at, lease_owner, lease_until,
	created_at, updated_at, refreshed_at`

func scanSummary(r rowScanner) (*tokenbroker.LinkSummary, error) {
	var (
		l                                          tokenbroker.LinkSummary
		scopes, state, reauth                      string
		leaseOwner                                 sql.NullString
		expiry, leaseUntil, created, updated, refr sql.NullInt64
		failingSince, nextAttempt                  sql.NullInt64
	)
	err := r.Scan(&l.ID, &l.UserID, &l.ProviderID, &l.AccountID, &l.AccountLogin, &scopes, &expiry,
		&l.HasRefreshToken, &l.Generation, &state, &reauth, &l.FailureReason,
		&l.Failures, &failingSince, &l.LastError, &nextAttempt, &leaseOwner, &leaseUntil,
		&created, &updated, &refr)
	if err != nil {
		return nil, err
	}
	if err := unmarshalStrings(scopes, &l.Scopes); err != nil {
		return nil, err
	}
	l.State, l.ReauthReason = tokenbroker.LinkState(state), tokenbroker.ReauthReason(reauth)
	l.FailingSince, l.NextAttemptAt = fromMS(failingSince), fromMS(nextAttempt)
	l.Expiry = fromMS(expiry)
	l.LeaseOwner = leaseOwner.String
	l.LeaseUntil = fromMS(leaseUntil)
	l.CreatedAt, l.UpdatedAt, l.RefreshedAt = fromMS(created), fromMS(updated), fromMS(refr)
	return &l, nil
}

// consoleLimit applies the default and the cap of [tokenbroker.LinkQuery].
func consoleLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 1000:
		return 1000
	}
	return n
}

// conds collects the conditions of a WHERE clause and their arguments.
type conds struct {
	where []string
	args  []any
}

func (c *conds) add(cond string, args ...any) {
	c.where = append(c.where, cond)
	c.args = append(c.args, args...)
}

// in adds "col IN (...)" for a non-empty list.
func (c *conds) in(col string, values []string) {
	if len(values) == 0 {
		return
	}
	marks := strings.Repeat("?, ", len(values))
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	c.add(col+" IN ("+marks[:len(marks)-2]+")", args...)
}

// prefix adds "col starts with p" as a range on col.
func (c *conds) prefix(col, p string) error {
	if p == "" {
		return nil
	}
	if !utf8.ValidString(p) {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "a search prefix must be UTF-8 text")
	}
	if up, ok := prefix.Upper(p); ok {
		c.add(col+" >= ? AND "+col+" < ?", p, up)
	} else {
		c.add(col+" >= ?", p)
	}
	return nil
}

func (c *conds) sql() string {
	if len(c.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.where, " AND ")
}

func (c *conds) scope(sc tokenbroker.LinkScope) {
	c.in("user_id", sc.Users)
	c.in("provider_id", sc.Providers)
}

// linkListSQL is the statement of ListLinkSummaries.
func linkListSQL(q tokenbroker.LinkQuery) (string, []any, error) {
	if q.After != nil && q.Before != nil {
		return "", nil, tokenbroker.Errorf(tokenbroker.EINVALID, "a link query takes After or Before, not both")
	}
	var c conds
	c.scope(q.LinkScope)
	if q.ProviderID != "" {
		c.add("provider_id = ?", q.ProviderID)
	}
	if q.State != "" {
		c.add("state = ?", string(q.State))
	}
	if q.ReauthReason != "" {
		// A typed reason comes only with reauth_required: the state
		// index then serves the filter.
		if q.State == "" {
			c.add("state = ?", string(tokenbroker.LinkReauthRequired))
		}
		c.add("reauth_reason = ?", string(q.ReauthReason))
	}
	if q.ReasonCode != "" {
		c.add("failure_reason <> '' AND "+reasonCodeSQL+" = ?", q.ReasonCode)
	}
	if err := c.prefix("user_id", q.UserPrefix); err != nil {
		return "", nil, err
	}
	if q.AccountLogin != "" {
		c.add("account_login = ?", q.AccountLogin)
	}
	order := " ORDER BY user_id, provider_id"
	switch {
	case q.After != nil:
		c.add("user_id >= ? AND (user_id > ? OR provider_id > ?)", q.After.UserID, q.After.UserID, q.After.ProviderID)
	case q.Before != nil:
		c.add("user_id <= ? AND (user_id < ? OR provider_id < ?)", q.Before.UserID, q.Before.UserID, q.Before.ProviderID)
		order = " ORDER BY user_id DESC, provider_id DESC"
	}
	return `SELECT ` + summaryColumns + ` FROM links` + c.sql() + order + ` LIMIT ?`, append(c.args, consoleLimit(q.Limit)), nil
}

// ListLinkSummaries implements [tokenbroker.ConsoleStore]. A page is one
// range read of an index ordered by (user_id, provider_id) after the
// equality filters; the cursor is "user_id >= ? AND (...)" so that every
// such index can seek to it.
func (s *Store) ListLinkSummaries(ctx context.Context, q tokenbroker.LinkQuery) ([]*tokenbroker.LinkSummary, error) {
	query, args, err := linkListSQL(q)
	if err != nil {
		return nil, err
	}
	rows, err := s.rdb.QueryContext(ctx, query, args...)
	out, err := collect(rows, err, "links", scanSummary)
	if q.Before != nil {
		slices.Reverse(out)
	}
	return out, err
}

// GetLinkSummary implements [tokenbroker.ConsoleStore].
func (s *Store) GetLinkSummary(ctx context.Context, userID, providerID string) (*tokenbroker.LinkSummary, error) {
	l, err := scanSummary(s.rdb.QueryRowContext(ctx,
		`SELECT `+summaryColumns+` FROM links WHERE user_id = ? AND provider_id = ?`, userID, providerID))
	if err != nil {
		return nil, translate(err, "link")
	}
	return l, nil
}

// CountLinks implements [tokenbroker.ConsoleStore] with two grouped reads:
// all links by provider and state (the link_state_counts table when
// the scope names no users, else the covering index
// links_provider_state_user), and the links with a failure reason by typed
// reason and reason code (from the partial index links_reason_user); the
// links without a reason are the difference.
func (s *Store) CountLinks(ctx context.Context, scope tokenbroker.LinkScope) ([]tokenbroker.LinkCount, error) {
	var c conds
	c.scope(scope)
	totalsSQL, totalsArgs := `SELECT provider_id, state, '', '', count(*) FROM links`+c.sql()+
		` GROUP BY provider_id, state`, c.args
	if len(scope.Users) == 0 {
		// Not restricted to users: the per-provider, per-state counts the
		// triggers of link_state_counts keep, one row each whatever the
		// number of links.
		var pc conds
		pc.scope(scope) // providers only: no users here
		pc.add("n > 0")
		totalsSQL, totalsArgs = `SELECT provider_id, state, '', '', n FROM link_state_counts`+pc.sql(), pc.args
	}
	totals, err := s.countLinks(ctx, totalsSQL, totalsArgs)
	if err != nil {
		return nil, err
	}
	c.add("failure_reason <> ''")
	reasons, err := s.countLinks(ctx, `SELECT provider_id, state, reauth_reason, `+reasonCodeSQL+`, count(*) FROM links`+c.sql()+
		` GROUP BY provider_id, state, reauth_reason, `+reasonCodeSQL, c.args)
	if err != nil {
		return nil, err
	}
	return mergeLinkCounts(totals, reasons), nil
}

func (s *Store) countLinks(ctx context.Context, q string, args []any) ([]tokenbroker.LinkCount, error) {
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	return collect(rows, err, "link counts", func(r rowScanner) (tokenbroker.LinkCount, error) {
		var lc tokenbroker.LinkCount
		var state, reauth string
		if err := r.Scan(&lc.ProviderID, &state, &reauth, &lc.ReasonCode, &lc.Count); err != nil {
			return lc, err
		}
		lc.State, lc.Reauth = tokenbroker.LinkState(state), tokenbroker.ReauthReason(reauth)
		return lc, nil
	})
}

// mergeLinkCounts returns the reason counts plus, per provider and state,
// the links without a reason (the total less the reason counts), ordered
// by provider, state and reason code.
func mergeLinkCounts(totals, reasons []tokenbroker.LinkCount) []tokenbroker.LinkCount {
	type ps struct {
		p string
		s tokenbroker.LinkState
	}
	rest := make(map[ps]int64, len(totals))
	for _, t := range totals {
		rest[ps{t.ProviderID, t.State}] += t.Count
	}
	out := make([]tokenbroker.LinkCount, 0, len(totals)+len(reasons))
	for _, r := range reasons {
		rest[ps{r.ProviderID, r.State}] -= r.Count
		out = append(out, r)
	}
	for k, n := range rest {
		if n > 0 {
			out = append(out, tokenbroker.LinkCount{ProviderID: k.p, State: k.s, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b tokenbroker.LinkCount) int {
		return strings.Compare(a.ProviderID+"\x00"+string(a.State)+"\x00"+string(a.Reauth)+"\x00"+a.ReasonCode,
			b.ProviderID+"\x00"+string(b.State)+"\x00"+string(b.Reauth)+"\x00"+b.ReasonCode)
	})
	return out
}

// auditCountMargin is how far before the window's start CountAudit looks
// for the first event id: events are written in batches, so ids follow
// times only roughly.
const auditCountMargin = 5 * time.Minute

// CountAudit implements [tokenbroker.ConsoleStore]: it adds up the rows'
// counts (an aggregated row counts its events). The window is read by
// id, from the first event stamped at or after Since less
// auditCountMargin (found on audit_events_time), through the index
// audit_events_action, so the token.read events that fill the log are
// never visited.
func (s *Store) CountAudit(ctx context.Context, q tokenbroker.AuditCountQuery) ([]tokenbroker.AuditTally, error) {
	if len(q.Actions) == 0 {
		return nil, nil
	}
	var c conds
	c.in("action", q.Actions)
	c.add(`id >= COALESCE(
		(SELECT id FROM audit_events WHERE time >= ? ORDER BY time LIMIT 1),
		(SELECT COALESCE(max(id), 0) + 1 FROM audit_events))`, q.Since.Add(-auditCountMargin).UnixMilli())
	c.add("time >= ?", q.Since.UnixMilli())
	c.scope(q.LinkScope)
	rows, err := s.rdb.QueryContext(ctx, `
		SELECT provider_id, action, COALESCE(sum(CASE WHEN time >= ? THEN count ELSE 0 END), 0), sum(count)
		FROM audit_events`+c.sql()+` GROUP BY provider_id, action ORDER BY provider_id, action`,
		append([]any{q.Recent.UnixMilli()}, c.args...)...)
	return collect(rows, err, "audit counts", func(r rowScanner) (tokenbroker.AuditTally, error) {
		var t tokenbroker.AuditTally
		if err := r.Scan(&t.ProviderID, &t.Action, &t.Recent, &t.Total); err != nil {
			return t, err
		}
		return t, nil
	})
}

// CreateAdminSession implements [tokenbroker.ConsoleStore].
func (s *Store) CreateAdminSession(ctx context.Context, as *tokenbroker.AdminSession) error {
	if as.ID == "" || as.KeyID == 0 || as.ExpiresAt.IsZero() || as.IdleUntil.IsZero() {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "an admin session needs an id, a key and its expiries")
	}
	var created int64
	err := s.wdb.QueryRowContext(ctx, `
		INSERT INTO admin_sessions (id_hash, key_id, created_at, idle_until, expires_at)
		VALUES (?, ?, `+nowMS+`, ?, ?) RETURNING created_at`,
		hashID(as.ID), as.KeyID, as.IdleUntil.UnixMilli(), as.ExpiresAt.UnixMilli()).Scan(&created)
	if err != nil {
		if strings.Contains(err.Error(), "FOREIGN KEY") {
			return tokenbroker.Errorf(tokenbroker.ENOTFOUND, "API key not found")
		}
		return translate(err, "admin session")
	}
	as.CreatedAt = fromMS(sql.NullInt64{Int64: created, Valid: true})
	return nil
}

// prepended scans extra destinations before those its caller passes, so
// scanAPIKey can read a key that follows other columns.
type prepended struct {
	r     rowScanner
	first []any
}

func (p prepended) Scan(dest ...any) error { return p.r.Scan(append(p.first, dest...)...) }

// GetAdminSession implements [tokenbroker.ConsoleStore]: one read of the
// session and its key; both expiries are judged on the database clock.
func (s *Store) GetAdminSession(ctx context.Context, id string) (*tokenbroker.AdminSession, *tokenbroker.APIKey, error) {
	as := &tokenbroker.AdminSession{ID: id}
	var created, idle, expires sql.NullInt64
	cols := "k." + strings.ReplaceAll(apiKeyColumns, ", ", ", k.")
	k, err := scanAPIKey(prepended{s.rdb.QueryRowContext(ctx, `
		SELECT s.key_id, s.created_at, s.idle_until, s.expires_at, `+cols+`
		FROM admin_sessions s JOIN api_keys k ON k.id = s.key_id
		WHERE s.id_hash = ? AND s.idle_until > `+nowMS+` AND s.expires_at > `+nowMS, hashID(id)),
		[]any{&as.KeyID, &created, &idle, &expires}})
	if err != nil {
		return nil, nil, translate(err, "admin session")
	}
	as.CreatedAt, as.IdleUntil, as.ExpiresAt = fromMS(created), fromMS(idle), fromMS(expires)
	return as, k, nil
}

// TouchAdminSession implements [tokenbroker.ConsoleStore].
func (s *Store) TouchAdminSession(ctx context.Context, id string, idle time.Duration) (bool, error) {
	res, err := s.wdb.ExecContext(ctx, `
		UPDATE admin_sessions SET idle_until = min(`+nowMS+` + ?, expires_at)
		WHERE id_hash = ? AND idle_until > `+nowMS+` AND expires_at > `+nowMS,
		idle.Milliseconds(), hashID(id))
	return affected(res, err, "admin session")
}

// DeleteAdminSession implements [tokenbroker.ConsoleStore].
func (s *Store) DeleteAdminSession(ctx context.Context, id string) error {
	_, err := s.wdb.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = ?`, hashID(id))
	return translate(err, "admin session")
}

// DeleteExpiredAdminSessions implements [tokenbroker.ConsoleStore].
func (s *Store) DeleteExpiredAdminSessions(ctx context.Context) (int64, error) {
	res, err := s.wdb.ExecContext(ctx, `
		DELETE FROM admin_sessions WHERE expires_at <= `+nowMS+` OR idle_until <= `+nowMS)
	if err != nil {
		return 0, translate(err, "admin sessions")
	}
	n, err := res.RowsAffected()
	return n, translate(err, "admin sessions")
}

// TouchAPIKeyUsage implements [tokenbroker.ConsoleStore]: one upsert that
// writes only when the recorded use is older than every.
func (s *Store) TouchAPIKeyUsage(ctx context.Context, keyID int64, every time.Duration) error {
	_, err := s.wdb.ExecContext(ctx, `
		INSERT INTO api_key_usage (key_id, last_used_at)
		SELECT id, `+nowMS+` FROM api_keys WHERE id = ?
		ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at
		WHERE api_key_usage.last_used_at < excluded.last_used_at - ?`,
		keyID, every.Milliseconds())
	return translate(err, "API key usage")
}

// ListAPIKeyUsage implements [tokenbroker.ConsoleStore].
func (s *Store) ListAPIKeyUsage(ctx context.Context) (map[int64]time.Time, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT key_id, last_used_at FROM api_key_usage`)
	if err != nil {
		return nil, translate(err, "API key usage")
	}
	defer rows.Close()
	out := make(map[int64]time.Time)
	for rows.Next() {
		var id int64
		var t sql.NullInt64
		if err := rows.Scan(&id, &t); err != nil {
			return nil, translate(err, "API key usage")
		}
		out[id] = fromMS(t)
	}
	return out, translate(rows.Err(), "API key usage")
}
