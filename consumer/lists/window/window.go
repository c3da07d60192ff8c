// Package window holds the list stage's batching windows, like
// alertmanager's aggregation groups: one window per list, in which the last
// change to each record wins (add then remove = remove), flushed as a
// flight when it is full, when its oldest change has waited the flush
// interval, or when it is asked to (revoke, shutdown).
//
// A Set is the windows of the lists one member owns: Add puts changes in,
// Due says which windows to flush now (most urgent first, within a budget
// of calls and flights), Take moves a window's records into a flight, and
// Finish ends the flight, putting back what did not reach Pinterest. Each
// window has at most one flight at a time, so a list's writes are ordered.
// A window's Mode says what becomes of its list's changes while the list
// is parked or rebuilt. The records the windows hold are capped in number
// (WaitBelow) and in bytes (Add refuses what would pass the cap).
//
// Pending counts move with the changes: the methods that move changes
// report them in a commit.Deltas, for the caller to apply to its
// commit.Tracker once the set's lock is released.
//
// It reads no clock (the caller passes now), and knows nothing of Kafka or
// Pinterest: what a flight is sent to, and what a list is, are the list
// stage's (package lists) and its sink's (package sink).
package window

import (
	"context"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/schemas/ident"
)

// ListID is a list as the member interned it (see sink.Sink.Intern):
// small and dense, it indexes the windows.
type ListID uint32

// entry is the last change to one record in a window.
type entry struct {
	op changes.Op
	// before is where the list stood for the record before the window's
	// first change to it, when that is known for sure (stateUnknown
	// otherwise).
	before listState
	pk     commit.Key
	ts     int64 // event time, Unix milliseconds (0 when unknown)
}

// listState is whether a list holds a record.
type listState uint8

const (
	stateUnknown listState = iota
	stateIn
	stateOut
)

// after is where a list stands for a record once o is applied.
func after(o changes.Op) listState {
	if o == changes.Add {
		return stateIn
	}
	return stateOut
}

// before is where a vouched change says the list stood.
func before(c *changes.Change) listState {
	switch {
	case !c.Vouched:
		return stateUnknown
	case c.Op == changes.Add:
		return stateOut
	}
	return stateIn
}

// The reasons a window is flushed (the values of pinsync_flushes_total's
// reason label). A flight for a full window takes only its full side(s).
const (
	FlushFull     = "full"     // a side holds the per-request maximum
	FlushInterval = "interval" // the oldest change waited the flush interval
	FlushRevoke   = "revoke"   // the list's partition is being revoked
	FlushShutdown = "shutdown" // the process is shutting down
)

// Flight is one flush of a window in progress: the records it took out of
// the window and the bookkeeping needed to finish or undo it. Its records
// and figures are read by the one goroutine that sends it; Set.Finish ends
// it, once.
type Flight struct {
	w       *Window
	reason  string
	adds    []ident.Hash
	removes []ident.Hash
	meta    []entry // meta[i] belongs to adds[i] for i < len(adds), then to removes
	// oldest and urgent are the window's when the flight was taken: records
	// put back after a failure keep their age and urgency.
	oldest time.Time
	urgent bool
	cancel context.CancelFunc
	done   chan struct{}
}

// Records is the number of records the flight carries.
func (f *Flight) Records() int { return len(f.adds) + len(f.removes) }

// List is the list the flight writes to.
func (f *Flight) List() ListID { return f.w.key }

// Reason is why the flight was taken (FlushFull, …).
func (f *Flight) Reason() string { return f.reason }

// Adds and Removes are the records to add to the list and to remove from
// it. Record i of the flight (see Set.Finish) is Adds()[i] for i below
// len(Adds()), then Removes()[i-len(Adds())].
func (f *Flight) Adds() []ident.Hash    { return f.adds }
func (f *Flight) Removes() []ident.Hash { return f.removes }

// EventTime is the time of the event behind record i, in Unix
// milliseconds (0 when unknown).
func (f *Flight) EventTime(i int) int64 { return f.meta[i].ts }

// Cancel ends the flight's context: its upload stops. Finish still has to
// be called.
func (f *Flight) Cancel() { f.cancel() }

// Done is closed once the flight is finished.
func (f *Flight) Done() <-chan struct{} { return f.done }

// hash returns the record that meta[i] belongs to.
func (f *Flight) hash(i int) ident.Hash {
	if i < len(f.adds) {
		return f.adds[i]
	}
	return f.removes[i-len(f.adds)]
}

