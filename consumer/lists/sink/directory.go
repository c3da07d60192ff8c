package sink

import (
	"sync"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
)

// list is what the sink knows of one list: its key, where it lives and,
// once resolved, its Pinterest ids and figures. Its key, id and partition
// never change; the rest is read and changed through its methods, under
// its own lock.
type list struct {
	id        window.ListID
	key       changes.List
	partition int32

	mu     sync.Mutex
	header changes.Header
	pids   listIDs
	size   int64
	status string
	// listCreated is when Pinterest created the list pids.listID names
	// (zero until the audience poll has read it).
	listCreated time.Time
	// added and removed count the records this member's writes took.
	added, removed int64
	// generation and retired are the registry's: the list's rebuilds,
	// and the customer lists its earlier generations used.
	generation int
	retired    []string
	// building says pids.listID is a rebuild's list, still being filled:
	// the list's changes go to it, its audience follows the old list.
	building bool
}

// listIDs are a list's Pinterest ids and name.
type listIDs struct {
	name, listID, audienceID string
}

func (li *list) adAccount() string {
	li.mu.Lock()
	defer li.mu.Unlock()
	return li.header.AdAccount
}

// registryKey is li's key in the list registry.
func (li *list) registryKey() control.ListKey {
	return control.ListKey{AdAccount: li.adAccount(), Audience: li.key.Audience, Type: li.key.Type}
}

// displayName is the audience's display name, or its key when no record
// carried one.
func (li *list) displayName() string {
	li.mu.Lock()
	defer li.mu.Unlock()
	if li.header.Name != "" {
		return li.header.Name
	}
	return li.key.Audience
}

// fillName sets the audience's display name if none is known yet.
func (li *list) fillName(name string) {
	li.mu.Lock()
	defer li.mu.Unlock()
	if li.header.Name == "" {
		li.header.Name = name
	}
}

func (li *list) ids() listIDs {
	li.mu.Lock()
	defer li.mu.Unlock()
	return li.pids
}

func (li *list) setIDs(ids listIDs) {
	li.mu.Lock()
	defer li.mu.Unlock()
	if ids.listID != li.pids.listID {
		li.listCreated = time.Time{}
	}
	li.pids = ids
}

func (li *list) setBuilding(b bool) {
	li.mu.Lock()
	defer li.mu.Unlock()
	li.building = b
}

func (li *list) isBuilding() bool {
	li.mu.Lock()
	defer li.mu.Unlock()
	return li.building
}

// forget drops what the member knew of the list at Pinterest: when it owns
// the list again (its partition comes back), it takes the list's ids from
// the registry as they stand then. Another owner may have rebuilt the list
// meanwhile (a new customer list, the old one retired), and writing on to
// the ids held here would write to the retired list.
func (li *list) forget() {
	li.mu.Lock()
	defer li.mu.Unlock()
	li.pids = listIDs{}
	li.size, li.status, li.listCreated = 0, "", time.Time{}
	li.added, li.removed = 0, 0
	li.generation, li.retired, li.building = 0, nil, false
}

// setGeneration records the registry's count of the list's rebuilds and
// the customer lists its earlier generations used.
func (li *list) setGeneration(generation int, retired []string) {
	li.mu.Lock()
	defer li.mu.Unlock()
	li.generation, li.retired = generation, retired
}

// created returns when Pinterest created the list's customer list (zero:
// not known yet).
func (li *list) created() time.Time {
	li.mu.Lock()
	defer li.mu.Unlock()
	return li.listCreated
}

// creationUnknown returns the list's ad account and customer list id when
// it is not known yet when Pinterest created that list.
func (li *list) creationUnknown() (acct, listID string, unknown bool) {
	li.mu.Lock()
	defer li.mu.Unlock()
	return li.header.AdAccount, li.pids.listID, li.pids.listID != "" && li.listCreated.IsZero()
}

// setListCreated records when Pinterest created customer list listID, if
// it still is the list's.
func (li *list) setListCreated(listID string, t time.Time) {
	li.mu.Lock()
	defer li.mu.Unlock()
	if li.pids.listID == listID {
		li.listCreated = t
	}
}

func (li *list) setAudience(au pinterest.Audience) {
	li.mu.Lock()
	defer li.mu.Unlock()
	li.pids.audienceID = au.ID
	if au.Size != nil {
		li.size = *au.Size
	}
	li.status = au.Status
}

// countUploaded counts n records a write took, by op (add, remove).
func (li *list) countUploaded(op string, n int) {
	li.mu.Lock()
	defer li.mu.Unlock()
	if op == "add" {
		li.added += int64(n)
	} else {
		li.removed += int64(n)
	}
}

// snapshot returns what the status shows of the list itself.
func (li *list) snapshot() ListStatus {
	li.mu.Lock()
	defer li.mu.Unlock()
	return ListStatus{
		Audience: li.key.Audience, Name: li.header.Name, AdAccount: li.header.AdAccount, ListType: li.key.Type.String(),
		ListName: li.pids.name, CustomerListID: li.pids.listID, AudienceID: li.pids.audienceID, Partition: li.partition,
		PinterestSize: li.size, PinterestState: li.status, ListCreated: li.listCreated,
		UploadedAdds: li.added, UploadedRemoves: li.removed,
		Generation: li.generation, Retired: li.retired,
	}
}

// directory interns the lists the member has read changes of, or taken a
// rebuild mark of. Safe for concurrent use.
type directory struct {
	mu    sync.Mutex
	byKey map[changes.List]*list
	byID  []*list
	// assignedAt is when partitions were last assigned: a name lookup
	// made before it may miss a list an earlier owner created.
	assignedAt time.Time
}

func newDirectory() *directory {
	return &directory{byKey: make(map[changes.List]*list)}
}

// intern returns the list of key l, registering it on first sight with
// the header of the record that carried it. The first ad account seen for
// a list is its account; a display name fills in when one arrives.
func (d *directory) intern(l changes.List, h changes.Header, partition int32) *list {
	d.mu.Lock()
	defer d.mu.Unlock()
	if li := d.byKey[l]; li != nil {
		if h.Name != "" {
			li.fillName(h.Name)
		}
		return li
	}
	li := &list{id: window.ListID(len(d.byID)), key: l, partition: partition, header: h}
	d.byKey[l] = li
	d.byID = append(d.byID, li)
	return li
}

func (d *directory) get(id window.ListID) *list {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byID[id]
}

// of returns the lists of the given partitions.
func (d *directory) of(partitions map[int32]bool) []*list {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*list
	for _, li := range d.byID {
		if partitions[li.partition] {
			out = append(out, li)
		}
	}
	return out
}

func (d *directory) assigned(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.assignedAt = now
}

func (d *directory) lastAssigned() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.assignedAt
}
