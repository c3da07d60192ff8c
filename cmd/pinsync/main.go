// Command pinsync keeps Pinterest Ads customer lists in step with the
// audiences a customer-data platform publishes to Kafka.
//
// main only wires signals into a context and dispatches to a subcommand;
// each subcommand lives in its own file and can be called from tests.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	// The first signal starts a clean shutdown; from then on the signals
	// have their default effect, so a second one ends the process at once.
	// The default is restored before the shutdown starts: nothing the
	// shutdown does can be seen before a second signal would kill.
	go func() {
		<-sigs
		signal.Reset(os.Interrupt, syscall.SIGTERM)
		cancel()
	}()
	return dispatch(ctx, &stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv}, os.Args[1:])
}

// stdio is what a subcommand may touch of the process: its streams and its
// environment. Tests pass buffers and a map.
type stdio struct {
	In     io.Reader
	Out    io.Writer
	Err    io.Writer
	Getenv func(string) string
}

// command is one subcommand. It returns the process exit status.
type command struct {
	summary string
	run     func(ctx context.Context, io *stdio, args []string) int
}

// commands returns the subcommands by name. It is a function, not a
// package-level map, so that there is no package state.
func commands() map[string]command {
	return map[string]command{
		"hash":         {"print the hash pinsync would send for an identifier", runHash},
		"validate":     {"decode records (one a line, key<TAB>value; --format for Connect, CloudEvents, registry formats) and say what each means", runValidate},
		"run":          {"run the sync service (--config FILE)", runRun},
		"produce":      {"write a generated Segment Engage audience stream to Kafka (--format for the other input formats)", runProduce},
		"sandbox":      {"run the local Pinterest API sandbox", runSandbox},
		"auth":         {"connect a Pinterest account (OAuth authorization-code flow)", runAuth},
		"accounts":     {"list the ad accounts the token reaches", runAccounts},
		"bench":        {"measure the pipeline against its limits", runBench},
		"demo":         {"run the whole system on an embedded Kafka and Pinterest sandbox", runDemo},
		"check-config": {"validate a configuration file without connecting", runCheckConfig},
		"resync":       {"rebuild an audience's lists from the profile state (--config FILE --audience KEY)", runResync},
		"layout":       {"show the changes topic's recorded layout; --reset after recreating it on purpose", runLayout},
		"dlq":          {"count the dead letters; dlq redrive sends them back once their cause is fixed", runDLQ},
		"status":       {"show every list of the deployment once, every process, both groups' offsets", runStatus},
	}
}

func dispatch(ctx context.Context, io *stdio, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(io.Err, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(io.Err, "pinsync: unknown command %q\n\n", args[0])
		usage(io.Err, cmds)
		return 2
	}
	return c.run(ctx, io, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: pinsync COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-13s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'pinsync COMMAND -h' for the flags of a command.")
}

// flagSet returns a subcommand's flag set: errors and help go to io.Err,
// help shows usage ahead of the flag defaults.
func flagSet(io *stdio, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Err)
	fs.Usage = func() {
		fmt.Fprintln(io.Err, usage+"\n\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs and says whether the command goes on;
// when it does not, status is the exit status (0 after -h, 2 for bad
// flags or stray arguments).
func parseFlags(io *stdio, fs *flag.FlagSet, args []string) (status int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.Err, "pinsync %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return 2, false
	}
	return 0, true
}