// Window holds the changes waiting for one list, the last change to each
// record winning (add then remove = remove). Its fields are guarded by its
// Set's lock: it is read and changed through the Set's methods only.
type Window struct {
	key     ListID
	entries entrySet
	adds    int
	removes int
	// next is the slot of entries where the next take starts looking, so
	// that a window holding more than a flight takes does not leave the
	// same records behind every time.
	next int
	// oldest is when the oldest change now in the window arrived.
	oldest  time.Time
	flight  *Flight
	retryAt time.Time
	fails   int
	urgent  bool
	// flushed is when a flight of this window last succeeded.
	flushed time.Time
	// mode says what becomes of the list's changes (see Mode).
	mode Mode
}

// Mode is what a window does with its list's changes.
type Mode uint8

const (
	// ModeSync keeps and flushes them.
	ModeSync Mode = iota
	// ModeDrop drops them as they arrive: the list is durably marked for
	// a rebuild from the profile state, which will hold them.
	ModeDrop
	// ModeHold keeps them without flushing while the list is rebuilt:
	// they go to the new list once it holds the state read after they
	// began to be kept. Where the new list stands for them is unknown.
	ModeHold
)

// Set is the set of windows of the lists a member of the list stage owns,
// with the count of buffered records. All methods are safe for concurrent
// use; changes are made under one mutex, taken once per record of the
// changes topic, and never held while calling out (a caller's func, a
// channel send). Pending counts are not kept here: the methods that move
// changes report them in a commit.Deltas for the caller to apply to its
// commit.Tracker once the set's lock is released.
type Set struct {
	mu sync.Mutex
	// byID holds the window of each list, indexed by list id.
	byID     []*Window
	max      int // per-request maximum records
	buffered int
	// maxBytes caps Bytes() (0: no cap); tableBytes is the memory of
	// every window's table.
	maxBytes   int64
	tableBytes int64
	// wake is signalled (non-blocking) when a window becomes full or urgent,
	// or a flight ends.
	wake chan struct{}
	// drained is closed and replaced whenever buffered records fall.
	drained chan struct{}
}

// New returns an empty set whose flights carry at most maxRecords adds
// and maxRecords removes, and whose records take at most maxBytes (0: no
// cap but WaitBelow's).
func New(maxRecords int, maxBytes int64) *Set {
	return &Set{max: maxRecords, maxBytes: maxBytes, wake: make(chan struct{}, 1), drained: make(chan struct{})}
}

// flightRecordBytes is what a buffered record may take besides its slot:
// its copy in a flight (the record and its entry).
const flightRecordBytes = int64(unsafe.Sizeof(ident.Hash{}) + unsafe.Sizeof(entry{}))

// inFlight is the number of records of w's flight (0 without one).
func (w *Window) inFlight() int {
	if w.flight == nil {
		return 0
	}
	return w.flight.Records()
}

// tableCost is what w's table counts against the byte cap: its array, or
// the array it would need if its flight's records came back (a failed
// flight puts them back), whichever is larger.
func (w *Window) tableCost() int64 {
	return max(w.entries.tableBytes(), w.entries.tableBytesWith(w.inFlight()))
}

// bytesLocked is the memory the windows hold for their records: every
// table (see tableCost), and room for each buffered record in a flight.
func (ws *Set) bytesLocked() int64 {
	return ws.tableBytes + int64(ws.buffered)*flightRecordBytes
}

// Drained returns the channel closed when buffered records next fall.
func (ws *Set) Drained() <-chan struct{} {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.drained
}

// Bytes is the memory the windows hold for their records: every table,
// with room for its flight's records to come back, and room for each
// buffered record in a flight. It is what the byte cap bounds.
func (ws *Set) Bytes() int64 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.bytesLocked()
}

// Wake is signalled (without blocking; one buffered signal) when a window
// becomes full or urgent, or a flight ends: a flush may be due.
func (ws *Set) Wake() <-chan struct{} { return ws.wake }

func (ws *Set) signal() {
	select {
	case ws.wake <- struct{}{}:
	default:
	}
}

// releaseLocked signals waiters that buffered records fell.
func (ws *Set) releaseLocked() {
	close(ws.drained)
	ws.drained = make(chan struct{})
}

