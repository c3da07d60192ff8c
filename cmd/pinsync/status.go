package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/overview"
)

// runStatus is `pinsync status`: every list of the deployment once, with
// its owner's figures, the processes and both groups' partitions.
func runStatus(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "status", `usage: pinsync status --config FILE [--json]

Shows the whole deployment at once: every list of the group (from the list
registry and the owners' /status), each once with its owner and the figures
of the whole list (the owner alone writes it); every process, found through
the announcements in the control topic; and both consumer groups' partitions
with their owners, committed offsets and lag. Every replica's group page
(/group) shows the same tables.

A list whose owner cannot be reached is still listed, with the registry's
ids, marked "owner unreachable". Exit status 1 when Kafka or the control
topic cannot be read.`)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML) of the deployment")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	d, code := loadDeployment(io, "status", *path)
	if d == nil {
		return code
	}
	ct, code := d.openControl(ctx, io, "the processes announce themselves in the control topic, so they cannot be found (read each one's /status)")
	if ct == nil {
		return code
	}
	defer ct.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(d.kopts...)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync status: %v\n", err)
		return 1
	}
	defer cl.Close()
	o, err := overview.Gather(octx, overview.Sources{Admin: kadm.NewClient(cl), Control: ct,
		Group: d.ec.Group, Input: d.ec.ProfileTopic(), Changes: d.ec.ChangesTopic})
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync status: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		err = enc.Encode(o)
	} else {
		err = o.WriteText(io.Out)
	}
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync status: %v\n", err)
		return 1
	}
	return 0
}
