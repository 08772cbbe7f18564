package httpapi

import (
	"net/http"
	"net/url"
	"time"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

// listAudit serves GET /api/v1/audit?user=&provider=&action=&actor=&since=&until=&before_id=&limit=.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, k *caller) error {
	if err := authorizeAdmin(k); err != nil {
		return err
	}
	f, err := parseAuditFilter(r.URL.Query())
	if err != nil {
		return err
	}
	events, err := s.store.ListAudit(r.Context(), f)
	if err != nil {
		return err
	}
	out := apiv1.AuditPage{Events: make([]apiv1.AuditEvent, 0, len(events))}
	for _, e := range events {
		out.Events = append(out.Events, auditEventOut(e))
	}
	if pageFull(len(events), f.Limit) {
		out.NextBeforeID = events[len(events)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// auditEventOut is the wire form of e, an entry of GET /api/v1/audit.
func auditEventOut(e tokenbroker.AuditEvent) apiv1.AuditEvent {
	return apiv1.AuditEvent{
		ID: e.ID, Time: e.Time.UTC(), Actor: e.Actor, Action: e.Action,
		UserID: e.UserID, ProviderID: e.ProviderID, Outcome: e.Outcome, Detail: e.Detail,
		Count: e.N(), FirstAt: e.First().UTC(), LastAt: e.Time.UTC(),
	}
}

func parseAuditFilter(q url.Values) (tokenbroker.AuditFilter, error) {
	var f tokenbroker.AuditFilter
	if v := q.Get("user"); v != "" {
		if err := tokenbroker.ValidateUserID(v); err != nil {
			return f, err
		}
		f.UserID = v
	}
	if v := q.Get("provider"); v != "" {
		if err := tokenbroker.ValidateProviderID(v); err != nil {
			return f, err
		}
		f.ProviderID = v
	}
	if v := q.Get("action"); v != "" {
		if len(v) > 64 {
			return f, tokenbroker.Errorf(tokenbroker.EINVALID, "action is too long")
		}
		f.Action = v
	}
	if v := q.Get("actor"); v != "" {
		if len(v) > 200 {
			return f, tokenbroker.Errorf(tokenbroker.EINVALID, "actor is too long")
		}
		f.Actor = v
	}
	var err error
	if f.Since, err = parseTime(q.Get("since"), "since"); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q.Get("until"), "until"); err != nil {
		return f, err
	}
	f.BeforeID, f.Limit, err = parsePage(q)
	return f, err
}

func parseTime(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, tokenbroker.Errorf(tokenbroker.EINVALID, "%s: want an RFC 3339 time such as 2026-01-02T15:04:05Z", name)
	}
	return t, nil
}
