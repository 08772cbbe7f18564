package httpapi

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/tokenbroker/tokenbroker"
	"github.com/tokenbroker/tokenbroker/apiv1"
)

func deadLetter(d *tokenbroker.Delivery) apiv1.DeadLetter {
	return apiv1.DeadLetter{
		ID: d.ID, EventID: d.Event.ID, Type: string(d.Event.Type), EventTime: d.Event.Time.UTC(),
		UserID: d.Event.UserID, ProviderID: d.Event.ProviderID, Reason: d.Event.Reason, Detail: d.Event.Detail,
		Endpoint: d.Endpoint, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError,
		CreatedAt: d.CreatedAt.UTC(), DeadAt: d.DeadAt.UTC(), Status: string(d.Status),
	}
}

// listDeadLetters serves GET /api/v1/webhooks/dead-letters?endpoint=&before_id=&limit=.
func (s *Server) listDeadLetters(w http.ResponseWriter, r *http.Request, k *caller) error {
	if err := authorizeAdmin(k); err != nil {
		return err
	}
	f, err := parseDeadLetterFilter(r.URL.Query())
	if err != nil {
		return err
	}
	ds, err := s.store.ListDeadLetters(r.Context(), f)
	if err != nil {
		return err
	}
	out := apiv1.DeadLetterPage{DeadLetters: make([]apiv1.DeadLetter, 0, len(ds))}
	for _, d := range ds {
		out.DeadLetters = append(out.DeadLetters, deadLetter(d))
	}
	if pageFull(len(ds), f.Limit) {
		out.NextBeforeID = ds[len(ds)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func parseDeadLetterFilter(q url.Values) (tokenbroker.DeadLetterFilter, error) {
	var f tokenbroker.DeadLetterFilter
	if v := q.Get("endpoint"); v != "" {
		if len(v) > 200 {
			return f, tokenbroker.Errorf(tokenbroker.EINVALID, "endpoint is too long")
		}
		f.Endpoint = v
	}
	var err error
	f.BeforeID, f.Limit, err = parsePage(q)
	return f, err
}

// retryDeadLetter serves POST /api/v1/webhooks/dead-letters/{id}/retry:
// the delivery goes back to the outbox with a fresh retry window.
func (s *Server) retryDeadLetter(w http.ResponseWriter, r *http.Request, k *caller) error {
	if err := authorizeAdmin(k); err != nil {
		return err
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return tokenbroker.Errorf(tokenbroker.EINVALID, "id: want a positive integer")
	}
	d, err := s.store.RetryDeadLetter(r.Context(), id)
	if err != nil {
		return err
	}
	s.audit(k, tokenbroker.AuditWebhookRetry, d.Event.UserID, d.Event.ProviderID, nil,
		"event "+d.Event.ID+" to "+d.Endpoint)
	writeJSON(w, http.StatusOK, deadLetter(d))
	return nil
}
