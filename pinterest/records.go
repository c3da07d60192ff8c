package pinterest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pinsync/pinsync/schemas/ident"
)

// Operation says what an update does with its records.
type Operation string

// The customer-list update operations (UserListOperationType).
const (
	Add    Operation = "ADD"
	Remove Operation = "REMOVE"
)

// Valid reports whether op is Add or Remove.
func (op Operation) Valid() bool { return op == Add || op == Remove }

// bytesPerRecord is one record in the records string: 64 hex digits and a
// separating comma.
const bytesPerRecord = 65

// body is a pooled request body shared by the attempts of one call. It goes
// back to the pool once the call is done and every reader handed to the
// transport is closed (a transport may close a body after RoundTrip returns).
type body struct {
	buf  *[]byte
	refs atomic.Int32
	pool *sync.Pool
}

// withDeduped calls f with recs deduplicated, in a pooled scratch slice.
func (c *Client) withDeduped(recs []ident.Hash, f func([]ident.Hash) error) error {
	sp, _ := c.hashes.Get().(*[]ident.Hash)
	if sp == nil {
		sp = new([]ident.Hash)
	}
	d := dedupe(recs, *sp)
	err := f(d)
	if len(d) > 0 && len(recs) > 0 && &d[0] != &recs[0] {
		*sp = d[:0]
	}
	c.hashes.Put(sp)
	return err
}

func (c *Client) newBody() *body {
	bp, _ := c.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 4096)
		bp = &b
	}
	b := &body{buf: bp, pool: &c.bufs}
	b.refs.Store(1)
	return b
}

// jsonBody is a request body holding v in JSON.
func (c *Client) jsonBody(v any) (*body, error) {
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	b := c.newBody()
	*b.buf = append(*b.buf, enc...)
	return b, nil
}

// release drops the caller's reference.
func (b *body) release() {
	if b.refs.Add(-1) == 0 {
		*b.buf = (*b.buf)[:0]
		b.pool.Put(b.buf)
		b.buf = nil
	}
}

func (b *body) reader() io.ReadCloser {
	b.refs.Add(1)
	return &bodyReader{Reader: bytes.NewReader(*b.buf), b: b}
}

type bodyReader struct {
	*bytes.Reader
	b    *body
	once sync.Once
}

// Close releases the reader's reference to the pooled buffer, once.
func (r *bodyReader) Close() error {
	r.once.Do(r.b.release)
	return nil
}

// appendRecords appends the comma-separated lowercase hex of recs.
func appendRecords(b []byte, recs []ident.Hash) []byte {
	for i, h := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = h.AppendHex(b)
	}
	return b
}

// appendUpdate appends a CustomerListUpdateRequest.
func appendUpdate(b []byte, op Operation, recs []ident.Hash) []byte {
	b = append(b, `{"operation_type":"`...)
	b = append(b, op...)
	b = append(b, `","records":"`...)
	b = appendRecords(b, recs)
	return append(b, `"}`...)
}

// appendCreate appends a CustomerListRequest; name is already JSON-encoded.
func appendCreate(b []byte, name []byte, t ident.Type, recs []ident.Hash) []byte {
	b = append(b, `{"name":`...)
	b = append(b, name...)
	b = append(b, `,"list_type":"`...)
	b = append(b, t.String()...)
	b = append(b, `","records":"`...)
	b = appendRecords(b, recs)
	return append(b, `"}`...)
}

// chunkSize is how many records fit one request whose body without records
// is overhead bytes long.
func (c *Client) chunkSize(overhead int) int {
	n := (c.cfg.MaxBytes - overhead + 1) / bytesPerRecord
	return max(1, min(c.cfg.MaxRecords, n))
}

// dedupe returns recs without repeats. Records that are already sorted and
// unique are returned as they are; otherwise a sorted copy is made in
// scratch, so the caller's slice is never modified.
func dedupe(recs, scratch []ident.Hash) []ident.Hash {
	cmp := func(a, b ident.Hash) int { return bytes.Compare(a[:], b[:]) }
	sortedUnique := true
	for i := 1; i < len(recs); i++ {
		if cmp(recs[i-1], recs[i]) >= 0 {
			sortedUnique = false
			break
		}
	}
	if sortedUnique {
		return recs
	}
	out := append(scratch[:0], recs...)
	slices.SortFunc(out, cmp)
	return slices.Compact(out)
}

// inChunks calls send with consecutive chunks of at most n records. When a
// chunk is refused as too large it is halved, and later chunks keep the
// smaller size. It returns how many records were sent successfully.
func (c *Client) inChunks(ctx context.Context, recs []ident.Hash, n int, send func(ctx context.Context, chunk []ident.Hash) error) (int, error) {
	sent := 0
	for sent < len(recs) {
		chunk := recs[sent:min(sent+n, len(recs))]
		err := send(ctx, chunk)
		var e *Error
		if errors.As(err, &e) && e.PayloadTooLarge() && len(chunk) > 1 {
			n = len(chunk) / 2
			c.log.WarnContext(ctx, "Pinterest refused a request as too large; halving the batch",
				"records", len(chunk), "new_size", n, "request_id", e.RequestID)
			continue
		}
		if err != nil {
			return sent, err
		}
		sent += len(chunk)
	}
	return sent, nil
}
