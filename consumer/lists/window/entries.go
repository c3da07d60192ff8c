package window

import (
	"encoding/binary"
	"math/bits"
	"unsafe"

	"github.com/pinsync/pinsync/schemas/ident"
)

// entrySet maps records to their entries in a window: a hash table
// specialised for 32-byte records, cheaper than a Go map on them: one probe
// per change, a home slot from one multiplication rather than a hash of the
// 32 bytes, and the record with its entry in one 64-byte slot.
//
// slots is a power-of-two number of slots probed linearly, each holding a
// record and its entry, empty when the entry's op is 0 (ops start at 1).
// Deletion shifts the following slots of the probe run back (no
// tombstones). The load is kept at most 3/4; the slots double when full and
// are rebuilt smaller when deletions leave few entries, so iteration costs
// about the entries. An emptied set releases its array, remembering only
// its size: a window flushed whole keeps no large array, and when it fills
// again it does not grow from the smallest size again.
//
// The zero entrySet is empty and ready to use. It is not safe for
// concurrent use.
type entrySet struct {
	slots []entrySlot
	n     int
	// hint is the size of the array to allocate on next use (0: the
	// smallest): what the entries the set held when last emptied needed.
	hint int
}

// entrySlot is one slot of an entrySet: a record and its entry, empty when
// e.op is 0.
type entrySlot struct {
	hash ident.Hash
	e    entry
}

const (
	// entryMinSlots is the number of slots of a set's first array, and the
	// smallest it shrinks to.
	entryMinSlots = 16
	// entryShrinkSlots is the size above which a set less than 1/8 full is
	// rebuilt smaller.
	entryShrinkSlots = 1024
)

// entryHome is the home slot of record h in a set of mask+1 slots: its four
// words folded by xor, then spread by one multiplication. SHA-256 digests
// would need no more than their first word, but a 64-hex value passes
// through ident unhashed, so records may differ in a counter anywhere (or
// only in their last word): spread over the slots, they do not pile up in
// one probe run that every change would walk.
func entryHome(h *ident.Hash, mask uint64) uint64 {
	le := binary.LittleEndian
	x := le.Uint64(h[:8]) ^ le.Uint64(h[8:16]) ^ le.Uint64(h[16:24]) ^ le.Uint64(h[24:])
	hi, lo := bits.Mul64(x, 0x9e3779b97f4a7c15)
	return (hi ^ lo) & mask
}

// probe returns the slot holding h and true, or the empty slot that ends
// h's probe run and false. s must have slots.
func (s *entrySet) probe(h *ident.Hash) (int, bool) {
	mask := uint64(len(s.slots) - 1)
	for i := entryHome(h, mask); ; i = (i + 1) & mask {
		sl := &s.slots[i]
		if sl.e.op == 0 {
			return int(i), false
		}
		if sameHash(&sl.hash, h) {
			return int(i), true
		}
	}
}

// sameHash is a == b in four word compares, the first almost always
// deciding, where == on the arrays calls the runtime.
func sameHash(a, b *ident.Hash) bool {
	le := binary.LittleEndian
	return le.Uint64(a[:8]) == le.Uint64(b[:8]) &&
		le.Uint64(a[8:16]) == le.Uint64(b[8:16]) &&
		le.Uint64(a[16:24]) == le.Uint64(b[16:24]) &&
		le.Uint64(a[24:]) == le.Uint64(b[24:])
}

// len returns the number of entries.
func (s *entrySet) len() int { return s.n }

// upsert returns the entry of h and true when h is present; otherwise it
// claims a slot for h and returns its zero entry and false. In that case
// the caller must store an entry with a non-zero op through the pointer
// before any other use of s. The pointer is valid until s is next
// modified.
func (s *entrySet) upsert(h ident.Hash) (e *entry, existed bool) {
	if s.slots == nil {
		s.slots = make([]entrySlot, max(s.hint, entryMinSlots))
	}
	i, ok := s.probe(&h)
	if ok {
		return &s.slots[i].e, true
	}
	if (s.n+1)*4 > len(s.slots)*3 {
		s.resize(2 * len(s.slots))
		i, _ = s.probe(&h)
	}
	s.n++
	s.slots[i].hash = h
	return &s.slots[i].e, false
}

