package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tokenbroker/tokenbroker"
)

// AuditEventJSON is one audit event as the API shows it.
type AuditEventJSON struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	UserID     string    `json:"user_id,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	Outcome    string    `json:"outcome"`
	Detail     string    `json:"detail,omitempty"`
}

// AuditList is the body of GET /api/v1/audit, newest first. NextBeforeID,
// when set, is the before_id that fetches the next (older) page.
type AuditList struct {
	Events       []AuditEventJSON `json:"events"`
	NextBeforeID int64            `json:"next_before_id,omitempty"`
}

// listAudit serves GET /api/v1/audit?user=&provider=&action=&since=&until=&before_id=&limit=.
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
	out := AuditList{Events: make([]AuditEventJSON, 0, len(events))}
	for _, e := range events {
		out.Events = append(out.Events, AuditEventJSON{
			ID: e.ID, Time: e.Time.UTC(), Actor: e.Actor, Action: e.Action,
			UserID: e.UserID, ProviderID: e.ProviderID, Outcome: e.Outcome, Detail: e.Detail,
		})
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if len(events) == limit && len(events) > 0 {
		out.NextBeforeID = events[len(events)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func parseAuditFilter(q url.Values) (tokenbroker.AuditFilter, error) {
	var f tokenbroker.AuditFilter
	for key := range q {
		switch key {
		case "user", "provider", "action", "since", "until", "before_id", "limit":
		default:
			return f, tokenbroker.Errorf(tokenbroker.EINVALID, "unknown query parameter %q", tokenbroker.Truncate(key, 40))
		}
	}
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
	var err error
	if f.Since, err = parseTime(q.Get("since"), "since"); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q.Get("until"), "until"); err != nil {
		return f, err
	}
	if v := q.Get("before_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return f, tokenbroker.Errorf(tokenbroker.EINVALID, "before_id: want a positive integer")
		}
		f.BeforeID = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return f, tokenbroker.Errorf(tokenbroker.EINVALID, "limit: want 1-1000")
		}
		f.Limit = n
	}
	return f, nil
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
