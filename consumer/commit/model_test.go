package commit

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The model of both stages that TestCommitRuleHoldsEndToEnd drives with
// the real Tracker and Queue.
//
// Profile stage: input partitions whose records each change some records
// of some lists; every transaction writes its changes to the changes
// partition of their list and seals an epoch in the partition's Queue.
// List stage: one reader per changes partition putting changes into
// windows (the last change to a record wins) and sealing epochs in the
// Tracker; flights take a window's changes and succeed or fail; commits
// take the Tracker's completed epochs. Input commits take the Queue's
// passed epochs against the list stage's commits. Either stage may crash:
// the list stage then reads again from its commits, the profile stage
// loses its open transaction and restores an epoch standing for
// everything written.

const (
	inputParts   = 3
	changesParts = 2
	modelLists   = 4
	recordsPer   = 5 // records (hashes) per input partition and list
)

// key is one record of one list.
type key struct {
	list, rec int
}

// chg is a change as the changes topic holds it.
type chg struct {
	k     key
	add   bool
	input int   // input partition
	off   int64 // input offset of the event that made it
}

type modelEntry struct {
	c  chg
	pk Key
}

type modelFlight struct {
	list    int
	entries []modelEntry
}

type listStage struct {
	tr      *Tracker
	parts   []*Partition
	read    []int64 // next offset to read per changes partition
	windows []map[key]modelEntry
	flights map[int]*modelFlight // by list
	d       Deltas
}

type model struct {
	t   *testing.T
	rng *rand.Rand

	changes [changesParts][]chg // the changes topic (committed transactions only)

	// profile stage
	next      [inputParts]int64 // next input offset
	txn       [inputParts][]chg // the open transaction's changes
	queues    [inputParts]*Queue
	committed [inputParts]int64 // input commits

	ls            *listStage
	listCommitted [changesParts]int64

	pinterest map[key]bool
	// latest is each record's last change: its add and its input offset.
	latest map[key]chg
}

func newModel(t *testing.T, seed uint64) *model {
	m := &model{t: t, rng: rand.New(rand.NewPCG(seed, 5)), pinterest: map[key]bool{}, latest: map[key]chg{}}
	for p := range m.queues {
		m.queues[p] = &Queue{}
		m.committed[p] = -1
	}
	for c := range m.listCommitted {
		m.listCommitted[c] = -1
	}
	m.startListStage()
	return m
}

func (m *model) startListStage() {
	ls := &listStage{tr: NewTracker(), flights: map[int]*modelFlight{}}
	for c := range changesParts {
		ls.parts = append(ls.parts, ls.tr.Assign("changes", int32(c), m.listCommitted[c]))
		ls.read = append(ls.read, max(m.listCommitted[c], 0))
	}
	for range modelLists {
		ls.windows = append(ls.windows, map[key]modelEntry{})
	}
	m.ls = ls
}

// event applies one input record of partition p: a few changes.
func (m *model) event(p int) {
	off := m.next[p]
	m.next[p]++
	for n := m.rng.IntN(3); n > 0; n-- {
		// Records are owned by one input partition (one owner per
		// identifier): record numbers are spread by partition.
		k := key{list: m.rng.IntN(modelLists), rec: p*recordsPer + m.rng.IntN(recordsPer)}
		m.txn[p] = append(m.txn[p], chg{k: k, add: m.rng.IntN(2) == 0, input: p, off: off})
	}
}

// endTxn commits partition p's open transaction: its changes land in the
// changes topic and an epoch is sealed with where they landed.
func (m *model) endTxn(p int) {
	marks := make([]int64, changesParts)
	for c := range marks {
		marks[c] = -1
	}
	if e, ok := m.queues[p].Newest(); ok {
		copy(marks, e.Marks)
	}
	for _, c := range m.txn[p] {
		part := c.k.list % changesParts
		m.changes[part] = append(m.changes[part], c)
		marks[part] = int64(len(m.changes[part]))
		m.latest[c.k] = c
	}
	m.queues[p].Push(Epoch{Next: m.next[p], Changes: len(m.txn[p]), Marks: marks})
	m.txn[p] = nil
}

