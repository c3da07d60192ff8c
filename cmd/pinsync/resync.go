package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
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
spends the write budget like any upload.`)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML) of the running deployment")
	audience := fs.String("audience", "", "the audience key (required)")
	listType := fs.String("list-type", "", "rebuild only the list of this identifier type: EMAIL, IDFA or MAID (default: every list of the audience)")
	wait := fs.Duration("wait", 5*time.Minute, "how long to wait for the rebuilds; 0 returns once they are requested")
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
	cfg, err := service.Load(*path, io.Getenv)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync resync: invalid configuration:\n%s\n", indent(err.Error()))
		return 2
	}
	ec := cfg.Engine().WithDefaults()
	topic := ec.ControlTopic
	switch {
	case topic == "-":
		fmt.Fprintln(io.Err, "pinsync resync: kafka.control_topic is \"-\": without the list registry no list can be rebuilt")
		return 2
	case ec.ChangelogTopic == "-":
		fmt.Fprintln(io.Err, "pinsync resync: kafka.changelog_topic is \"-\": without the profile state's changelog no list can be rebuilt")
		return 2
	}
	kopts, err := service.KafkaOptions(cfg.Kafka, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync resync: %v\n", err)
		return 2
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ct, err := control.Open(octx, control.Config{Kafka: kopts, Topic: topic})
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync resync: %v\n", err)
		return 1
	}
	defer ct.Close()
	reg := ct.Registry()
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
