package refresh

import (
	"fmt"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// degrades reports whether the failed attempt of the lease holder g ends a
// run of failures long enough to mark the link degraded, and if so adds the
// transition's audit and webhook events to rec. The decision is the
// holder's alone: its lease keeps the link's state and the start of its
// failures (as the acquisition reported them, on the database's clock)
// from changing under it, and the next holder finds the link degraded, so
// the transition is written once, with the release that makes it.
func (c *Coordinator) degrades(l *tokenbroker.Link, g *tokenbroker.LeaseGrant, pe *tokenbroker.ProviderError, rec *tokenbroker.Record) bool {
	if c.cfg.DegradeAfter < 0 || g.State != tokenbroker.LinkActive || g.FailingSince.IsZero() {
		return false
	}
	failing := g.Now.Sub(g.FailingSince)
	if failing < c.cfg.DegradeAfter {
		return false
	}
	detail := fmt.Sprintf("refreshes have failed for %s: %s", failing.Round(time.Second), pe.Reason())
	c.log.Warn("link degraded: its refreshes keep failing; it serves its token while that is valid",
		"user", l.UserID, "provider", l.ProviderID, "failing_for", failing.Round(time.Second), "class", pe.Class)
	rec.Audit = append(rec.Audit, c.event(l, tokenbroker.AuditLinkDegraded, string(pe.Class), detail))
	rec.Events = append(rec.Events, tokenbroker.LinkEvent(tokenbroker.EventLinkDegraded, l, string(pe.Class), detail))
	return true
}
