package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
)

// runRun is `pinsync run`: the service.
func runRun(ctx context.Context, io *stdio, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML); PINSYNC_* variables override it")
	if err := fs.Parse(args); err != nil {
		return 2
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
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return 2
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
