package crypt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tokenbroker/tokenbroker"
)

// DefaultRekeyBatchSize is the batch size of [Rekey] when none is given.
const DefaultRekeyBatchSize = 500

// maxRekeyPasses bounds the passes of [Rekey]. A pass after the first only
// finds rows written since by a replica whose primary is still an old key;
// if they keep coming, the deployment is not rotated yet and waiting does
// not help.
const maxRekeyPasses = 10

// maxResealAttempts bounds the re-reads of one row whose reseal lost the
// compare-and-swap to a concurrent refresh, within one pass.
const maxResealAttempts = 8

// ErrRekeyIncomplete is returned by [Rekey] when rows are still being
// sealed by an old key after its last pass: a replica still has an old
// primary. Rerun the rekey once every replica has the new ring.
var ErrRekeyIncomplete = errors.New("rekey: links are still being sealed by an old key; is a replica running with an old primary key? Put the new key first everywhere, then run rekey again")

// RekeyOptions tunes [Rekey].
type RekeyOptions struct {
	// BatchSize is how many rows one read returns (default 500).
	BatchSize int
	// Progress, if set, is called after each batch with the rows handled
	// so far and the total counted at the start (rows not sealed by the
	// primary). done can pass total when refreshes by replicas with an old
	// primary add rows meanwhile.
	Progress func(done, total int64)
	// Logger receives a line per row that cannot be re-sealed (nil:
	// slog.Default()). Lines name the row and the key, never a value.
	Logger *slog.Logger
}

// RekeyResult counts what [Rekey] did.
type RekeyResult struct {
	Total         int64 // rows not sealed by the primary at the start
	Links         int64 // links re-sealed
	AuthRequests  int64 // pending auth requests re-sealed
	Gone          int64 // rows deleted or consumed meanwhile
	AlreadySealed int64 // rows a concurrent writer had sealed by the primary meanwhile
	CASRetries    int64 // reseals that lost to a concurrent refresh and were retried
	Failed        int64 // rows that could not be opened (see the error)
	Passes        int   // passes over the links
}

