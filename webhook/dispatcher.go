package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/internal/backoff"
)

// Defaults of [Options].
const (
	DefaultConcurrency  = 8
	DefaultTimeout      = 10 * time.Second
	DefaultPollInterval = time.Second
	DefaultRetryWindow  = 24 * time.Hour
	DefaultMinBackoff   = 5 * time.Second
	DefaultMaxBackoff   = time.Hour
)

// storeTimeout bounds each outbox statement of the dispatcher.
const storeTimeout = 10 * time.Second

// Options configure a [Dispatcher]. Zero fields take the defaults.
type Options struct {
	// Owner names this replica in the outbox's leases (required).
	Owner string
	// Client sends the requests. Default: a client that follows no
	// redirect. Its Timeout is not used: Timeout bounds each attempt.
	Client *http.Client
	// Concurrency bounds the deliveries in flight at once.
	Concurrency int
	// Timeout bounds one attempt (connect, send, answer).
	Timeout time.Duration
	// LeaseTTL is how long a claimed delivery is this replica's; it must
	// exceed Timeout. Default: Timeout*2 + 2s.
	LeaseTTL time.Duration
	// PollInterval is how often the outbox is read when nothing woke the
	// dispatcher.
	PollInterval time.Duration
	// RetryWindow is how long after it was written an event is retried
	// before it becomes a dead letter.
	RetryWindow time.Duration
	// MinBackoff and MaxBackoff bound the delay between attempts, which
	// doubles per attempt with jitter.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock that decides the retry window and stamps
	// webhook-timestamp (default time.Now).
	Now func() time.Time
	// Jitter returns a number in [0, 1) (default math/rand/v2.Float64).
	Jitter func() float64
	// Logger receives delivery failures (default slog.Default()).
	Logger *slog.Logger
	// Metrics, if set, counts deliveries by outcome.
	Metrics *Metrics
}

// Dispatcher delivers the outbox's events to the configured endpoints.
// Any number of dispatchers (one per replica) may share an outbox: each
// delivery is claimed with a lease on the database clock, so exactly one
// of them sends it at a time, and a dispatcher that dies leaves it to be
// claimed again when its lease ends (at-least-once; receivers drop
// duplicates by webhook-id).
//
// A Dispatcher runs in its own goroutines and touches nothing of the
// token path: a slow or failing receiver costs at most Concurrency
// goroutines and connections, never a token request's time.
type Dispatcher struct {
	store     tokenbroker.OutboxStore
	endpoints map[string]*Endpoint
	order     []*Endpoint
	opts      Options
	log       *slog.Logger

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// New returns a dispatcher of store's outbox to endpoints. Start it with
// [Dispatcher.Start].
func New(store tokenbroker.OutboxStore, endpoints []*Endpoint, opts Options) (*Dispatcher, error) {
	if opts.Owner == "" {
		return nil, errors.New("webhook: Options.Owner is required")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 2*opts.Timeout + 2*time.Second
	}
	if opts.LeaseTTL <= opts.Timeout {
		return nil, fmt.Errorf("webhook: lease TTL %s must exceed the delivery timeout %s", opts.LeaseTTL, opts.Timeout)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.RetryWindow <= 0 {
		opts.RetryWindow = DefaultRetryWindow
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Client == nil {
		opts.Client = NewClient(nil)
	}
	d := &Dispatcher{
		store:     store,
		endpoints: map[string]*Endpoint{},
		order:     endpoints,
		opts:      opts,
		log:       opts.Logger.With("component", "webhook"),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	for _, e := range endpoints {
		d.endpoints[e.ID] = e
	}
	return d, nil
}

// NewClient returns the HTTP client deliveries use by default: transport
// from base (default http.DefaultTransport), no redirects followed (a
// receiver that redirects has failed; following could send the signed
// body elsewhere).
func NewClient(base http.RoundTripper) *http.Client {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	return &http.Client{
		Transport: base,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Start runs the dispatcher in the background until [Dispatcher.Close].
func (d *Dispatcher) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.run(ctx)
}

// Wake makes the dispatcher read the outbox now instead of at its next
// poll. It never blocks.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Close stops claiming, cancels the attempts in flight (their deliveries
// are released for an immediate retry, by this or another replica) and
// waits for the goroutines to end. Close may be called more than once.
func (d *Dispatcher) Close() {
	d.once.Do(func() {
		if d.cancel == nil {
			close(d.done)
			return
		}
		d.cancel()
		<-d.done
	})
	d.opts.Client.CloseIdleConnections()
}

// run claims due deliveries while there is room among Concurrency
// workers and hands each to its own goroutine. Concurrency here keeps
// the outbox's one rule, that a delivery is sent by one replica at a
// time: a worker only ever writes a row it holds, fenced by (owner,
// attempts), and the claim itself is the store's atomic lease.
func (d *Dispatcher) run(ctx context.Context) {
	defer close(d.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, d.opts.Concurrency) // a token per running worker
	freed := make(chan struct{}, d.opts.Concurrency)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		free := d.opts.Concurrency - len(slots)
		var claimed []*tokenbroker.Delivery
		if free > 0 {
			var err error
			claimed, err = d.claim(ctx, free)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("cannot read the webhook outbox", "err", err)
			}
		}
		for _, dl := range claimed {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() {
					<-slots
					select { // never blocks: run may be gone
					case freed <- struct{}{}:
					default:
					}
				}()
				d.handle(ctx, dl)
			})
		}
		if len(claimed) == free && free > 0 {
			continue // there may be more due: claim again at once
		}
		timer.Reset(d.opts.PollInterval)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-freed:
		case <-timer.C:
		}
	}
}