// crashProfile loses p's open transaction and queue; the next owner
// restores and seals an epoch at the restored position that waits for
// everything in the changes topic.
func (m *model) crashProfile(p int) {
	var pos int64
	if e, ok := m.queues[p].Newest(); ok {
		pos = e.Next
	} else {
		pos = max(m.committed[p], 0)
	}
	m.next[p] = pos
	m.txn[p] = nil
	m.queues[p] = &Queue{}
	marks := make([]int64, changesParts)
	for c := range marks {
		marks[c] = -1
		if n := len(m.changes[c]); n > 0 {
			marks[c] = int64(n)
		}
	}
	m.queues[p].Push(Epoch{Next: pos, Marks: marks})
}

// readChanges reads a few changes of partition c into the windows.
func (m *model) readChanges(c int) {
	ls := m.ls
	for n := m.rng.IntN(4); n > 0 && ls.read[c] < int64(len(m.changes[c])); n-- {
		ch := m.changes[c][ls.read[c]]
		ls.read[c]++
		pk := ls.tr.Open(ls.parts[c])
		w := ls.windows[ch.k.list]
		if old, ok := w[ch.k]; ok {
			ls.d.Add(old.pk, -1)
		}
		w[ch.k] = modelEntry{c: ch, pk: pk}
		ls.d.Add(pk, 1)
	}
	ls.tr.Apply(&ls.d)
	ls.d.Reset()
}

func (m *model) seal(c int) {
	ls := m.ls
	ls.tr.Seal(ls.parts[c], ls.read[c], 0)
}

// takeFlight moves every change of a window without a flight into one.
func (m *model) takeFlight(list int) {
	ls := m.ls
	if ls.flights[list] != nil || len(ls.windows[list]) == 0 {
		return
	}
	f := &modelFlight{list: list}
	for _, e := range ls.windows[list] {
		f.entries = append(f.entries, e)
	}
	slices.SortFunc(f.entries, func(a, b modelEntry) int { return a.c.k.rec - b.c.k.rec })
	clear(ls.windows[list])
	ls.flights[list] = f
}

// endFlight ends a list's flight: it succeeds or fails; a failed change
// goes back unless a newer one is in the window.
func (m *model) endFlight(list int, ok bool) {
	ls := m.ls
	f := ls.flights[list]
	if f == nil {
		return
	}
	delete(ls.flights, list)
	for _, e := range f.entries {
		if ok {
			m.pinterest[e.c.k] = e.c.add
			ls.d.Add(e.pk, -1)
			continue
		}
		if _, newer := ls.windows[list][e.c.k]; newer {
			ls.d.Add(e.pk, -1)
			continue
		}
		ls.windows[list][e.c.k] = e
	}
	ls.tr.Apply(&ls.d)
	ls.d.Reset()
}

// commitLists commits the list stage's completed epochs.
func (m *model) commitLists() {
	for c, p := range m.ls.parts {
		if mk := m.ls.tr.Completed(p); mk != nil {
			m.listCommitted[c] = mk.Next
			p.SetCommitted(mk.Next, 0)
		}
	}
}

// commitInputs commits the input offsets the list stage has passed.
func (m *model) commitInputs() {
	for p, q := range m.queues {
		if e, ok := q.Passed(m.listCommitted[:]); ok {
			m.committed[p] = max(m.committed[p], e.Next)
		}
	}
}

// crashLists loses the list stage's windows and flights (a flight in
// progress may or may not have reached Pinterest); it reads again from
// its commits.
func (m *model) crashLists() {
	for list, f := range m.ls.flights {
		if m.rng.IntN(2) == 0 {
			for _, e := range f.entries {
				m.pinterest[e.c.k] = e.c.add
			}
		}
		delete(m.ls.flights, list)
	}
	m.startListStage()
}

