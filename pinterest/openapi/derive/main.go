// Command derive writes the trimmed Pinterest v5 OpenAPI description that
// package openapi embeds: only the operations pinsync uses and the
// components they reference. The output depends only on the input.
//
//	go run ./pinterest/openapi/derive -in ../shared/pinterest/openapi.yaml -out pinterest/openapi/pinterest-v5-trimmed.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pinsync/pinsync/pinterest/openapi"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("derive", flag.ContinueOnError)
	in := fs.String("in", "", "official OpenAPI description (YAML)")
	out := fs.String("out", "", "trimmed description to write (default stdout)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *in == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: derive -in openapi.yaml [-out trimmed.yaml]")
		return 2
	}
	spec, err := os.ReadFile(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "derive:", err)
		return 1
	}
	trimmed, err := openapi.Derive(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "derive:", err)
		return 1
	}
	if *out == "" {
		_, err = os.Stdout.Write(trimmed)
	} else {
		err = os.WriteFile(*out, trimmed, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "derive:", err)
		return 1
	}
	return 0
}