func (d *Dispatcher) claim(ctx context.Context, n int) ([]*tokenbroker.Delivery, error) {
	cctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return d.store.ClaimDeliveries(cctx, d.opts.Owner, d.opts.LeaseTTL, n)
}

// storeCtx is the context of a holder's write: detached from the
// dispatcher's, so a delivery that was made is recorded even during
// Close, and bounded.
func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

// handle routes an unrouted delivery, or sends a routed one.
func (d *Dispatcher) handle(ctx context.Context, dl *tokenbroker.Delivery) {
	if dl.Endpoint == "" {
		d.route(dl)
		return
	}
	d.deliver(ctx, dl)
}

// route replaces an event's unrouted row by one row per endpoint that
// wants it; they are claimed like any other.
func (d *Dispatcher) route(dl *tokenbroker.Delivery) {
	var ids []string
	for _, e := range d.order {
		if e.Wants(dl.Event.Type) {
			ids = append(ids, e.ID)
		}
	}
	sctx, cancel := storeCtx()
	defer cancel()
	routed, err := d.store.RouteDelivery(sctx, dl, ids)
	if err != nil {
		d.log.Warn("cannot route a webhook event", "event_id", dl.Event.ID, "err", err)
		return // the lease ends and someone routes it again
	}
	if len(routed) > 0 {
		d.Wake()
	}
}

// Outcomes of one attempt, the values of the metrics' outcome label.
const (
	OutcomeDelivered = "delivered" // 2xx
	OutcomeRetry     = "retry"     // failed, retried later
	OutcomeDead      = "dead"      // failed past the retry window
	OutcomeGone      = "gone"      // 410: never retried
	OutcomeLostLease = "lost_lease"
)

// deliver makes one attempt and records its outcome.
func (d *Dispatcher) deliver(ctx context.Context, dl *tokenbroker.Delivery) {
	ep := d.endpoints[dl.Endpoint]
	var (
		status int
		err    error
	)
	start := time.Now() // a measurement, not a decision
	if ep == nil {
		// Configured on another replica (a rolling configuration change)
		// or removed: leave it to the retry window.
		err = fmt.Errorf("endpoint %q is not configured on replica %s", dl.Endpoint, d.opts.Owner)
	} else {
		status, err = d.send(ctx, ep, dl)
	}
	elapsed := time.Since(start)

	sctx, cancel := storeCtx()
	defer cancel()
	var (
		outcome string
		held    bool
		serr    error
	)
	switch {
	case err == nil && status >= 200 && status <= 299:
		outcome = OutcomeDelivered
		held, serr = d.store.CompleteDelivery(sctx, dl)
	case status == http.StatusGone:
		outcome = OutcomeGone
		held, serr = d.store.KillDelivery(sctx, dl, status, "the receiver answered 410 Gone: not retried")
	case ctx.Err() != nil:
		// Shutting down: release it for an immediate retry elsewhere.
		outcome = OutcomeRetry
		held, serr = d.store.RetryDelivery(sctx, dl, 0, status, "interrupted by shutdown")
	default:
		why := failure(status, err)
		delay := d.backoff(dl.Attempts)
		if d.opts.Now().Add(delay).After(dl.CreatedAt.Add(d.opts.RetryWindow)) {
			outcome = OutcomeDead
			held, serr = d.store.KillDelivery(sctx, dl, status, why+"; retry window of "+d.opts.RetryWindow.String()+" over")
		} else {
			outcome = OutcomeRetry
			held, serr = d.store.RetryDelivery(sctx, dl, delay, status, why)
		}
		if ctx.Err() == nil {
			d.log.Warn("webhook delivery failed", "endpoint", dl.Endpoint, "event_id", dl.Event.ID,
				"type", dl.Event.Type, "attempt", dl.Attempts, "status", status, "err", why, "outcome", outcome)
		}
	}
	if serr != nil {
		d.log.Warn("cannot record a webhook delivery; its lease will end and it is sent again",
			"endpoint", dl.Endpoint, "event_id", dl.Event.ID, "err", serr)
		return
	}
	if !held {
		outcome = OutcomeLostLease
		d.log.Warn("webhook delivery took longer than its lease: another replica may send it again",
			"endpoint", dl.Endpoint, "event_id", dl.Event.ID)
	}
	if outcome == OutcomeDead || outcome == OutcomeGone {
		d.log.Error("webhook event given up: a dead letter now", "endpoint", dl.Endpoint,
			"event_id", dl.Event.ID, "type", dl.Event.Type, "status", status)
	}
	d.opts.Metrics.observe(dl.Endpoint, outcome, elapsed)
}

// send POSTs the signed event and returns the receiver's status.
func (d *Dispatcher) send(ctx context.Context, ep *Endpoint, dl *tokenbroker.Delivery) (int, error) {
	actx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	body := Body(dl.Event)
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	now := d.opts.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tokenbroker-webhook")
	req.Header.Set(HeaderID, dl.Event.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, Sign(ep.Keys, dl.Event.ID, now, body))
	resp, err := d.opts.Client.Do(req)
	if err != nil {
		return 0, err
	}
	// Drain a little so the connection can be reused; the body is not kept.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// failure says why an attempt failed, without the URL (which may carry
// a credential in its query) or anything the receiver sent.
func failure(status int, err error) string {
	if err == nil {
		return fmt.Sprintf("the receiver answered %d %s", status, http.StatusText(status))
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + ": " + oe.Err.Error()
	}
	return "request failed"
}

// backoff returns the delay after the attempt-th failure (attempts count
// from 1): MinBackoff doubled per earlier attempt, at most MaxBackoff, with
// equal jitter (internal/backoff), so that replicas retrying many events
// after an outage spread out.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	return backoff.Policy{Base: d.opts.MinBackoff, Max: d.opts.MaxBackoff, Rand: d.opts.Jitter}.Delay(attempt - 1)
}
