// Package overview gathers one view of a whole pinsync deployment: every
// list of the group once, with the figures of its owner (the one process
// that writes it), the registry's ids and marks, every process's
// standing, and both consumer groups' partitions with their owners,
// committed offsets and lag. `pinsync status` prints it and every
// replica serves it as its group page.
//
// It reads what is already there — the control topic (the list registry
// and the processes' announcements), the groups as the broker describes
// them, and each process's /status — and changes nothing. It does not
// decide who owns a list: the list stage's group does, through the
// partition of the changes topic the list lives in.
package overview

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Sources are where an Overview is read from.
type Sources struct {
	// Admin asks the brokers about the groups and topics.
	Admin *kadm.Client
	// Control is the deployment's control topic: the list registry and
	// the processes' announcements.
	Control *control.Topic
	// HTTP fetches each process's /status; nil means a client with a
	// timeout of StatusTimeout.
	HTTP *http.Client
	// Group is the profile stage's group (kafka.group); the list stage's
	// is Group + ".lists".
	Group string
	// Input and Changes are the input topic and the changes topic.
	Input, Changes string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// StatusTimeout bounds the fetch of one process's /status.
const StatusTimeout = 3 * time.Second

// maxStatusBytes bounds the /status body read from one process.
const maxStatusBytes = 16 << 20

// Overview is the deployment as gathered at Taken.
type Overview struct {
	Taken time.Time `json:"taken"`
	// Lists are every list of the registry and of the processes' /status,
	// each once.
	Lists []List `json:"lists"`
	// Processes are the processes announced in the control topic and
	// alive (seen within control.InstanceExpiry), and the group members
	// no announcement matches.
	Processes []Process `json:"processes"`
	// Groups are the profile stage's group on the input topic and the list
	// stage's on the changes topic.
	Groups []Group `json:"groups"`
	// Complete is set when every input partition's owner was reached, so
	// that the lists' Records are whole.
	Complete bool `json:"complete"`
}

// The states of a list's figures (List.State).
const (
	// StateReported: the owner's /status reports the list.
	StateReported = "reported"
	// StateNotSeen: the owner was reached but has had no change of the
	// list since it took the list's partition (its figures restart then).
	StateNotSeen = "not seen by its owner"
	// StateOwnerUnreachable: the owner's /status could not be read.
	StateOwnerUnreachable = "owner unreachable"
	// StateNoOwner: no member of the list stage's group holds the list's
	// partition.
	StateNoOwner = "no owner"
)

// List is one Pinterest list: the registry's entry joined with its owner's
// figures, which are of the whole list (its owner alone writes it).
type List struct {
	Audience  string `json:"audience"`
	ListType  string `json:"list_type"`
	AdAccount string `json:"ad_account_id"`
	// CustomerListID and AudienceID are the list's and its CUSTOMER_LIST
	// audience's Pinterest ids; Generation counts its rebuilds, Retired
	// the lists earlier generations used; Rebuild is the registry's mark
	// of a list waiting for a rebuild.
	CustomerListID string   `json:"customer_list_id,omitempty"`
	AudienceID     string   `json:"audience_id,omitempty"`
	Generation     int      `json:"generation"`
	Retired        []string `json:"retired_customer_list_ids,omitempty"`
	Rebuild        string   `json:"rebuild,omitempty"`
	Registered     bool     `json:"registered"`
	// Partition is the list's partition of the changes topic; Owner the
	// process that holds it in the list stage's group.
	Partition int32  `json:"partition"`
	Owner     string `json:"owner,omitempty"`
	// State says where the figures below come from (the State constants);
	// they are zero unless it is StateReported.
	State string `json:"state"`
	// Pending are changes waiting in the owner's window; UploadedAdds and
	// UploadedRemoves the records the owner's writes took since it holds
	// the list.
	Pending         int       `json:"pending_records"`
	UploadedAdds    int64     `json:"uploaded_adds"`
	UploadedRemoves int64     `json:"uploaded_removes"`
	LastFlush       time.Time `json:"last_flush,omitzero"`
	PinterestSize   int64     `json:"pinterest_size"`
	PinterestStatus string    `json:"pinterest_status,omitempty"`
	Parked          string    `json:"parked,omitempty"`
	LastError       string    `json:"rebuild_error,omitempty"`
	// Records are the identifiers of the list's type the audience's
	// members hold, summed over the processes: what the list holds once
	// synced; -1 unless the Overview is Complete.
	Records int64 `json:"records"`
}

// Process is one pinsync process.
type Process struct {
	// Name is its Kafka instance id, or its advertised address, or, for a
	// group member that announced nothing, its client host and member id.
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
	// Seen is when it last announced itself.
	Seen time.Time `json:"seen,omitzero"`
	// Reached is set when its /status was read; Error says why not.
	Reached bool   `json:"reached"`
	Error   string `json:"error,omitempty"`
	Ready   bool   `json:"ready"`
	// NotReady is why it is not ready, as its /status says.
	NotReady string `json:"not_ready_reason,omitempty"`
	// InputPartitions and ChangesPartitions are the partitions the groups
	// assign it.
	InputPartitions   []int32 `json:"input_partitions"`
	ChangesPartitions []int32 `json:"changes_partitions"`
	// WritesPerMinute is its share of the write budget (-1: unlimited).
	WritesPerMinute float64 `json:"ads_write_per_minute"`
	LastError       string  `json:"last_upload_error,omitempty"`
}

// Group is one stage's consumer group.
type Group struct {
	Stage      string      `json:"stage"` // profiles or lists
	Name       string      `json:"group"`
	Topic      string      `json:"topic"`
	State      string      `json:"state"`
	Partitions []Partition `json:"partitions"`
}

// Partition is one partition of a group's topic.
type Partition struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner,omitempty"`
	// Committed is the group's committed offset, -1 when none.
	Committed int64 `json:"committed"`
	End       int64 `json:"end"`
	Lag       int64 `json:"lag"`
}

