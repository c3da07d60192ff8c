package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/deadletter"
	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/profiles"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

const dlqUsage = `usage: pinsync dlq --config FILE [--json]
       pinsync dlq redrive --config FILE [--reason REASON] [--dry-run]

pinsync dlq counts the dead letters, by reason and source (the input
partition of a record the decoder refused, the list of a hash Pinterest
refused), and how many of each were redriven. It reads the dead-letter topic
up to its end as of the start, and prints no record's content.

pinsync dlq redrive sends dead letters back, once their cause is fixed (a
producer fixed upstream, sync.entered_event configured, the records
Pinterest refused accepted): a record the decoder refused goes again to the
partition of the topic it was read from, with its key and value; a hash
Pinterest refused is written to the changes topic as the change that brings
its list to where the audience stands now, so that the list's owner uploads
it. A record dead-lettered as too_large kept only its first 64 KiB and cannot
be sent back. Each reason's position is recorded after sending (the group
<group>.dlq-redrive.<reason> on the dead-letter topic): a second redrive
sends none of them again. --dry-run says what would be sent and sends
nothing.`

// runDLQ is `pinsync dlq` and `pinsync dlq redrive`.
func runDLQ(ctx context.Context, io *stdio, args []string) int {
	if len(args) > 0 && args[0] == "redrive" {
		return runRedrive(ctx, io, args[1:])
	}
	fs := flagSet(io, "dlq", dlqUsage)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML) of the deployment")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	d, code := openDLQ(io, "dlq", *path)
	if d == nil {
		return code
	}
	defer d.close()
	start, end, ok, err := deadletter.Bounds(ctx, d.adm, d.topic)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync dlq: %v\n", err)
		return 1
	}
	if !ok {
		fmt.Fprintf(io.Out, "%s does not exist: nothing was dead-lettered\n", d.topic)
		return 0
	}
	pos, err := deadletter.Positions(ctx, d.adm, d.ec.Group, d.topic, redrivable())
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync dlq: %v\n", err)
		return 1
	}
	rows := map[[3]string]*dlqRow{}
	total := 0
	err = deadletter.Read(ctx, d.kopts, d.topic, start, end, func(l deadletter.Letter) {
		total++
		k := [3]string{l.Reason, l.Source(), l.DecodeReason}
		r := rows[k]
		if r == nil {
			r = &dlqRow{Reason: l.Reason, Source: l.Source(), DecodeReason: l.DecodeReason, Redrivable: l.Reason != deadletter.ReasonTooLarge}
			rows[k] = r
		}
		r.Count++
		if at, ok := pos[l.Reason][l.Partition]; ok && l.Offset < at {
			r.Redriven++
		}
		if l.Time.After(r.Last) {
			r.Last = l.Time
		}
	})
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync dlq: %v\n", err)
		return 1
	}
	sorted := slices.SortedFunc(maps.Values(rows), func(a, b *dlqRow) int {
		return cmp.Or(strings.Compare(a.Reason, b.Reason), strings.Compare(a.Source, b.Source), strings.Compare(a.DecodeReason, b.DecodeReason))
	})
	if *asJSON {
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Topic       string    `json:"topic"`
			DeadLetters int       `json:"dead_letters"`
			Groups      []*dlqRow `json:"groups"`
		}{d.topic, total, sorted})
		return 0
	}
	fmt.Fprintf(io.Out, "%s: %d dead letters (read up to its end as of the start)\n", d.topic, total)
	if total == 0 {
		return 0
	}
	tw := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REASON\tSOURCE\tCOUNT\tREDRIVEN\tLAST")
	for _, r := range sorted {
		redriven := fmt.Sprint(r.Redriven)
		if !r.Redrivable {
			redriven = "cannot be (decoder's reason: " + cmp.Or(r.DecodeReason, "unknown") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", r.Reason, r.Source, r.Count, redriven, r.Last.UTC().Format(time.RFC3339))
	}
	_ = tw.Flush()
	return 0
}

// dlqRow counts the dead letters of one reason and source.
type dlqRow struct {
	Reason       string    `json:"reason"`
	Source       string    `json:"source"`
	DecodeReason string    `json:"decode_reason,omitempty"`
	Count        int       `json:"count"`
	Redrivable   bool      `json:"redrivable"`
	Redriven     int       `json:"redriven"`
	Last         time.Time `json:"last"`
}

