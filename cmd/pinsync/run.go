package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
)

// runRun is `pinsync run`: the service.
func runRun(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "run", "usage: pinsync run --config FILE\n\nRuns the sync service until SIGTERM or SIGINT (a second one exits at once).")
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML); PINSYNC_* variables override it")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	cfg, err := service.Load(*path, io.Getenv)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync: invalid configuration:\n%s\n", indent(err.Error()))
		return 2
	}
	log := service.NewLogger(io.Err, cfg.Log.Level)
	if err := service.Run(ctx, cfg, service.Options{Logger: log}); err != nil {
		log.Error("pinsync stopped", "err", err)
		return 1
	}
	return 0
}

// runCheckConfig is `pinsync check-config`: validate without connecting.
func runCheckConfig(_ context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "check-config", "usage: pinsync check-config --config FILE\n\nValidates a configuration file without connecting to Kafka or Pinterest.\nExit status 1 when it is invalid.")
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML)")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	if _, err := service.Load(*path, io.Getenv); err != nil {
		fmt.Fprintf(io.Err, "invalid configuration:\n%s\n", indent(err.Error()))
		return 1
	}
	fmt.Fprintln(io.Out, "configuration is valid")
	return 0
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