// Add puts changes to list l, read in epoch pk, into its window; now is
// the arrival time used for the flush interval. The pending counts it moves
// go to d. It adds nothing and reports false when the changes might take
// the windows past their byte cap (as new records, each with a flight's
// worth of room, in the table they might grow), unless the windows hold no
// record at all: then nothing could free room, and they are taken.
func (ws *Set) Add(l ListID, cs []changes.Change, pk commit.Key, now time.Time, d *commit.Deltas) bool {
	if len(cs) == 0 {
		return true
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.lookup(l)
	if w.mode == ModeDrop {
		return true
	}
	table := w.tableCost()
	if ws.maxBytes > 0 && ws.buffered > 0 {
		need := max(w.entries.tableBytes(), w.entries.tableBytesWith(len(cs)+w.inFlight())) - table +
			int64(len(cs))*flightRecordBytes
		if ws.bytesLocked()+need > ws.maxBytes {
			return false
		}
	}
	defer func() { ws.tableBytes += w.tableCost() - table }()
	added := 0
	for i := range cs {
		c := &cs[i]
		b := before(c)
		if w.mode == ModeHold {
			b = stateUnknown
		}
		e, existed := w.entries.upsert(c.Hash)
		if existed {
			old := *e
			d.Add(old.pk, -1)
			w.count(old.op, -1)
			ws.buffered--
			if old.before != stateUnknown && b != stateUnknown && old.before == after(c.Op) {
				// Back where the list stands: nothing to send (add then
				// remove of a record never uploaded, or the reverse).
				w.entries.del(c.Hash)
				continue
			}
			b = old.before
		} else if w.entries.len() == 1 {
			// The window was empty.
			w.oldest = now
		}
		*e = entry{op: c.Op, before: b, pk: pk, ts: c.TS}
		w.count(c.Op, 1)
		ws.buffered++
		added++
		if w.adds == ws.max || w.removes == ws.max {
			ws.signal()
		}
	}
	d.Add(pk, added)
	return true
}

// lookup returns the window of list l, creating it on first use.
func (ws *Set) lookup(l ListID) *Window {
	if int(l) < len(ws.byID) {
		if w := ws.byID[l]; w != nil {
			return w
		}
	} else {
		ws.byID = append(ws.byID, make([]*Window, int(l)+1-len(ws.byID))...)
	}
	w := &Window{key: l}
	ws.byID[l] = w
	return w
}

// eachLocked calls f for every window.
func (ws *Set) eachLocked(f func(w *Window)) {
	for _, w := range ws.byID {
		if w != nil {
			f(w)
		}
	}
}

func (w *Window) count(o changes.Op, n int) {
	if o == changes.Add {
		w.adds += n
	} else {
		w.removes += n
	}
}

// calls is how many Pinterest calls flushing w now would take.
func (w *Window) calls() int {
	n := 0
	if w.adds > 0 {
		n++
	}
	if w.removes > 0 {
		n++
	}
	return n
}

// Due returns the windows to flush at now, most urgent first: windows asked
// to flush (revoke, shutdown) first, then full ones, then those whose oldest
// change has waited interval, oldest first. It takes no more than budget
// calls and free flights; the others keep filling. The first window is
// taken with one call of budget even if it needs two (adds and removes):
// a share's bucket may never hold two, and the flight's second call waits
// for the budget like any request.
func (ws *Set) Due(now time.Time, interval time.Duration, budget float64, free int) []*Window {
	due, _ := ws.Schedule(now, interval, budget, free)
	return due
}

// Schedule is Due, and also reports whether a window due now was left for
// want of budget (not of flights).
func (ws *Set) Schedule(now time.Time, interval time.Duration, budget float64, free int) (due []*Window, short bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var cands []*Window
	ws.eachLocked(func(w *Window) {
		if w.flight != nil || w.entries.len() == 0 || now.Before(w.retryAt) || w.mode != ModeSync {
			return
		}
		full := w.adds >= ws.max || w.removes >= ws.max
		if w.urgent || full || now.Sub(w.oldest) >= interval {
			cands = append(cands, w)
		}
	})
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.urgent != b.urgent {
			return a.urgent
		}
		af, bf := a.adds >= ws.max || a.removes >= ws.max, b.adds >= ws.max || b.removes >= ws.max
		if af != bf {
			return af
		}
		if !a.oldest.Equal(b.oldest) {
			return a.oldest.Before(b.oldest)
		}
		return a.entries.len() > b.entries.len()
	})
	for _, w := range cands {
		c := float64(w.calls())
		if len(due) >= free {
			break
		}
		if budget < 1 || (c > budget && len(due) > 0) {
			return due, true
		}
		budget -= c
		due = append(due, w)
	}
	return due, false
}

// Kind reports whether w is asked to flush now and whether it is full.
func (ws *Set) Kind(w *Window) (urgent, full bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return w.urgent, w.adds >= ws.max || w.removes >= ws.max
}