// redrivable returns the reasons a dead letter may carry that a redrive
// can send back: the decoder's and pinterest_rejected.
func redrivable() []string {
	return append(schemas.Reasons(), deadletter.ReasonRejected, deadletter.ReasonStateTooLarge)
}

// runRedrive is `pinsync dlq redrive`.
func runRedrive(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "dlq redrive", dlqUsage)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML) of the deployment")
	reason := fs.String("reason", "", "send back only the dead letters of this reason (default: every reason)")
	dryRun := fs.Bool("dry-run", false, "say what would be sent; send and record nothing")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	scope := append(redrivable(), deadletter.ReasonTooLarge) // too_large: reported, left alone
	switch {
	case *reason == deadletter.ReasonTooLarge:
		fmt.Fprintln(io.Err, "pinsync dlq redrive: a too_large dead letter kept only the first 64 KiB of the record's key and value: it cannot be sent back")
		return 2
	case *reason != "" && !slices.Contains(scope, *reason):
		fmt.Fprintf(io.Err, "pinsync dlq redrive: --reason %q: want one of %s\n", *reason, strings.Join(redrivable(), ", "))
		return 2
	case *reason != "":
		scope = []string{*reason}
	}
	d, code := openDLQ(io, "dlq redrive", *path)
	if d == nil {
		return code
	}
	defer d.close()
	src := deadletter.Source{Kafka: d.kopts, Admin: d.adm, Group: d.ec.Group, Topic: d.topic, AdAccount: d.adAccount(ctx)}
	if d.ec.ChangelogTopic != "-" {
		src.Members = func(ctx context.Context, lists []changes.List) (map[changes.List][]ident.Hash, error) {
			return profiles.Members(ctx, d.kopts, d.ec.ChangelogTopic, lists)
		}
	}
	plan, err := deadletter.Plan(ctx, src, scope)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync dlq redrive: %v\n", err)
		return 1
	}
	if d.ec.Rekey {
		// Read from the re-keyed topic: sent back to the input, for the
		// re-key stage to key it by its profile id as it does any record.
		for i := range plan.Republish {
			if plan.Republish[i].SourceTopic == d.ec.RekeyTopic() {
				plan.Republish[i].SourceTopic = d.ec.Topics[0]
			}
		}
	}
	decoding, err := decodable(d.cfg, plan.Republish)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync dlq redrive: %v\n", err)
		return 2
	}
	printPlan(io, plan, decoding, *dryRun)
	summary := fmt.Sprintf("re-publish %d records and re-queue %d hashes; %d left alone; %d sent by an earlier redrive",
		len(plan.Republish), len(plan.Requeue), len(plan.Skipped), plan.Before)
	if *dryRun {
		fmt.Fprintf(io.Out, "dry run: would %s; nothing sent, nothing recorded\n", summary)
		return 0
	}
	if len(plan.Republish)+len(plan.Requeue) > 0 {
		n := 0
		if len(plan.Requeue) > 0 {
			details, err := d.adm.ListTopics(ctx, d.ec.ChangesTopic)
			if err == nil {
				err = details.Error()
			}
			if err != nil {
				fmt.Fprintf(io.Err, "pinsync dlq redrive: the changes topic: %v\n", err)
				return 1
			}
			n = len(details[d.ec.ChangesTopic].Partitions)
		}
		if err := deadletter.Send(ctx, d.kopts, plan, d.ec.ChangesTopic, n); err != nil {
			fmt.Fprintf(io.Err, "pinsync dlq redrive: sending: %v\nnothing recorded: a second redrive sends all of them again (what was sent applies again harmlessly)\n", err)
			return 1
		}
	}
	if err := deadletter.Commit(ctx, d.adm, d.ec.Group, d.topic, plan); err != nil {
		fmt.Fprintf(io.Err, "pinsync dlq redrive: sent, but %v: a second redrive sends them again\n", err)
		return 1
	}
	fmt.Fprintf(io.Out, "done: %s\n", strings.NewReplacer("re-publish ", "re-published ", "re-queue ", "re-queued ").Replace(summary))
	return 0
}

