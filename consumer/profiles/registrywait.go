package profiles

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas/format"
)

// A record of a registry format whose schema the registry cannot tell now
// (down, timing out, 5xx, refusing the credentials) is not malformed: the
// partition stops before it, with everything before it applied and
// committed as usual, and nothing after it read. The worker asks the
// registry again for that record's schema, waiting longer each time up to
// maxRegistryWait; once the registry answers (the schema, or that it has
// no such schema: then the record is dead-lettered as unknown_schema), the
// partition is read again from that record. Meanwhile the stage is not
// ready (Stage.RegistryUnavailable).

// Waits between attempts to reach the registry for a held record.
const (
	minRegistryWait = 250 * time.Millisecond
	maxRegistryWait = 30 * time.Second
)

// registryBackoff is the wait before attempt n+1.
func registryBackoff(n int) time.Duration {
	d := minRegistryWait
	for i := 1; i < n && d < maxRegistryWait; i++ {
		d *= 2
	}
	return min(d, maxRegistryWait)
}

// heldRecord is a record the partition waits on, copied: the batch it came
// in is not kept.
type heldRecord struct {
	rec     format.Record
	offset  int64
	attempt int
	timer   *time.Timer
}

// waitRegistry stops the partition before r: nothing more is fed or
// applied, the poll loop pauses the partition, and the registry is asked
// again after a wait.
func (w *worker) waitRegistry(r *kgo.Record, err error) {
	h := &heldRecord{offset: r.Offset, attempt: 1, timer: time.NewTimer(registryBackoff(1))}
	h.rec.Key, h.rec.Value = slices.Clone(r.Key), slices.Clone(r.Value)
	h.rec.Headers = slices.Clone(r.Headers)
	w.held = h
	w.accepting.Store(false)
	w.d.pause(w)
	w.d.waits.begin(w.key.partition, w.d.now(), err)
	w.d.log.Warn("schema registry unavailable: the partition waits at this record and reads it again once the registry answers",
		"topic", w.key.topic, "partition", w.key.partition, "offset", r.Offset, "err", err)
}

// retry is the held record's timer's channel; nil (never ready) when no
// record is held.
func (w *worker) retry() <-chan time.Time {
	if w.held == nil {
		return nil
	}
	return w.held.timer.C
}

// probe asks the registry again for the held record's schema. While it
// cannot tell, the worker waits longer; once it can, the partition is read
// again from the held record, which is then decoded (and applied or
// dead-lettered) as any other.
func (w *worker) probe() {
	h := w.held
	err := w.d.dec.Decode(w.ctx, h.rec, &w.ev)
	if errors.Is(err, format.ErrRegistryUnavailable) {
		h.attempt++
		h.timer.Reset(registryBackoff(h.attempt))
		w.d.waits.failed(w.key.partition, err)
		w.d.log.Debug("schema registry still unavailable", "topic", w.key.topic, "partition", w.key.partition,
			"attempt", h.attempt, "err", err)
		return
	}
	w.release()
	w.d.log.Info("schema registry answers again: reading the partition from the record it waited at",
		"topic", w.key.topic, "partition", w.key.partition, "offset", h.offset, "attempts", h.attempt)
	w.rewindTo = h.offset
	w.rewoundCh = make(chan struct{})
	w.d.rewind(w)
}

// release forgets the held record, if any.
func (w *worker) release() {
	if w.held == nil {
		return
	}
	w.held.timer.Stop()
	w.held = nil
	w.d.waits.end(w.key.partition)
}

// paused pauses the worker's partition, from the poll goroutine between
// polls, and makes every batch handed out before stale.
func (w *worker) paused(cl *kgo.Client) {
	if w.stopped() {
		return
	}
	cl.PauseFetchPartitions(map[string][]int32{w.key.topic: {w.key.partition}})
	w.gen.Add(1)
}

// registryWaits are the partitions of a stage waiting for the schema
// registry. It is safe for concurrent use.
type registryWaits struct {
	m  *metrics
	mu sync.Mutex
	by map[int32]*registryWait
}

type registryWait struct {
	since time.Time
	err   string
}

func newRegistryWaits(m *metrics) *registryWaits {
	return &registryWaits{m: m, by: map[int32]*registryWait{}}
}

func (rw *registryWaits) begin(p int32, now time.Time, err error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	rw.by[p] = &registryWait{since: now, err: err.Error()}
	rw.m.registryErrors.Inc()
	rw.m.registryWaiting.Set(float64(len(rw.by)))
}

func (rw *registryWaits) failed(p int32, err error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if w := rw.by[p]; w != nil {
		w.err = err.Error()
	}
	rw.m.registryErrors.Inc()
}

func (rw *registryWaits) end(p int32) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	delete(rw.by, p)
	rw.m.registryWaiting.Set(float64(len(rw.by)))
}

// RegistryWait is an input partition waiting for the schema registry.
type RegistryWait struct {
	Partition int32     `json:"partition"`
	Since     time.Time `json:"since"`
	// Error is the registry client's last error (it holds nothing of the
	// record, nor the registry's credentials).
	Error string `json:"error"`
}

func (rw *registryWaits) list() []RegistryWait {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	out := make([]RegistryWait, 0, len(rw.by))
	for p, w := range rw.by {
		out = append(out, RegistryWait{Partition: p, Since: w.since, Error: w.err})
	}
	slices.SortFunc(out, func(a, b RegistryWait) int { return int(a.Partition - b.Partition) })
	return out
}

// RegistryUnavailable reports the input partitions waiting for the schema
// registry, or nil when none is.
func (s *Stage) RegistryUnavailable() error {
	ws := s.waits.list()
	if len(ws) == 0 {
		return nil
	}
	ps := make([]string, len(ws))
	since := ws[0].Since
	for i, w := range ws {
		ps[i] = fmt.Sprint(w.Partition)
		if w.Since.Before(since) {
			since = w.Since
		}
	}
	return fmt.Errorf("schema registry unavailable since %s: input partitions %s wait at their first record it could not tell the schema of (%s)",
		since.UTC().Format(time.RFC3339), strings.Join(ps, ", "), ws[0].Error)
}