// Rekey re-seals with ring's primary key every row of inner not sealed by
// it: links and pending auth requests. It runs online, next to replicas
// that serve and refresh, in batches read by keyset pagination on the
// link id, and it is resumable: it only ever looks at rows not yet sealed
// by the primary, so a rerun after an interruption picks up where the last
// one stopped. inner is the undecorated store.
//
// Each link is opened with the key that sealed it, sealed with the primary
// and written with inner.ResealLink: a compare-and-swap on the generation
// that does not bump it. If a refresh committed meanwhile the CAS loses and
// the row is read again; the refresh's token is never overwritten (I3, I4:
// a rekey never loses a refreshed token). A refresh by a replica that
// already has the new ring seals with the new primary itself; one by a
// replica still on the old ring is found again and re-sealed by a later
// pass. Rekey loops until a pass finds no row, for at most 10 passes.
//
// Rows that cannot be opened (their key is not in the ring, or they fail
// authentication) are counted in Failed and logged; Rekey goes on with the
// others and returns an error naming how many failed. The ring must hold
// every key that seals rows (see [CheckRing]).
func Rekey(ctx context.Context, inner tokenbroker.Store, ring *Ring, opts RekeyOptions) (RekeyResult, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultRekeyBatchSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	primary := ring.PrimaryID()
	var res RekeyResult

	counts, err := inner.CountSealedByKey(ctx)
	if err != nil {
		return res, fmt.Errorf("rekey: count rows: %w", err)
	}
	for id, n := range counts {
		if id != primary {
			res.Total += n
		}
	}
	var done int64
	progress := func() {
		if opts.Progress != nil {
			opts.Progress(done, max(res.Total, done))
		}
	}
	progress()

	// Links: passes of keyset pagination until one finds nothing. Rows
	// that failed to open are not tried again.
	failed := make(map[int64]bool)
	for {
		if res.Passes == maxRekeyPasses {
			return res, ErrRekeyIncomplete
		}
		res.Passes++
		found, resealed := int64(0), int64(0)
		var after int64
		for {
			links, err := inner.ListLinksNotSealedBy(ctx, primary, after, opts.BatchSize)
			if err != nil {
				return res, fmt.Errorf("rekey: list links: %w", err)
			}
			if len(links) == 0 {
				break
			}
			for _, l := range links {
				after = l.ID
				if failed[l.ID] {
					continue
				}
				found++
				ok, err := rekeyLink(ctx, inner, ring, l, &res)
				if err != nil {
					if ctx.Err() != nil {
						return res, ctx.Err()
					}
					if errors.Is(err, ErrOpen) {
						failed[l.ID] = true
						res.Failed++
						opts.Logger.Warn("rekey: cannot open link", "user_id", l.UserID, "provider_id", l.ProviderID, "key_id", l.KeyID, "err", err)
						continue
					}
					return res, err
				}
				if ok {
					resealed++
				}
				done++
			}
			progress()
		}
		if found == 0 || resealed == 0 {
			// Nothing left, or only rows that cannot be opened: another
			// pass would find the same.
			break
		}
	}

	// Pending auth requests: short-lived, never updated but consumed or
	// deleted, so a plain write suffices; the list has no cursor, so stop
	// when a batch re-seals nothing (only rows that cannot be opened).
	for {
		reqs, err := inner.ListAuthRequestsNotSealedBy(ctx, primary, opts.BatchSize)
		if err != nil {
			return res, fmt.Errorf("rekey: list auth requests: %w", err)
		}
		var resealed int
		for _, r := range reqs {
			if err := ring.openAuthRequest(r, r.ID); err != nil {
				res.Failed++
				opts.Logger.Warn("rekey: cannot open auth request", "user_id", r.UserID, "provider_id", r.ProviderID, "key_id", r.KeyID, "err", err)
				continue
			}
			sealed, err := ring.sealAuthRequest(r, r.ID)
			if err != nil {
				return res, err
			}
			switch err := inner.ResealAuthRequest(ctx, sealed); {
			case err == nil:
				res.AuthRequests++
				resealed++
			case tokenbroker.IsNotFound(err):
				res.Gone++
			default:
				return res, fmt.Errorf("rekey: reseal auth request: %w", err)
			}
			done++
		}
		progress()
		if len(reqs) < opts.BatchSize || resealed == 0 {
			break
		}
	}

	if res.Failed > 0 {
		return res, fmt.Errorf("rekey: %d rows could not be opened with the key ring and are still sealed by old keys (see the log); every other row is sealed by %s", res.Failed, primary)
	}
	return res, nil
}

// rekeyLink re-seals one link by CAS, re-reading it after each lost CAS.
// It reports whether it wrote the link; rows deleted or sealed by the
// primary meanwhile need no write.
func rekeyLink(ctx context.Context, inner tokenbroker.Store, ring *Ring, l *tokenbroker.Link, res *RekeyResult) (bool, error) {
	userID, providerID := l.UserID, l.ProviderID
	for attempt := 0; ; attempt++ {
		if l.KeyID == ring.PrimaryID() {
			res.AlreadySealed++
			return false, nil
		}
		// Open with the old key, seal with the primary; the sealed copy
		// keeps l's generation for the CAS.
		if err := ring.openLink(l); err != nil {
			return false, err
		}
		sealed, err := ring.sealLink(l)
		if err != nil {
			return false, err
		}
		// I3/I4: the CAS on the generation, without a bump, means a
		// refresh committed since our read wins and we re-read.
		ok, err := inner.ResealLink(ctx, sealed)
		if err != nil {
			return false, fmt.Errorf("rekey: reseal link %s/%s: %w", userID, providerID, err)
		}
		if ok {
			res.Links++
			return true, nil
		}
		if attempt+1 == maxResealAttempts {
			// A later pass picks it up.
			return false, nil
		}
		res.CASRetries++
		l, err = inner.GetLink(ctx, userID, providerID)
		if tokenbroker.IsNotFound(err) {
			res.Gone++
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("rekey: re-read link %s/%s: %w", userID, providerID, err)
		}
	}
}