// del removes h, reporting whether it was present. It may shrink the set.
func (s *entrySet) del(h ident.Hash) bool {
	if !s.delKeep(h) {
		return false
	}
	s.tidy()
	return true
}

// delKeep is del without shrinking: the array stays for entries to come
// back (a flight's, if it fails).
func (s *entrySet) delKeep(h ident.Hash) bool {
	if s.n == 0 {
		return false
	}
	i, ok := s.probe(&h)
	if !ok {
		return false
	}
	s.unslot(uint64(i))
	s.n--
	return true
}

// tidy releases an empty set's array, and rebuilds a large one that
// deletions left few entries in smaller.
func (s *entrySet) tidy() {
	switch {
	case s.n == 0:
		if s.slots != nil {
			s.reset()
		}
	case len(s.slots) > entryShrinkSlots && s.n*8 < len(s.slots):
		s.resize(entryFit(s.n))
	}
}

// clearKeep removes every entry, keeping the array.
func (s *entrySet) clearKeep() {
	clear(s.slots)
	s.n = 0
}

// unslot empties slot i by backward-shift deletion: every following slot
// of the probe run that may move back toward its home fills the hole.
func (s *entrySet) unslot(i uint64) {
	mask := uint64(len(s.slots) - 1)
	for j := (i + 1) & mask; s.slots[j].e.op != 0; j = (j + 1) & mask {
		home := entryHome(&s.slots[j].hash, mask)
		// The entry at j may fill the hole at i when its home is not in
		// the cyclic range (i, j].
		if (j-home)&mask >= (j-i)&mask {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = entrySlot{}
}

// entryFit is the number of slots a set of n entries is rebuilt with: at
// most half full, so that it neither grows nor shrinks again soon.
func entryFit(n int) int {
	size := entryMinSlots
	for size < 2*n {
		size *= 2
	}
	return size
}

// resize moves the entries into a new array of size slots (a power of two
// with room for them).
func (s *entrySet) resize(size int) {
	old := s.slots
	s.slots = make([]entrySlot, size)
	mask := uint64(size - 1)
	for k := range old {
		sl := &old[k]
		if sl.e.op == 0 {
			continue
		}
		i := entryHome(&sl.hash, mask)
		for s.slots[i].e.op != 0 {
			i = (i + 1) & mask
		}
		s.slots[i] = *sl
	}
}

// reset removes every entry. It releases the array unless it is the
// smallest, remembering the size the entries needed.
func (s *entrySet) reset() {
	if len(s.slots) > entryMinSlots {
		s.hint = entryMinSlots
		for s.n*4 > s.hint*3 {
			s.hint *= 2
		}
		s.slots = nil
	} else {
		clear(s.slots)
	}
	s.n = 0
}

// each calls f with every entry, in slot order, until f returns false. f
// must not modify s: deleting during the walk could move an entry not yet
// visited into a slot already passed. Collect first, then delete.
func (s *entrySet) each(f func(h ident.Hash, e entry) bool) {
	s.eachFrom(0, f)
}

// eachFrom is each starting at slot start (taken modulo the size) and
// wrapping around. It returns the slot after the one where f returned
// false, or start when every entry was visited: a cursor for a later walk
// to go on from.
func (s *entrySet) eachFrom(start int, f func(h ident.Hash, e entry) bool) int {
	if s.n == 0 {
		return start
	}
	mask := len(s.slots) - 1
	for k := range len(s.slots) {
		i := (start + k) & mask
		sl := &s.slots[i]
		if sl.e.op != 0 && !f(sl.hash, sl.e) {
			return (i + 1) & mask
		}
	}
	return start
}

// slotBytes is the memory of one slot of a table.
const slotBytes = int64(unsafe.Sizeof(entrySlot{}))

// tableBytes is the memory of s's array.
func (s *entrySet) tableBytes() int64 { return int64(len(s.slots)) * slotBytes }

// tableBytesWith is the memory s's array would take with k more entries.
func (s *entrySet) tableBytesWith(k int) int64 {
	if s.n+k == 0 {
		return s.tableBytes()
	}
	size := len(s.slots)
	if size == 0 {
		size = max(s.hint, entryMinSlots)
	}
	for (s.n+k)*4 > size*3 {
		size *= 2
	}
	return int64(size) * slotBytes
}
