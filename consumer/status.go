package consumer

import (
	"errors"
	"sort"
	"strconv"
	"time"
)

// Status is a snapshot of what the engine is doing, for /status and the
// status page. It holds no identifier and no secret.
type Status struct {
	Joined      bool              `json:"joined"`
	Buffered    int               `json:"buffered_records"`
	FetchPaused bool              `json:"fetch_paused"`
	Flights     int               `json:"uploads_in_flight"`
	LastError   string            `json:"last_upload_error,omitempty"`
	Partitions  []PartitionStatus `json:"partitions"`
	Audiences   []AudienceStatus  `json:"audiences"`
}

// PartitionStatus describes one owned partition.
type PartitionStatus struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     int64  `json:"committed_offset"`
	HighWatermark int64  `json:"high_watermark"`
	Lag           int64  `json:"lag"`
}

// AudienceStatus describes one audience and its lists.
type AudienceStatus struct {
	Key          string       `json:"key"`
	Name         string       `json:"name,omitempty"`
	AdAccount    string       `json:"ad_account_id"`
	Synced       bool         `json:"synced"`
	LocalMembers int64        `json:"local_members"`
	Lists        []ListStatus `json:"lists"`
}

// ListStatus describes the Pinterest list of one audience and type.
type ListStatus struct {
	ListType       string    `json:"list_type"`
	Name           string    `json:"name,omitempty"`
	CustomerListID string    `json:"customer_list_id,omitempty"`
	AudienceID     string    `json:"audience_id,omitempty"`
	Pending        int       `json:"pending_records"`
	LastFlush      time.Time `json:"last_flush,omitzero"`
	PinterestSize  int64     `json:"pinterest_size"`
	PinterestState string    `json:"pinterest_status,omitempty"`
}

// Status returns a snapshot of the engine.
func (e *Engine) Status() Status {
	var st Status
	st.Buffered, _ = e.ws.stats()
	_, perWindow := e.ws.stats()
	lastFlush := e.ws.lastFlushes()
	e.mu.Lock()
	st.Joined = e.joined
	st.Flights = e.flights
	if e.lastErr != nil {
		st.LastError = e.lastErr.Error()
	}
	for k, w := range e.workers {
		hw := w.highWater.Load()
		c := w.pt.committedLoad()
		ps := PartitionStatus{Topic: k.topic, Partition: k.partition, Committed: c, HighWatermark: hw}
		if hw > 0 {
			ps.Lag = hw - max(c, 0)
		}
		st.Partitions = append(st.Partitions, ps)
	}
	e.mu.Unlock()
	sort.Slice(st.Partitions, func(i, j int) bool {
		a, b := st.Partitions[i], st.Partitions[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	lists := e.lists.snapshot()
	for _, a := range e.auds.all() {
		as := AudienceStatus{Key: a.key, Name: a.name, AdAccount: a.adAccount, Synced: a.selected, LocalMembers: a.members.Load()}
		for k, li := range lists {
			if k.aud != a.id {
				continue
			}
			as.Lists = append(as.Lists, ListStatus{
				ListType: k.typ.String(), Name: li.name, CustomerListID: li.listID, AudienceID: li.audienceID,
				Pending: perWindow[k], LastFlush: lastFlush[k], PinterestSize: li.size, PinterestState: li.status,
			})
		}
		sort.Slice(as.Lists, func(i, j int) bool { return as.Lists[i].ListType < as.Lists[j].ListType })
		st.Audiences = append(st.Audiences, as)
	}
	sort.Slice(st.Audiences, func(i, j int) bool { return st.Audiences[i].Key < st.Audiences[j].Key })
	return st
}

// Ready reports why the engine is not ready to serve, or nil: it has
// joined the group and its partitions are being processed.
func (e *Engine) Ready() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.joined {
		return errors.New("not yet a member of consumer group " + strconv.Quote(e.cfg.Group))
	}
	return nil
}
