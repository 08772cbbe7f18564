package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tokenbroker/tokenbroker/apiv1"
)

// DeadLetter is a webhook delivery given up on. It never holds a token.
type DeadLetter = apiv1.DeadLetter

// DeadLetterPage is one page of dead letters, newest first.
// NextBeforeID, when not 0, is the BeforeID of the next (older) page.
type DeadLetterPage = apiv1.DeadLetterPage

// DeadLetterQuery selects dead letters. Zero fields match everything.
type DeadLetterQuery struct {
	Endpoint string // an endpoint id
	BeforeID int64  // page backwards from this id
	Limit    int    // 0: 100; at most 1000
}

// DeadLetters lists webhook dead letters (admin).
func (c *Client) DeadLetters(ctx context.Context, q DeadLetterQuery) (*DeadLetterPage, error) {
	v := url.Values{}
	if q.Endpoint != "" {
		v.Set("endpoint", q.Endpoint)
	}
	if q.BeforeID > 0 {
		v.Set("before_id", strconv.FormatInt(q.BeforeID, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return call[DeadLetterPage](ctx, c, http.MethodGet, "/api/v1/webhooks/dead-letters", v, nil)
}

// RetryDeadLetter sends the dead letter with the id back to the outbox,
// with a fresh retry window (admin). The answer shows it pending.
func (c *Client) RetryDeadLetter(ctx context.Context, id int64) (*DeadLetter, error) {
	return call[DeadLetter](ctx, c, http.MethodPost, "/api/v1/webhooks/dead-letters/"+strconv.FormatInt(id, 10)+"/retry", nil, nil)
}