// Take moves up to the per-request maximum of adds and of removes out of w
// into a new flight. The caller got w from Due.
func (ws *Set) Take(w *Window, reason string, parent context.Context) (*Flight, context.Context) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	table := w.tableCost()
	defer func() { ws.tableBytes += w.tableCost() - table }()
	ctx, cancel := context.WithCancel(parent)
	f := &Flight{w: w, reason: reason, oldest: w.oldest, urgent: w.urgent, cancel: cancel, done: make(chan struct{})}
	// A flush for a full side sends only the full side(s): the other keeps
	// filling (fewer, fuller calls).
	full := reason == FlushFull
	takeAdds := !full || w.adds >= ws.max
	takeRemoves := !full || w.removes >= ws.max
	// Sized exactly: what a flight holds is counted as flightRecordBytes
	// per record.
	var na, nr int
	if takeAdds {
		na = min(w.adds, ws.max)
	}
	if takeRemoves {
		nr = min(w.removes, ws.max)
	}
	f.adds, f.meta = make([]ident.Hash, 0, na), make([]entry, 0, na+nr)
	removes := make([]ident.Hash, 0, nr)
	rmeta := make([]entry, 0, nr)
	// Collect, then delete: deleting moves entries within the set. The
	// walk starts where the last one stopped, so that what a flight leaves
	// behind goes in the next.
	w.next = w.entries.eachFrom(w.next, func(h ident.Hash, e entry) bool {
		if e.op == changes.Add {
			if takeAdds && len(f.adds) < ws.max {
				f.adds = append(f.adds, h)
				f.meta = append(f.meta, e)
			}
		} else if takeRemoves && len(removes) < ws.max {
			removes = append(removes, h)
			rmeta = append(rmeta, e)
		}
		return (takeAdds && len(f.adds) < ws.max) || (takeRemoves && len(removes) < ws.max)
	})
	// The table keeps its size while the flight is out: if it fails, its
	// records come back, and the byte cap counted them in it.
	if len(f.adds)+len(removes) == w.entries.len() {
		w.entries.clearKeep()
	} else {
		for _, h := range f.adds {
			w.entries.delKeep(h)
		}
		for _, h := range removes {
			w.entries.delKeep(h)
		}
	}
	w.count(changes.Add, -len(f.adds))
	w.count(changes.Remove, -len(removes))
	f.removes = removes
	f.meta = append(f.meta, rmeta...)
	// What stays behind keeps the window's age and urgency: it is due when
	// the interval or the per-request maximum says so, or at once (after
	// this flight) when the window was asked to flush.
	w.urgent = w.urgent && w.entries.len() > 0
	w.flight = f
	return f, ctx
}

// Finish ends a flight. ok[i] reports whether record i reached Pinterest (or
// was dead-lettered); the others go back into the window unless a newer
// change to the same record arrived meanwhile. A failed request may or may
// not have reached Pinterest, so where the list stands for its records is
// no longer known: neither they nor a newer change to them can cancel. The
// pending counts it releases go to d. It returns the records finished.
func (ws *Set) Finish(f *Flight, ok func(i int) bool, failed bool, now time.Time, backoff func(fails int) time.Duration, d *commit.Deltas) int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := f.w
	table := w.tableCost()
	defer func() { ws.tableBytes += w.tableCost() - table }()
	done := 0
	for i, e := range f.meta {
		dropped := e.pk.P.Dropped()
		// A list marked for a rebuild takes back nothing: the rebuild
		// holds it.
		if ok(i) || dropped || w.mode == ModeDrop {
			if !dropped {
				d.Add(e.pk, -1)
			}
			ws.buffered--
			done++
			continue
		}
		p, newer := w.entries.upsert(f.hash(i))
		if newer {
			p.before = stateUnknown
			d.Add(e.pk, -1)
			ws.buffered--
			continue
		}
		if w.entries.len() == 1 || f.oldest.Before(w.oldest) {
			// The window was empty, or holds younger changes only.
			w.oldest = f.oldest
		}
		e.before = stateUnknown
		*p = e
		w.count(e.op, 1)
		w.urgent = w.urgent || f.urgent
	}
	w.flight = nil
	w.entries.tidy()
	if failed {
		w.fails++
		w.retryAt = now.Add(backoff(w.fails))
	} else {
		w.fails = 0
		w.retryAt = time.Time{}
		w.flushed = now
	}
	f.cancel()
	close(f.done)
	ws.releaseLocked()
	ws.signal()
	return done
}

// MarkUrgent asks every window holding changes of the given partitions (all
// windows when parts is nil) to flush now, and returns the flights in
// progress that hold such changes.
func (ws *Set) MarkUrgent(parts map[*commit.Partition]bool) []*Flight {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var flights []*Flight
	ws.eachLocked(func(w *Window) {
		if parts == nil || w.holds(parts) {
			if w.entries.len() > 0 {
				w.urgent = true
				w.retryAt = time.Time{}
			}
		}
		if w.flight != nil && (parts == nil || w.flight.holds(parts)) {
			flights = append(flights, w.flight)
		}
	})
	ws.signal()
	return flights
}

