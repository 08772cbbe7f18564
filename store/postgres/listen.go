package postgres

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokenbroker/tokenbroker/internal/backoff"
)

// ListenerApplicationName is the application_name of the listener
// connection, to spot it in pg_stat_activity.
const ListenerApplicationName = "tokenbroker-listener"

// Subscribe implements [tokenbroker.Signaler]. The first call starts the
// store's one listener connection (LISTEN tokenbroker_link), which fans
// the notifications of every replica out to this process's subscribers.
func (s *Store) Subscribe(linkID int64) (<-chan struct{}, func()) {
	ch, cancel := s.hub.Subscribe(linkID)
	s.listenOnce.Do(func() { go s.listen() })
	return ch, cancel
}

// OnChange implements [tokenbroker.ChangeFeed]. It starts the listener
// like Subscribe; fn sees this process's writes at once and other
// replicas' through LISTEN, and 0 whenever the listener (re)connects or
// loses its connection, since changes may have been missed then.
func (s *Store) OnChange(fn func(linkID int64)) func() {
	cancel := s.hub.OnChange(fn)
	s.listenOnce.Do(func() { go s.listen() })
	return cancel
}

// listen keeps one dedicated connection (outside the pool, so it never
// starves the queries) listening, reconnecting with capped, jittered
// backoff. After each (re)connection it wakes every subscriber: signals
// sent while it was away are lost, and a waiter woken for nothing merely
// re-reads its link (I5: no waiter sleeps through a change for longer
// than its poll fallback). It returns when the store is closed.
func (s *Store) listen() {
	defer close(s.listenDone)
	ctx := s.listenCtx
	// Jitter keeps replicas that lost the database together from
	// reconnecting in step.
	policy := backoff.Policy{Base: 50 * time.Millisecond, Max: 5 * time.Second}
	attempt := 0
	for ctx.Err() == nil {
		cfg := s.pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["application_name"] = ListenerApplicationName
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			if _, err = conn.Exec(ctx, `LISTEN `+Channel); err != nil {
				closeConn(conn)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			delay := policy.Delay(attempt)
			attempt++
			s.logger().Warn("postgres: listener cannot connect; retrying", "channel", Channel, "backoff", delay, "err", err)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		attempt = 0
		s.listenMu.Lock()
		s.listening++
		s.listenMu.Unlock()
		s.hub.SignalAll()
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.logger().Warn("postgres: listener connection lost; reconnecting", "err", err)
				}
				// Changes may go unseen until the reconnection: caches
				// must forget what they hold (waiters keep their poll).
				s.hub.ForgetAll()
				break
			}
			if id, err := strconv.ParseInt(n.Payload, 10, 64); err == nil {
				s.hub.Signal(id)
			}
		}
		closeConn(conn)
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn.Close(ctx)
}

// Listens returns how many times the listener has connected (0: not
// started or not yet connected). Tests use it to know when LISTEN is in
// place.
func (s *Store) Listens() int {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	return s.listening
}

func (s *Store) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}