// statusDoc is the part of a process's /status (service.StatusDoc) read
// here.
type statusDoc struct {
	consumer.Status
	Ready          bool   `json:"ready"`
	NotReadyReason string `json:"not_ready_reason"`
	Budget         struct {
		WritesPerMinute float64 `json:"ads_write_per_minute"`
	} `json:"budget"`
}

// Gather reads the deployment. It fails only when Kafka or the control
// topic cannot be read; a process that cannot be reached is reported as
// such, and its lists are still listed.
func Gather(ctx context.Context, src Sources) (Overview, error) {
	now := time.Now
	if src.Now != nil {
		now = src.Now
	}
	o := Overview{Taken: now()}
	instances, err := src.Control.Instances(ctx)
	if err != nil {
		return o, fmt.Errorf("control topic: %w", err)
	}
	live := slices.DeleteFunc(instances, func(in control.Instance) bool { return !in.Live(o.Taken) })
	docs := fetchAll(ctx, src.HTTP, live)

	lists := src.Group + ".lists"
	described, err := src.Admin.DescribeGroups(ctx, src.Group, lists)
	if err != nil {
		return o, fmt.Errorf("describe groups: %w", err)
	}
	committed := src.Admin.FetchManyOffsets(ctx, src.Group, lists)
	var ferr error
	committed.EachError(func(r kadm.FetchOffsetsResponse) {
		if !errors.Is(r.Err, kerr.GroupIDNotFound) { // a group never formed: nothing committed
			ferr = r.Err
		}
	})
	if ferr != nil {
		return o, fmt.Errorf("committed offsets: %w", ferr)
	}
	ends, err := src.Admin.ListEndOffsets(ctx, src.Input, src.Changes)
	if err != nil {
		return o, fmt.Errorf("end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return o, fmt.Errorf("end offsets: %w", err)
	}

	procs := newProcesses(live, docs)
	o.Groups = []Group{
		procs.group("profiles", described[src.Group], src.Input, committed[src.Group].Fetched, ends),
		procs.group("lists", described[lists], src.Changes, committed[lists].Fetched, ends),
	}
	o.Processes = procs.list()
	o.Complete = procs.coverInput(len(o.Groups[0].Partitions))
	o.Lists = procs.lists(src.Control.Registry().Entries(), o.Groups[1], o.Complete)
	return o, nil
}

// fetched is one process's /status, or why it could not be read.
type fetched struct {
	doc *statusDoc
	err error
}

// fetchAll reads the /status of every instance at once.
func fetchAll(ctx context.Context, hc *http.Client, ins []control.Instance) []fetched {
	if hc == nil {
		hc = &http.Client{Timeout: StatusTimeout}
	}
	out := make([]fetched, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		wg.Go(func() {
			d, err := fetchStatus(ctx, hc, in.URL)
			out[i] = fetched{doc: d, err: err}
		})
	}
	wg.Wait()
	return out
}

func fetchStatus(ctx context.Context, hc *http.Client, base string) (*statusDoc, error) {
	ctx, cancel := context.WithTimeout(ctx, StatusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	var d statusDoc
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxStatusBytes)).Decode(&d); err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	return &d, nil
}