// check asserts the rule: every record whose last change came from an
// input record below that partition's commit is at Pinterest as that
// change says.
func (m *model) check(step int) {
	for k, c := range m.latest {
		if c.off < m.committed[c.input] && m.pinterest[k] != c.add {
			m.t.Fatalf("step %d: input partition %d committed %d, but record %v's last change (add %v, from offset %d) is not at Pinterest",
				step, c.input, m.committed[c.input], k, c.add, c.off)
		}
	}
}

// TestCommitRuleHoldsEndToEnd drives the model with random events,
// transactions, reads, flights that succeed or fail, commits and crashes
// of either stage, and checks the commit rule after every step; then it
// lets everything drain and checks that every input offset is committed
// and Pinterest holds every record's last change.
func TestCommitRuleHoldsEndToEnd(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			m := newModel(t, seed)
			for step := 0; step < 4000; step++ {
				switch r := m.rng.IntN(100); {
				case r < 30:
					m.event(m.rng.IntN(inputParts))
				case r < 40:
					m.endTxn(m.rng.IntN(inputParts))
				case r < 60:
					m.readChanges(m.rng.IntN(changesParts))
				case r < 67:
					m.seal(m.rng.IntN(changesParts))
				case r < 77:
					m.takeFlight(m.rng.IntN(modelLists))
				case r < 87:
					m.endFlight(m.rng.IntN(modelLists), m.rng.IntN(3) > 0)
				case r < 92:
					m.commitLists()
				case r < 97:
					m.commitInputs()
				case r < 98:
					m.crashLists()
				default:
					m.crashProfile(m.rng.IntN(inputParts))
				}
				m.check(step)
			}
			// Drain: end every transaction, read everything, flush every
			// window successfully, commit.
			for p := range inputParts {
				m.endTxn(p)
			}
			for round := 0; ; round++ {
				if round > 1000 {
					t.Fatal("the model never drained")
				}
				for c := range changesParts {
					for m.ls.read[c] < int64(len(m.changes[c])) {
						m.readChanges(c)
					}
					m.seal(c)
				}
				for l := range modelLists {
					m.endFlight(l, true)
					m.takeFlight(l)
					m.endFlight(l, true)
				}
				m.commitLists()
				m.commitInputs()
				m.check(-1)
				done := true
				for p := range inputParts {
					if m.committed[p] != m.next[p] || m.queues[p].Len() != 0 {
						done = false
					}
				}
				if done {
					break
				}
			}
			for k, c := range m.latest {
				if m.pinterest[k] != c.add {
					t.Fatalf("after draining, record %v is not at Pinterest as its last change says", k)
				}
			}
		})
	}
}

// TestQueuePassesEpochsInOrder: an epoch is passed only when every changes
// partition it wrote to is committed past its mark, and never before an
// earlier one.
func TestQueuePassesEpochsInOrder(t *testing.T) {
	var q Queue
	q.Push(Epoch{Next: 10, Changes: 3, Marks: []int64{5, -1}})
	q.Push(Epoch{Next: 20, Changes: 2, Marks: []int64{5, 7}})
	q.Push(Epoch{Next: 30, Changes: 0, Marks: []int64{5, 7}})
	if q.Pending() != 5 {
		t.Fatalf("pending %d, want 5", q.Pending())
	}
	if _, ok := q.Passed([]int64{4, 100}); ok {
		t.Fatal("passed although partition 0 is committed below the first epoch's mark")
	}
	if e, ok := q.Passed([]int64{5, -1}); !ok || e.Next != 10 || q.Pending() != 2 {
		t.Fatalf("got %v %v, pending %d; want the first epoch only", e, ok, q.Pending())
	}
	if e, ok := q.Passed([]int64{5, 7}); !ok || e.Next != 30 || q.Len() != 0 || q.Pending() != 0 {
		t.Fatalf("got %v %v, %d left; want the newest of both", e, ok, q.Len())
	}
}
