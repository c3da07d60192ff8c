package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/control"
)

// runLayout is `pinsync layout`: it shows the deployment's layout (the
// changes topic's partition count and id, fixed by the first start) beside
// the topic as it is; with --formats raises the format generation writers
// write; and with --reset forgets it, for an operator who
// recreated the changes topic on purpose.
func runLayout(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "layout", `usage: pinsync layout --config FILE [--reset | --formats N]

Shows the layout the deployment fixed at its first start, in the control
topic: the changes topic's partition count (a list's partition, so its
owner, depends on it) and the topic's id, the input topic's id (the profile
state's positions are its offsets) and the format generation the writers
write; and the changes topic as it is. pinsync refuses to start when they
differ.

--reset forgets the layout, so that the next start records the topics as they
are then. Use it only after recreating the changes topic on purpose, with every
replica stopped once the list stage had drained (pinsync_consumer_lag of stage
lists at 0): what the old topic held and was not uploaded is gone; or after
recreating the input topic, with the other steps of the README's topic_reset.

--formats N raises the format generation the deployment's writers write to N,
at most the newest this pinsync reads. Run it once every replica runs a version
that reads generation N: replicas of an older version then refuse to start.
It never lowers it.`)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML) of the deployment")
	reset := fs.Bool("reset", false, "forget the recorded layout")
	formats := fs.Int("formats", 0, "raise the format generation writers write to `N`")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	d, code := loadDeployment(io, "layout", *path)
	if d == nil {
		return code
	}
	ct, code := d.openControl(ctx, io, "no layout is recorded (only kafka.changes_partitions is checked)")
	if ct == nil {
		return code
	}
	defer ct.Close()
	ec := d.ec
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fixed, ok, err := ct.Layout(octx)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync layout: %v\n", err)
		return 1
	}
	if ok {
		fmt.Fprintf(io.Out, "recorded: %s has %d partitions, topic id %s; input %s topic id %s; format generation %d\n", ec.ChangesTopic, fixed.ChangesPartitions,
			orNone(fixed.ChangesTopicID), ec.Topics[0], orNone(fixed.InputTopicID), max(fixed.Formats, 1))
	} else {
		fmt.Fprintln(io.Out, "recorded: none (the next start records the changes topic as it is)")
	}
	cl, err := kgo.NewClient(d.kopts...)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync layout: %v\n", err)
		return 1
	}
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(octx, ec.ChangesTopic)
	switch {
	case err != nil:
		fmt.Fprintf(io.Err, "pinsync layout: %v\n", err)
		return 1
	case details[ec.ChangesTopic].Err != nil:
		fmt.Fprintf(io.Out, "now:      %s does not exist (%v)\n", ec.ChangesTopic, details[ec.ChangesTopic].Err)
	default:
		d := details[ec.ChangesTopic]
		fmt.Fprintf(io.Out, "now:      %s has %d partitions, topic id %s\n", ec.ChangesTopic, len(d.Partitions), hex.EncodeToString(d.ID[:]))
	}
	if *formats != 0 {
		return raiseFormats(octx, io, ct, fixed, ok, *formats)
	}
	if !*reset {
		return 0
	}
	if err := ct.ResetLayout(octx); err != nil {
		fmt.Fprintf(io.Err, "pinsync layout: %v\n", err)
		return 1
	}
	fmt.Fprintln(io.Out, "reset: the next start records the changes topic as it is then")
	return 0
}

// raiseFormats records n as the deployment's format generation (see
// consumer.Formats), after checking that this pinsync reads it and that it
// does not go back.
func raiseFormats(ctx context.Context, io *stdio, ct *control.Topic, fixed control.Layout, ok bool, n int) int {
	switch {
	case !ok:
		fmt.Fprintln(io.Err, "pinsync layout --formats: no layout is recorded yet: start the deployment first")
		return 1
	case n > consumer.Formats:
		fmt.Fprintf(io.Err, "pinsync layout --formats: this pinsync reads format generations up to %d, not %d\n", consumer.Formats, n)
		return 2
	case n < max(fixed.Formats, 1):
		fmt.Fprintf(io.Err, "pinsync layout --formats: the deployment writes generation %d; it never goes back\n", max(fixed.Formats, 1))
		return 2
	}
	fixed.Formats = n
	if err := ct.RecordLayout(ctx, fixed); err != nil {
		fmt.Fprintf(io.Err, "pinsync layout: %v\n", err)
		return 1
	}
	fmt.Fprintf(io.Out, "formats: the deployment's writers write generation %d\n", n)
	return 0
}
