package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/overview"
	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/profiles"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/schemas/ident"
)

// runResync is `pinsync resync`: it asks the owners of an audience's lists
// to rebuild them from the profile state, and waits for them.
func runResync(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "resync", `usage: pinsync resync --config FILE --audience KEY [--list-type TYPE] [--wait DURATION]

Rebuilds an audience's Pinterest lists from the profile state: for each, a
new customer list holding exactly the audience's members (named with a
generation suffix, " #1"), its CUSTOMER_LIST audience repointed to it so that
campaigns follow, and the old list retired (pinsync no longer writes to it;
delete it in Ads Manager). It repairs a list that drifted from the audience.

The running pinsync replicas do the work: this command marks the lists in the
control topic and waits until their owners report them rebuilt. A rebuild
spends the write budget like any upload.

--dry-run marks nothing: it reads the audience's members from the profile
state and prints, for each list, the records a rebuild would upload, the
write calls it needs and about how long they take at its owner's share of
the write budget.`)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML) of the running deployment")
	audience := fs.String("audience", "", "the audience key (required)")
	listType := fs.String("list-type", "", "rebuild only the list of this identifier type: EMAIL, IDFA or MAID (default: every list of the audience)")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the rebuilds; 0 returns once they are requested")
	dryRun := fs.Bool("dry-run", false, "print what a rebuild of each list would upload, and how long it would take; mark nothing")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	var typ ident.Type
	switch {
	case *audience == "":
		fmt.Fprintln(io.Err, "pinsync resync: --audience is required")
		return 2
	case *wait < 0:
		fmt.Fprintln(io.Err, "pinsync resync: --wait must not be negative")
		return 2
	case *listType != "":
		t, err := ident.ParseType(strings.ToUpper(*listType))
		if err != nil {
			fmt.Fprintf(io.Err, "pinsync resync: --list-type %q: want EMAIL, IDFA or MAID\n", *listType)
			return 2
		}
		typ = t
	}
	d, code := loadDeployment(io, "resync", *path)
	if d == nil {
		return code
	}
	if d.ec.ChangelogTopic == "-" {
		fmt.Fprintln(io.Err, "pinsync resync: kafka.changelog_topic is \"-\": without the profile state's changelog no list can be rebuilt")
		return 2
	}
	ct, code := d.openControl(ctx, io, "without the list registry no list can be rebuilt")
	if ct == nil {
		return code
	}
	defer ct.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reg := ct.Registry()
	if *dryRun {
		return resyncDryRun(ctx, io, d, ct, *audience, typ)
	}
	before, err := reg.RequestRebuild(octx, *audience, typ)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync resync: marking the lists: %v\n", err)
		return 1
	}
	if len(before) == 0 {
		fmt.Fprintf(io.Err, "pinsync resync: no list of audience %q is registered (pinsync creates a list with its first member)\n", *audience)
		return 1
	}
	keys := slices.SortedFunc(maps.Keys(before), func(a, b control.ListKey) int {
		return strings.Compare(a.AdAccount+a.Type.String(), b.AdAccount+b.Type.String())
	})
	for _, k := range keys {
		fmt.Fprintf(io.Out, "%s: rebuild requested (ad account %s, customer list %s, generation %d)\n",
			listLabel(k), k.AdAccount, orNone(before[k].CustomerListID), before[k].Generation)
	}
	if *wait == 0 {
		return 0
	}
	fmt.Fprintf(io.Out, "waiting up to %s for the lists' owners...\n", *wait)
	wctx, cancelWait := context.WithTimeout(ctx, *wait)
	defer cancelWait()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	done := map[control.ListKey]bool{}
	for len(done) < len(keys) {
		select {
		case <-wctx.Done():
			for _, k := range keys {
				if !done[k] {
					fmt.Fprintf(io.Err, "pinsync resync: %s not rebuilt within %s; it stays marked and its owner goes on trying (see /status and pinsync_list_parked)\n", listLabel(k), *wait)
				}
			}
			return 1
		case <-t.C:
		}
		now := reg.Entries()
		for _, k := range keys {
			e := now[k]
			if done[k] || e.Rebuild != "" || e.Generation <= before[k].Generation {
				continue
			}
			done[k] = true
			fmt.Fprintf(io.Out, "%s: rebuilt as customer list %s (generation %d, audience %s); retired: %s\n",
				listLabel(k), orNone(e.CustomerListID), e.Generation, orNone(e.AudienceID), orNone(strings.Join(e.Retired, ", ")))
		}
	}
	return 0
}

