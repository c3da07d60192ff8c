package commit

import "slices"

// Epoch is a sealed epoch of an input partition in the profile stage:
// every record before Next has been applied, its changes and the state
// they leave are committed to Kafka (one transaction), and Marks says
// where the changes landed.
type Epoch struct {
	Next        int64
	LeaderEpoch int32
	// Changes is the number of list changes the epoch wrote.
	Changes int
	// Marks[c] is the offset after the last change this partition has
	// written to changes partition c by the end of the epoch (-1: none
	// yet). Marks only grow from one epoch to the next.
	Marks []int64
}

// Passed reports whether a list stage that committed downstream[c] in
// every changes partition c has read, and uploaded, every change of e.
func (e *Epoch) Passed(downstream []int64) bool {
	for c, m := range e.Marks {
		if m < 0 {
			continue
		}
		if c >= len(downstream) || downstream[c] < m {
			return false
		}
	}
	return true
}

// Queue is the sealed epochs of one input partition not yet committed, in
// order. It is not safe for concurrent use.
type Queue struct {
	epochs  []Epoch
	changes int
}

// Push appends a sealed epoch. Epochs must be pushed in offset order. An
// epoch with the same marks as the newest one replaces it (the list stage
// passes both at once), so that epochs without changes, however many,
// take no room.
func (q *Queue) Push(e Epoch) {
	q.changes += e.Changes
	if n := len(q.epochs); n > 0 && slices.Equal(q.epochs[n-1].Marks, e.Marks) {
		e.Changes += q.epochs[n-1].Changes
		q.epochs[n-1] = e
		return
	}
	q.epochs = append(q.epochs, e)
}

// Pending is the number of changes of the epochs in the queue: written to
// the changes topic, not yet committed past by the list stage.
func (q *Queue) Pending() int { return q.changes }

// Len is the number of epochs in the queue.
func (q *Queue) Len() int { return len(q.epochs) }

// Passed pops every epoch from the front that the list stage has passed
// (see Epoch.Passed) and returns the newest of them; ok is false when none
// was.
func (q *Queue) Passed(downstream []int64) (newest Epoch, ok bool) {
	n := 0
	for n < len(q.epochs) && q.epochs[n].Passed(downstream) {
		newest, ok = q.epochs[n], true
		q.changes -= q.epochs[n].Changes
		n++
	}
	if n > 0 {
		clear(q.epochs[:n])
		q.epochs = q.epochs[n:]
	}
	return newest, ok
}

// Newest returns the last epoch pushed; ok is false when the queue is
// empty.
func (q *Queue) Newest() (Epoch, bool) {
	if len(q.epochs) == 0 {
		return Epoch{}, false
	}
	return q.epochs[len(q.epochs)-1], true
}
