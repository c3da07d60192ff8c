package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

func TestScratchDemo(t *testing.T) {
	a := os.Getenv("DEMO_ARGS")
	if a == "" {
		t.Skip()
	}
	io := &stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv}
	rc := runDemo(context.Background(), io, strings.Fields(a))
	t.Logf("rc=%d", rc)
}
