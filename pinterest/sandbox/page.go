package sandbox

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
)

// Page size bounds of every list endpoint (spec: default 25, 1..250).
const (
	DefaultPageSize = 25
	MaxPageSize     = 250
)

// page is a parsed bookmark-pagination request.
type page struct {
	size       int
	descending bool
	after      uint64 // 0: from the start
}

type pageItem struct {
	seq uint64
	v   any
}

// paginated is the spec's Paginated response.
type paginated struct {
	Items    []any   `json:"items"`
	Bookmark *string `json:"bookmark"`
}

// parsePage reads page_size, bookmark and (if withOrder) order, writing a
// 400 on bad values.
func parsePage(w http.ResponseWriter, r *http.Request, withOrder bool) (page, bool) {
	q := r.URL.Query()
	p := page{size: DefaultPageSize}
	if v, ok := q["page_size"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid page_size: want an integer from 1 to 250.")
			return p, false
		}
		p.size = n
	}
	if withOrder {
		switch q.Get("order") {
		case "", "ASCENDING":
		case "DESCENDING":
			p.descending = true
		default:
			writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid order: want ASCENDING or DESCENDING.")
			return p, false
		}
	}
	if b := q.Get("bookmark"); b != "" {
		raw, err := base64.RawURLEncoding.DecodeString(b)
		n, err2 := strconv.ParseUint(string(raw), 10, 64)
		if err != nil || err2 != nil || n == 0 {
			writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid bookmark.")
			return p, false
		}
		p.after = n
	}
	return p, true
}

// apply sorts items by sequence, cuts the page after the bookmark and
// returns a bookmark only when more items follow.
func (p page) apply(items []pageItem) paginated {
	slices.SortFunc(items, func(a, b pageItem) int {
		if p.descending {
			a, b = b, a
		}
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	start := 0
	if p.after != 0 {
		start = len(items)
		for i, it := range items {
			if (!p.descending && it.seq > p.after) || (p.descending && it.seq < p.after) {
				start = i
				break
			}
		}
	}
	items = items[start:]
	out := paginated{Items: []any{}}
	n := min(p.size, len(items))
	for _, it := range items[:n] {
		out.Items = append(out.Items, it.v)
	}
	if n < len(items) {
		b := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(items[n-1].seq, 10)))
		out.Bookmark = &b
	}
	return out
}
