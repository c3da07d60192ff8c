package profiles

import (
	"slices"
	"sync"

	"github.com/pinsync/pinsync/schemas"
)

// The profile stage reads a profile's state from one partition: a
// profile's events must all reach the same one. Producers ensure it by
// keying each record by its profile id, whatever partitioner they use
// consistently. The decoder knows the profile id from the payload (Segment
// userId, else anonymousId; native profile) and says whether the key is it
// (schemas.Event.Key); a native record keyed otherwise is also
// dead-lettered (key_mismatch). The stage counts the records that are not
// keyed by their profile id, by partition, in a metric and in /status, and
// logs one line per partition the first time it sees one: their profiles'
// state may be split between partitions, and the lists it gives are not
// to be trusted.

// misKeyed counts a stage's mis-keyed records by partition. It is safe for
// concurrent use.
type misKeyed struct {
	m  *metrics
	mu sync.Mutex
	by map[int32]*MisKeyed
}

// MisKeyed is the records of one input partition, read by this process,
// that are not keyed by their profile id.
type MisKeyed struct {
	Partition int32 `json:"partition"`
	// Missing have no key; NotProfile a key that is not the profile id of
	// their payload.
	Missing    int64 `json:"missing_key"`
	NotProfile int64 `json:"key_not_profile"`
	// LastOffset is the offset of the last of them.
	LastOffset int64 `json:"last_offset"`
}

func newMisKeyed(m *metrics) *misKeyed { return &misKeyed{m: m, by: map[int32]*MisKeyed{}} }

// keyCounts are one batch's mis-keyed records, counted by the worker and
// added at the batch's end.
type keyCounts struct {
	missing, notProfile int64
	last                int64
}

func (c *keyCounts) add(k schemas.KeyState, offset int64) {
	switch k {
	case schemas.KeyMissing:
		c.missing++
	case schemas.KeyNotProfile:
		c.notProfile++
	default:
		return
	}
	c.last = offset
}

// add records a batch's counts of partition p; it reports whether they are
// the partition's first (to be logged).
func (mk *misKeyed) add(p int32, c keyCounts) (first bool) {
	if c.missing == 0 && c.notProfile == 0 {
		return false
	}
	mk.m.misKeyed.WithLabelValues(schemas.KeyMissing.String()).Add(float64(c.missing))
	mk.m.misKeyed.WithLabelValues(schemas.KeyNotProfile.String()).Add(float64(c.notProfile))
	mk.mu.Lock()
	defer mk.mu.Unlock()
	s := mk.by[p]
	if s == nil {
		s = &MisKeyed{Partition: p}
		mk.by[p] = s
		first = true
	}
	s.Missing += c.missing
	s.NotProfile += c.notProfile
	s.LastOffset = c.last
	return first
}

func (mk *misKeyed) list() []MisKeyed {
	mk.mu.Lock()
	defer mk.mu.Unlock()
	out := make([]MisKeyed, 0, len(mk.by))
	for _, s := range mk.by {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b MisKeyed) int { return int(a.Partition - b.Partition) })
	return out
}
