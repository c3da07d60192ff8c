package consumer

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchPool recycles the memory of fetched batches (kgo.WithPools): the
// buffers batches are decompressed into and the record slices decoded
// into. Without it every fetch allocates fresh memory that the kernel must
// fault in and zero, which at hundreds of thousands of records a second
// costs more than the garbage collector. A worker recycles each record once
// it is applied (kgo.Record.Recycle). The free lists are bounded in bytes;
// what does not fit is left to the garbage collector.
type fetchPool struct {
	mu       sync.Mutex
	bufs     [][]byte
	recs     [][]kgo.Record
	held     int // bytes in the free lists
	maxBytes int
}

// recordSize approximates the bytes of one kgo.Record for the bound.
const recordSize = 256

func newFetchPool(maxBytes int) *fetchPool { return &fetchPool{maxBytes: maxBytes} }

// GetDecompressBytes returns the largest free buffer (kgo grows it when it
// is too small and puts the grown one back).
func (p *fetchPool) GetDecompressBytes([]byte, kgo.CompressionCodecType) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.bufs); n > 0 {
		b := p.bufs[n-1]
		p.bufs = p.bufs[:n-1]
		p.held -= cap(b)
		return b[:0]
	}
	return nil
}

// PutDecompressBytes takes a buffer back, zeroed by kgo.
func (p *fetchPool) PutDecompressBytes(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held+cap(b) > p.maxBytes {
		return
	}
	p.held += cap(b)
	p.bufs = append(p.bufs, b)
}

// GetRecords returns a free record slice of capacity at least n.
func (p *fetchPool) GetRecords(n int) []kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.recs) - 1; i >= 0; i-- {
		if r := p.recs[i]; cap(r) >= n {
			p.recs[i] = p.recs[len(p.recs)-1]
			p.recs = p.recs[:len(p.recs)-1]
			p.held -= cap(r) * recordSize
			return r[:0]
		}
	}
	return make([]kgo.Record, 0, n)
}

// PutRecords takes a record slice back, zeroed by kgo.
func (p *fetchPool) PutRecords(r []kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held+cap(r)*recordSize > p.maxBytes {
		return
	}
	p.held += cap(r) * recordSize
	p.recs = append(p.recs, r)
}
