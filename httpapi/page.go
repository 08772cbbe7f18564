package httpapi

import (
	"net/url"
	"strconv"

	"github.com/tokenbroker/tokenbroker"
)

// parsePage reads the paging parameters of the list endpoints: before_id,
// a positive id (the page holds older entries only), and limit, 1-1000 (0
// when absent: the store's default, [tokenbroker.PageLimit]).
func parsePage(q url.Values) (beforeID int64, limit int, err error) {
	if v := q.Get("before_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, tokenbroker.Errorf(tokenbroker.EINVALID, "before_id: want a positive integer")
		}
		beforeID = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, 0, tokenbroker.Errorf(tokenbroker.EINVALID, "limit: want 1-1000")
		}
		limit = n
	}
	return beforeID, limit, nil
}

// pageFull reports whether a page of n entries asked for with limit is
// full, so that its last entry's id is the next page's before_id.
func pageFull(n, limit int) bool {
	return n > 0 && n == tokenbroker.PageLimit(limit)
}
