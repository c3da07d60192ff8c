package main

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestSecondSIGTERMExitsAtOnce stops a replica whose shutdown cannot end
// (Pinterest is down, so its windows cannot flush within the grace) with
// SIGTERM, then SIGTERM again: the second signal ends the process at once,
// by the signal, instead of waiting for the grace.
func TestSecondSIGTERMExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	f := newFleet(t, 2)
	f.produce(generate(t, stream.Config{Profiles: 50, Audiences: 2, Events: 400, Seed: 7, AudiencePrefix: "sig"}))
	if err := f.sb.SetFaults(sandbox.Faults{Outage: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	r := f.start(1)
	waitFor(t, 60*time.Second, "every record applied", func() bool {
		n, err := metric(r.addr, "pinsync_events_total")
		return err == nil && n >= 400
	})
	r.cmd.Process.Signal(syscall.SIGTERM)
	logPath := filepath.Join(f.dir, "replica-1.log")
	waitFor(t, 30*time.Second, "the shutdown to start", func() bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte(`"shutting down: flushing"`))
	})
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the replica did not exit after the second SIGTERM")
	}
	ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("the replica ended with %v; want it ended by the second SIGTERM (its shutdown could not finish within the grace)", r.cmd.ProcessState)
	}
	f.mu.Lock()
	delete(f.procs, 1)
	f.mu.Unlock()
}