// holds reports whether w holds a change of the given partitions.
func (w *Window) holds(parts map[*commit.Partition]bool) bool {
	held := false
	w.entries.each(func(_ ident.Hash, e entry) bool {
		held = parts[e.pk.P]
		return !held
	})
	return held
}

func (f *Flight) holds(parts map[*commit.Partition]bool) bool {
	for _, e := range f.meta {
		if parts[e.pk.P] {
			return true
		}
	}
	return false
}

// Drop removes every change of the given partitions from the windows
// (revoked past the deadline, or lost) and returns the flights in progress
// that hold some, in the same critical section: no flight holding them can
// start afterwards. The partitions must already be marked dropped, so that
// flights in progress do not put them back.
func (ws *Set) Drop(parts map[*commit.Partition]bool) []*Flight {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	var flights []*Flight
	var gone []ident.Hash
	ws.eachLocked(func(w *Window) {
		table := w.tableCost()
		defer func() { ws.tableBytes += w.tableCost() - table }()
		// Collect, then delete: deleting moves entries within the set.
		gone = gone[:0]
		w.entries.each(func(h ident.Hash, e entry) bool {
			if parts[e.pk.P] {
				gone = append(gone, h)
				w.count(e.op, -1)
			}
			return true
		})
		if len(gone) == w.entries.len() {
			w.entries.reset()
		} else {
			for _, h := range gone {
				w.entries.del(h)
			}
		}
		ws.buffered -= len(gone)
		if w.flight != nil && w.flight.holds(parts) {
			flights = append(flights, w.flight)
		}
	})
	ws.releaseLocked()
	return flights
}

// WaitBelow blocks until fewer than limit records are buffered, and the
// windows are below their byte cap, or ctx ends, calling paused once if it
// has to wait. It reports whether it waited.
func (ws *Set) WaitBelow(ctx context.Context, limit int, paused func()) (waited bool, err error) {
	for {
		ws.mu.Lock()
		n, ch := ws.buffered, ws.drained
		full := ws.maxBytes > 0 && ws.buffered > 0 && ws.bytesLocked() >= ws.maxBytes
		ws.mu.Unlock()
		if n < limit && !full {
			return waited, nil
		}
		if !waited {
			paused()
		}
		waited = true
		select {
		case <-ch:
		case <-ctx.Done():
			return waited, ctx.Err()
		}
	}
}

// Buffered reports the records waiting in windows or in flight.
func (ws *Set) Buffered() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.buffered
}

// Stat is what the status shows of one window.
type Stat struct {
	Pending  int // records waiting or in flight
	Flushed  time.Time
	InFlight bool
}

// Stats reports each window's figures, by list id.
func (ws *Set) Stats() map[ListID]Stat {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	out := make(map[ListID]Stat, len(ws.byID))
	ws.eachLocked(func(w *Window) {
		st := Stat{Pending: w.entries.len(), Flushed: w.flushed, InFlight: w.flight != nil}
		if w.flight != nil {
			st.Pending += w.flight.Records()
		}
		out[w.key] = st
	})
	return out
}

// PendingCalls is how many write calls the changes waiting in windows
// (not those in flight) need at least: one for a window's adds, one for
// its removes.
func (ws *Set) PendingCalls() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	n := 0
	ws.eachLocked(func(w *Window) { n += w.calls() })
	return n
}

// Empty reports whether no change waits or flies.
func (ws *Set) Empty() bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.buffered == 0
}

// SetMode sets what list l's window does with its changes. Switching to
// ModeDrop drops what it holds (not what a flight holds: the flight's
// finish does); ModeHold and ModeSync keep it. The pending counts released
// go to d.
func (ws *Set) SetMode(l ListID, m Mode, d *commit.Deltas) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := ws.lookup(l)
	w.mode = m
	switch m {
	case ModeDrop:
		table := w.tableCost()
		defer func() { ws.tableBytes += w.tableCost() - table }()
		w.entries.each(func(_ ident.Hash, e entry) bool {
			d.Add(e.pk, -1)
			return true
		})
		ws.buffered -= w.entries.len()
		w.entries.reset()
		w.adds, w.removes = 0, 0
		w.retryAt, w.fails = time.Time{}, 0
		ws.releaseLocked()
	case ModeSync:
		w.retryAt, w.fails = time.Time{}, 0
		ws.signal()
	}
}
