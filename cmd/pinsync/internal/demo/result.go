package demo

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// Result is the verdict of a demo run.
type Result struct {
	// Converged is true when the group committed every record and every
	// Pinterest list holds exactly what the oracle says.
	Converged bool
	// Reason says why not, when not converged.
	Reason string
	// Events is the number of records produced (malformed ones included);
	// Malformed how many of them the decoder rejects; Profiles the
	// generator's profile count.
	Events, Malformed, Profiles int
	// Lists has one row per audience and list type that must hold records
	// or exists at Pinterest, sorted by audience and type.
	Lists []ListResult
	// PinterestCalls is the number of accepted customer-list writes
	// (creates with records and updates); UploadedRecords the records they
	// carried.
	PinterestCalls, UploadedRecords int
	// Requests is every request the sandbox answered (reads, writes,
	// OAuth); RateLimited those refused for the write or read budget.
	Requests, RateLimited int
	// DeadLettered is the number of distinct records in the dead-letter
	// topic.
	DeadLettered int
	// Missing and Extra total the differences from the oracle.
	Missing, Extra int
	// Lag is the group's lag on the input topic at the verdict.
	Lag int64
	// Duration is the time from Start to the verdict.
	Duration time.Duration
	// Population is the number of Pinterest users the sandbox knows.
	Population int
}

// RecordsPerCall is UploadedRecords / PinterestCalls (0 without calls).
func (r Result) RecordsPerCall() float64 {
	if r.PinterestCalls == 0 {
		return 0
	}
	return float64(r.UploadedRecords) / float64(r.PinterestCalls)
}

// ListResult is one Pinterest list: an audience and an identifier type.
type ListResult struct {
	Audience, ListType string
	// Members is the number of profiles in the audience (oracle).
	Members int
	// Expected is the records the list must hold (oracle); InPinterest the
	// records it holds; Missing and Extra the difference.
	Expected, InPinterest, Missing, Extra int
	// Matched is the size Pinterest reports for the list's audience: the
	// records that match a user of the sandbox's population.
	Matched int
	// Calls is the number of accepted writes to the list.
	Calls int
	// ListID is the customer list's id ("" when it does not exist).
	ListID string
}

// verdict compares the sandbox with the oracle. reason, when not empty,
// makes the result not converged whatever the comparison says.
func (d *Demo) verdict(p *production, reason string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := Result{Profiles: d.cfg.Profiles, Events: int(p.acked.Load()), Reason: reason, Population: len(d.population)}
	lag, err := d.lag(ctx)
	res.Lag = lag
	if err != nil && res.Reason == "" {
		res.Reason = "reading the group's lag: " + err.Error()
	} else if lag != 0 && res.Reason == "" {
		res.Reason = "lag is " + strconv.FormatInt(lag, 10)
	}
	select {
	case <-p.done:
	default:
		if res.Reason == "" {
			res.Reason = "the stream is still being produced"
		}
		res.Duration = time.Since(d.start)
		return res
	}
	res.Malformed = p.rejected
	st := d.sb.State()
	res.Requests = st.Requests.Total
	for _, n := range st.RateLimited {
		res.RateLimited += n
	}
	res.Lists = compare(p, st)
	for _, l := range res.Lists {
		res.Missing += l.Missing
		res.Extra += l.Extra
		res.PinterestCalls += l.Calls
	}
	for _, l := range st.CustomerLists {
		for _, n := range l.Calls {
			res.UploadedRecords += n
		}
	}
	if res.Reason == "" && (res.Missing > 0 || res.Extra > 0) {
		res.Reason = "lists differ from the oracle: " + strconv.Itoa(res.Missing) + " records missing, " +
			strconv.Itoa(res.Extra) + " extra"
	}
	res.Converged = res.Reason == ""
	res.DeadLettered = d.deadLettered(ctx)
	res.Duration = time.Since(d.start)
	return res
}