// printPlan prints what a redrive sends and leaves, counted by reason and
// source.
func printPlan(io *stdio, plan deadletter.Redrive, decoding int, dryRun bool) {
	would := ""
	if dryRun {
		would = "would "
	}
	tw := tabwriter.NewWriter(io.Out, 0, 0, 2, ' ', 0)
	count := func(what string, ls []deadletter.Letter, why func(int) string) {
		type key struct{ reason, source, why string }
		n := map[key]int{}
		for i, l := range ls {
			n[key{l.Reason, l.Source(), why(i)}]++
		}
		for _, k := range slices.SortedFunc(maps.Keys(n), func(a, b key) int {
			return cmp.Or(strings.Compare(a.reason, b.reason), strings.Compare(a.source, b.source), strings.Compare(a.why, b.why))
		}) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", what, k.reason, k.source, n[k], k.why)
		}
	}
	count(would+"re-publish", plan.Republish, func(int) string { return "to the partition it was read from" })
	var queued []deadletter.Letter
	for _, q := range plan.Requeue {
		queued = append(queued, q.Letter)
	}
	count(would+"re-queue", queued, func(i int) string {
		if plan.Requeue[i].Op == changes.Remove {
			return "as a removal from its list"
		}
		return "as an add to its list"
	})
	var skipped []deadletter.Letter
	for _, s := range plan.Skipped {
		skipped = append(skipped, s.Letter)
	}
	count("leave alone", skipped, func(i int) string { return plan.Skipped[i].Why })
	_ = tw.Flush()
	switch {
	case len(plan.Republish) > 0 && decoding == len(plan.Republish):
		fmt.Fprintf(io.Out, "all %d records to re-publish decode with this configuration\n", decoding)
	case len(plan.Republish) > 0:
		fmt.Fprintf(io.Out, "%d of the %d records to re-publish decode with this configuration; the others will be dead-lettered again\n", decoding, len(plan.Republish))
	}
}

// decodable counts the letters that the configuration's decoder takes.
func decodable(cfg service.Config, ls []deadletter.Letter) (int, error) {
	dec, err := schemas.NewDecoder(cfg.Engine().Decoder)
	if err != nil {
		return 0, err
	}
	var ev schemas.Event
	n := 0
	for _, l := range ls {
		if dec.Decode(l.Key, l.Value, &ev) == nil {
			n++
		}
	}
	return n, nil
}

// dlqTools is what both dlq commands connect to.
type dlqTools struct {
	*deployment
	cl    *kgo.Client
	adm   *kadm.Client
	topic string
	ct    *control.Topic
}

// openDLQ loads the configuration and connects; nil and the exit status
// when it cannot.
func openDLQ(io *stdio, name, path string) (*dlqTools, int) {
	d, code := loadDeployment(io, name, path)
	if d == nil {
		return nil, code
	}
	cl, err := kgo.NewClient(d.kopts...)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync %s: %v\n", name, err)
		return nil, 1
	}
	return &dlqTools{deployment: d, cl: cl, adm: kadm.NewClient(cl), topic: d.ec.DLQTopic}, 0
}

func (d *dlqTools) close() {
	if d.ct != nil {
		d.ct.Close()
	}
	d.cl.Close()
}

// adAccount returns how a refused hash's list finds its ad account: the
// registry's entry of the list (the one that holds the customer list it
// was refused for, when several), else the configuration's mapping.
func (d *dlqTools) adAccount(ctx context.Context) func(changes.List, string) string {
	var reg map[control.ListKey]control.ListEntry
	opened := false
	return func(l changes.List, listID string) string {
		if !opened && d.ec.ControlTopic != "-" {
			opened = true
			ct, err := control.Open(ctx, control.Config{Kafka: d.kopts, Topic: d.ec.ControlTopic})
			if err == nil {
				d.ct = ct
				if ct.CatchUp(ctx) == nil {
					reg = ct.Registry().Entries()
				}
			}
		}
		acct := ""
		for k, e := range reg {
			if k.Audience == l.Audience && k.Type == l.Type && (acct == "" || e.CustomerListID == listID || slices.Contains(e.Retired, listID)) {
				acct = k.AdAccount
			}
		}
		if acct != "" {
			return acct
		}
		return cmp.Or(d.cfg.Pinterest.AudienceAdAccounts[l.Audience], d.cfg.Pinterest.AdAccountID)
	}
}