// processes joins the announced instances, their /status and the groups'
// members.
type processes struct {
	byName map[string]*Process
	docs   map[string]*statusDoc // by process name, for those reached
}

func newProcesses(live []control.Instance, docs []fetched) *processes {
	ps := &processes{byName: map[string]*Process{}, docs: map[string]*statusDoc{}}
	for i, in := range live {
		p := &Process{Name: in.Name, URL: in.URL, Seen: in.Seen}
		if f := docs[i]; f.err != nil {
			p.Error = f.err.Error()
		} else {
			p.Reached, p.Ready, p.NotReady = true, f.doc.Ready, f.doc.NotReadyReason
			p.WritesPerMinute, p.LastError = f.doc.Budget.WritesPerMinute, f.doc.LastError
			ps.docs[in.Name] = f.doc
		}
		ps.byName[in.Name] = p
	}
	return ps
}

// owner names the process a group member is: the instance of its static
// instance id, else the reached process whose /status owns the same
// partitions (a dynamic member announces itself by its address, which the
// group does not know), else its client host and member id.
func (ps *processes) owner(m kadm.DescribedGroupMember, stage string, parts []int32) *Process {
	if m.InstanceID != nil {
		if p := ps.byName[*m.InstanceID]; p != nil {
			return p
		}
	}
	if len(parts) > 0 {
		for name, d := range ps.docs {
			owned := d.Partitions
			if stage == "lists" {
				owned = d.ListPartitions
			}
			if slices.Equal(partitionsOf(owned), parts) {
				return ps.byName[name]
			}
		}
	}
	name := MemberName(m)
	p := ps.byName[name]
	if p == nil {
		p = &Process{Name: name, Error: "announced no address (an older version, or no control topic)"}
		ps.byName[name] = p
	}
	return p
}

// MemberName names a group member: its instance id (static membership),
// else its client's host and its member id.
func MemberName(m kadm.DescribedGroupMember) string {
	if m.InstanceID != nil {
		return *m.InstanceID
	}
	return m.ClientHost + " " + m.MemberID
}

// Assigned returns the partitions of topic assigned to m, in order.
func Assigned(m kadm.DescribedGroupMember, topic string) []int32 {
	var parts []int32
	if a, ok := m.Assigned.AsConsumer(); ok {
		for _, t := range a.Topics {
			if t.Topic == topic {
				parts = append(parts, t.Partitions...)
			}
		}
	}
	slices.Sort(parts)
	return parts
}

func partitionsOf(ps []consumer.PartitionStatus) []int32 {
	out := make([]int32, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Partition)
	}
	slices.Sort(out)
	return out
}

// group builds a stage's Group, recording each member's partitions on its
// Process.
func (ps *processes) group(stage string, d kadm.DescribedGroup, topic string, committed kadm.OffsetResponses, ends kadm.ListedOffsets) Group {
	g := Group{Stage: stage, Name: d.Group, Topic: topic, State: d.State}
	if d.Err != nil {
		g.State = "unknown: " + d.Err.Error()
	}
	owners := map[int32]string{}
	for _, m := range d.Members {
		parts := Assigned(m, topic)
		p := ps.owner(m, stage, parts)
		if stage == "lists" {
			p.ChangesPartitions = parts
		} else {
			p.InputPartitions = parts
		}
		for _, part := range parts {
			owners[part] = p.Name
		}
	}
	ends.Each(func(e kadm.ListedOffset) {
		if e.Topic != topic {
			return
		}
		part := Partition{Partition: e.Partition, Owner: owners[e.Partition], Committed: -1, End: e.Offset, Lag: e.Offset}
		if c, ok := committed.Lookup(topic, e.Partition); ok && c.Err == nil && c.At >= 0 {
			part.Committed, part.Lag = c.At, max(e.Offset-c.At, 0)
		}
		g.Partitions = append(g.Partitions, part)
	})
	slices.SortFunc(g.Partitions, func(a, b Partition) int { return cmp.Compare(a.Partition, b.Partition) })
	return g
}