func listLabel(k control.ListKey) string { return k.Audience + "/" + k.Type.String() }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// resyncDryRun is `pinsync resync --dry-run`: for each registered list of
// audience (of type typ only, unless 0), what a rebuild would upload and
// how long it would take. It marks nothing.
func resyncDryRun(ctx context.Context, io *stdio, d *deployment, ct *control.Topic, audience string, typ ident.Type) int {
	ec, kopts := d.ec, d.kopts
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ct.CatchUp(octx); err != nil {
		fmt.Fprintf(io.Err, "pinsync resync: %v\n", err)
		return 1
	}
	entries := map[control.ListKey]control.ListEntry{}
	var lists []changes.List
	for k, e := range ct.Registry().Entries() {
		if k.Audience == audience && (typ == 0 || k.Type == typ) {
			entries[k] = e
			lists = append(lists, changes.List{Audience: k.Audience, Type: k.Type})
		}
	}
	if len(entries) == 0 {
		fmt.Fprintf(io.Err, "pinsync resync: no list of audience %q is registered (pinsync creates a list with its first member)\n", audience)
		return 1
	}
	members, err := profiles.Members(ctx, kopts, ec.ChangelogTopic, lists)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync resync: reading the members from %s: %v\n", ec.ChangelogTopic, err)
		return 1
	}
	owners, err := listOwners(octx, kopts, ec.Group+".lists", ec.ChangesTopic)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync resync: %v\n", err)
		return 1
	}
	keys := slices.SortedFunc(maps.Keys(entries), func(a, b control.ListKey) int {
		return strings.Compare(a.AdAccount+a.Type.String(), b.AdAccount+b.Type.String())
	})
	wpm, perCall := d.cfg.Pinterest.WritesPerMinute, d.cfg.Pinterest.MaxRecords
	for _, k := range keys {
		e := entries[k]
		n := len(members[changes.List{Audience: k.Audience, Type: k.Type}])
		fmt.Fprintf(io.Out, "%s: customer list %s, generation %d; ", listLabel(k), orNone(e.CustomerListID), e.Generation)
		if n == 0 {
			fmt.Fprintf(io.Out, "no member: a rebuild would make no list (the next member's add makes one) and no write call\n")
			continue
		}
		calls := (n+perCall-1)/perCall + 1
		fmt.Fprintf(io.Out, "a rebuild would upload %d records (the members' %s identifiers) to a new list, generation %d, "+
			"in %d write calls: the list's creation and %d adds of up to %d records (pinterest.max_records), and the audience's repointing\n",
			n, k.Type, e.Generation+1, calls, calls-2, perCall)
		owner, share := owners.of(changes.List{Audience: k.Audience, Type: k.Type})
		switch {
		case wpm < 0:
			fmt.Fprintf(io.Out, "  at the budget: no wait, pinterest.writes_per_minute is unlimited\n")
		case owner == "":
			fmt.Fprintf(io.Out, "  at the budget: no member of %s.lists owns the list's partition now; at the whole group's %g writes a minute, at least %s\n",
				ec.Group, wpm, callTime(calls, wpm))
		default:
			fmt.Fprintf(io.Out, "  at the budget: about %s at its owner's share, %s's %.1f of the group's %g writes a minute (%d of the %d changes partitions); its other uploads spend the same share\n",
				callTime(calls, wpm*float64(share)/float64(owners.partitions)), owner, wpm*float64(share)/float64(owners.partitions), wpm, share, owners.partitions)
		}
	}
	fmt.Fprintln(io.Out, "dry run: nothing marked, nothing uploaded")
	return 0
}

// callTime is how long calls write calls take at perMinute.
func callTime(calls int, perMinute float64) time.Duration {
	d := time.Duration(float64(calls) / perMinute * float64(time.Minute))
	if d < time.Minute {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Second)
}

// changesOwners says which member of the list stage's group owns each
// partition of the changes topic.
type changesOwners struct {
	partitions int
	owner      map[int32]string
	owned      map[string]int
}

// listOwners describes group (the list stage's) on topic (the changes
// topic).
func listOwners(ctx context.Context, kopts []kgo.Opt, group, topic string) (changesOwners, error) {
	cl, err := kgo.NewClient(kopts...)
	if err != nil {
		return changesOwners{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	details, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = details.Error()
	}
	if err != nil {
		return changesOwners{}, fmt.Errorf("the changes topic: %w", err)
	}
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return changesOwners{}, fmt.Errorf("group %s: %w", group, err)
	}
	o := changesOwners{partitions: len(details[topic].Partitions), owner: map[int32]string{}, owned: map[string]int{}}
	for _, m := range described[group].Members {
		name := overview.MemberName(m)
		for _, p := range overview.Assigned(m, topic) {
			o.owner[p] = name
			o.owned[name]++
		}
	}
	return o, nil
}

// of returns the owner of l and how many partitions it owns.
func (o changesOwners) of(l changes.List) (string, int) {
	p := changes.NewPartitioner(o.partitions).Partition(l.AppendKey(nil))
	name := o.owner[p]
	return name, o.owned[name]
}
