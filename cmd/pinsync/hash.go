package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/pinsync/pinsync/schemas/ident"
)

// runHash prints the hash pinsync would send for one identifier:
//
//	pinsync hash [--type email|idfa|maid] VALUE
//	pinsync hash [--type email|idfa|maid] -     (reads VALUE from stdin,
//	                                            keeping it out of shell history)
//
// A rejected value prints the reason (never the value) on stderr and exits 2.
func runHash(_ context.Context, io *stdio, args []string) int {
	fs := flag.NewFlagSet("hash", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	typeName := fs.String("type", "email", "identifier type: email, idfa or maid")
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "usage: pinsync hash [--type email|idfa|maid] VALUE|-")
		fmt.Fprintln(io.Err, "\nPrints the lowercase hex SHA-256 pinsync sends for VALUE, normalised as Pinterest matches it:\nemail trimmed and lowercased; IDFA trimmed and UPPERCASED; Android advertising id (maid)\ntrimmed and lowercased; device ids as 8-4-4-4-12. A 64-hex digest passes through.\nWith -, VALUE is read from the first line of stdin.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	t, err := ident.ParseType(*typeName)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync hash: %v\n", err)
		return 2
	}
	value := fs.Arg(0)
	if value == "-" {
		sc := bufio.NewScanner(io.In)
		sc.Buffer(make([]byte, 0, 4096), 64<<10)
		if !sc.Scan() {
			fmt.Fprintln(io.Err, "pinsync hash: no value on stdin")
			return 2
		}
		value = sc.Text()
	}
	h, err := ident.OfString(t, value)
	if err != nil {
		var re *ident.RejectError
		if errors.As(err, &re) {
			fmt.Fprintf(io.Err, "pinsync hash: %s value rejected: %s\n", t, re.Reason)
		} else {
			fmt.Fprintf(io.Err, "pinsync hash: %s value rejected\n", t)
		}
		return 2
	}
	if _, ok := ident.ParseHex(strings.TrimSpace(value)); ok {
		fmt.Fprintln(io.Err, "pinsync hash: the value already is a SHA-256 digest; it is sent as is (lowercased)")
	}
	fmt.Fprintln(io.Out, h)
	return 0
}