// compare builds one row per audience and type from the oracle and the
// sandbox's state. Lists are matched by their name (the default
// sync.list_name_template, "pinsync {{.Audience}} {{.ListType}}").
func compare(p *production, st sandbox.State) []ListResult {
	byName := make(map[string]sandbox.ListState, len(st.CustomerLists))
	for _, l := range st.CustomerLists {
		byName[l.Name] = l
	}
	matched := make(map[string]int, len(st.Audiences))
	for _, a := range st.Audiences {
		matched[a.CustomerListID] = a.Size
	}
	expected := p.oracle.Expected()
	members := map[string]int{}
	for _, a := range p.oracle.Audiences() {
		members[a] = p.oracle.Members(a)
	}
	var out []ListResult
	for _, aud := range p.audience {
		for _, t := range ident.Types {
			name := "pinsync " + aud + " " + t.String()
			want := expected[stream.ListKey{Audience: aud, Type: t}]
			l, exists := byName[name]
			delete(byName, name)
			if len(want) == 0 && !exists {
				continue
			}
			row := ListResult{Audience: aud, ListType: t.String(), Members: members[aud], Expected: len(want)}
			if exists {
				have, err := stream.ParseSet(l.Records)
				if err != nil {
					have = stream.Set{}
					row.Extra = len(l.Records)
				}
				d := stream.Diff(map[stream.ListKey]stream.Set{{}: want}, map[stream.ListKey]stream.Set{{}: have})
				row.InPinterest, row.Missing, row.Extra = len(l.Records), d.Missing, row.Extra+d.Extra
				row.Matched, row.Calls, row.ListID = matched[l.ID], len(l.Calls), l.ID
			} else {
				row.Missing = len(want)
			}
			out = append(out, row)
		}
	}
	// Lists no audience of the stream explains are extra in full.
	for name, l := range byName {
		aud, typ, _ := cutLast(strings.TrimPrefix(name, "pinsync "), " ")
		out = append(out, ListResult{Audience: aud, ListType: typ, InPinterest: len(l.Records), Extra: len(l.Records),
			Matched: matched[l.ID], Calls: len(l.Calls), ListID: l.ID})
	}
	return out
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// deadLettered counts the distinct records in the dead-letter topic
// (a record dead-lettered twice, after a rebalance, counts once). It
// returns -1 if the topic cannot be read.
func (d *Demo) deadLettered(ctx context.Context) int {
	topic := Group + ".dlq"
	ends, err := d.adm.ListEndOffsets(ctx, topic)
	if err != nil || ends.Error() != nil {
		return -1
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return 0
	}
	// Dead letters are written in transactions: committed ones only, and
	// the markers, so that reading reaches the end.
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return -1
	}
	defer cl.Close()
	seen := map[string]struct{}{}
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return -1
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				seen[dlqIdentity(r)] = struct{}{}
			}
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
		})
	}
	return len(seen)
}

// dlqIdentity names what a dead letter is about: its source position for
// records that could not be decoded, its whole content otherwise.
func dlqIdentity(r *kgo.Record) string {
	var b strings.Builder
	src := false
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, "pinsync.source.") {
			src = true
		}
	}
	for _, h := range r.Headers {
		if !src || strings.HasPrefix(h.Key, "pinsync.source.") {
			b.WriteString(h.Key + "=" + string(h.Value) + ";")
		}
	}
	if !src {
		b.Write(r.Value)
	}
	return b.String()
}

// metricSum sums the values of every series of the named counter or gauge
// in reg whose labels include match.
func metricSum(reg prometheus.Gatherer, name string, match map[string]string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, match) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// histogramCountSum returns the sample count and sum of the named
// histogram in reg, over every series.
func histogramCountSum(reg prometheus.Gatherer, name string) (count, sum float64) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				count += float64(h.GetSampleCount())
				sum += h.GetSampleSum()
			}
		}
	}
	return count, sum
}

func labelsMatch(m *dto.Metric, match map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := match[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(match)
}
