package crypt

import (
	"context"
	"fmt"
	"slices"

	"github.com/tokenbroker/tokenbroker"
)

// CheckRing verifies, before a server starts, that ring can open what the
// database holds: every key id that seals rows (per CountSealedByKey) must
// be in the ring, and a sample of sealed rows (the first link and pending
// auth request sealed by any key, and the first one not sealed by the
// primary) must open. It returns a [*RingMismatchError] whose message is
// one line naming the missing key ids, nil for an empty database.
//
// Rows with an empty key id hold no secret (every write through [Store]
// names its key); CheckRing ignores them.
func CheckRing(ctx context.Context, inner tokenbroker.Store, ring *Ring) error {
	counts, err := inner.CountSealedByKey(ctx)
	if err != nil {
		return fmt.Errorf("count sealed rows: %w", err)
	}
	var missing []string
	for id, n := range counts {
		if id != "" && n > 0 && !ring.Has(id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return &RingMismatchError{Missing: missing, Counts: counts}
	}
	// The ids match; open samples, which catches a key of the same id
	// (only by a deliberate collision) and anything that would make every
	// read fail, such as a store that does not keep values verbatim.
	for _, notBy := range []string{"", ring.PrimaryID()} {
		links, err := inner.ListLinksNotSealedBy(ctx, notBy, 0, 1)
		if err != nil {
			return fmt.Errorf("sample sealed links: %w", err)
		}
		for _, l := range links {
			if err := ring.openLink(l); err != nil {
				return &RingMismatchError{Counts: counts, Cause: err}
			}
		}
		reqs, err := inner.ListAuthRequestsNotSealedBy(ctx, notBy, 1)
		if err != nil {
			return fmt.Errorf("sample sealed auth requests: %w", err)
		}
		for _, r := range reqs {
			if err := ring.openAuthRequest(r, r.ID); err != nil {
				return &RingMismatchError{Counts: counts, Cause: err}
			}
		}
	}
	return nil
}

// HasSealedRows reports whether the database holds rows sealed by any key,
// and which key ids seal them, sorted.
func HasSealedRows(ctx context.Context, inner tokenbroker.Store) (bool, []string, error) {
	counts, err := inner.CountSealedByKey(ctx)
	if err != nil {
		return false, nil, fmt.Errorf("count sealed rows: %w", err)
	}
	var ids []string
	for id, n := range counts {
		if id != "" && n > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return len(ids) > 0, ids, nil
}