func (ps *processes) list() []Process {
	out := make([]Process, 0, len(ps.byName))
	for _, p := range ps.byName {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Process) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// coverInput reports whether the reached processes' /status cover each of
// the n input partitions exactly once: their audiences' local figures then
// sum to whole ones.
func (ps *processes) coverInput(n int) bool {
	seen := map[int32]bool{}
	for _, d := range ps.docs {
		for _, p := range d.Partitions {
			if seen[p.Partition] {
				return false
			}
			seen[p.Partition] = true
		}
	}
	return n > 0 && len(seen) == n
}

// listKey names a list with its ad account, as the registry does.
type listKey struct {
	acct, audience string
	typ            string
}

// lists joins the registry with the owners' rows: every list once.
func (ps *processes) lists(reg map[control.ListKey]control.ListEntry, changesGroup Group, complete bool) []List {
	out := map[listKey]*List{}
	get := func(k listKey) *List {
		l := out[k]
		if l == nil {
			l = &List{AdAccount: k.acct, Audience: k.audience, ListType: k.typ, Records: -1}
			out[k] = l
		}
		return l
	}
	for k, e := range reg {
		l := get(listKey{k.AdAccount, k.Audience, k.Type.String()})
		l.Registered, l.CustomerListID, l.AudienceID = true, e.CustomerListID, e.AudienceID
		l.Generation, l.Retired, l.Rebuild = e.Generation, e.Retired, e.Rebuild
	}
	// The rows of the processes, the owner's first: during a rebalance a
	// process giving a partition up may report its lists a moment longer.
	owners := map[int32]string{}
	for _, p := range changesGroup.Partitions {
		owners[p.Partition] = p.Owner
	}
	part := changes.NewPartitioner(len(changesGroup.Partitions))
	rows := map[listKey]consumer.ListStatus{}
	from := map[listKey]string{}
	for name, d := range ps.docs {
		for _, a := range d.Audiences {
			for _, r := range a.Lists {
				k := listKey{r.AdAccount, r.Audience, r.ListType}
				if _, ok := rows[k]; ok && owners[r.Partition] != name {
					continue
				}
				rows[k], from[k] = r, name
			}
		}
	}
	for k, r := range rows {
		l := get(k)
		l.State = StateReported
		l.Pending, l.UploadedAdds, l.UploadedRemoves, l.LastFlush = r.Pending, r.UploadedAdds, r.UploadedRemoves, r.LastFlush
		l.PinterestSize, l.PinterestStatus, l.Parked, l.LastError = r.PinterestSize, r.PinterestState, r.Parked, r.RebuildError
		if !l.Registered {
			l.CustomerListID, l.AudienceID, l.Generation, l.Retired = r.CustomerListID, r.AudienceID, r.Generation, r.Retired
		}
	}
	records := ps.records()
	res := make([]List, 0, len(out))
	for k, l := range out {
		if t, err := ident.ParseType(k.typ); err == nil && len(changesGroup.Partitions) > 0 {
			l.Partition = part.Partition(changes.List{Audience: k.audience, Type: t}.AppendKey(nil))
		}
		l.Owner = owners[l.Partition]
		switch {
		case l.State == StateReported:
			if from[k] != l.Owner && l.Owner != "" {
				l.Owner = from[k] // reported by the process giving it up
			}
		case l.Owner == "":
			l.State = StateNoOwner
		case ps.docs[l.Owner] == nil:
			l.State = StateOwnerUnreachable
		default:
			l.State = StateNotSeen
		}
		if complete {
			l.Records = records[k.audience][k.typ]
		}
		res = append(res, *l)
	}
	slices.SortFunc(res, func(a, b List) int {
		return cmp.Or(strings.Compare(a.Audience, b.Audience), strings.Compare(a.ListType, b.ListType), strings.Compare(a.AdAccount, b.AdAccount))
	})
	return res
}

// records sums the audiences' local records, by audience and list type,
// over the reached processes.
func (ps *processes) records() map[string]map[string]int64 {
	records := map[string]map[string]int64{}
	for _, d := range ps.docs {
		for _, a := range d.Audiences {
			if records[a.Key] == nil {
				records[a.Key] = map[string]int64{}
			}
			for typ, n := range a.LocalRecords {
				records[a.Key][typ] += n
			}
		}
	}
	return records
}
