package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestStatusPageShowsEveryList loads the status page of a running demo in
// headless Chromium and reads the audiences table as rendered: one row per
// audience and list type the stream fills, each with the audience's
// members and the id of the Pinterest customer list of that name. One
// replica, so that its page sees every partition.
func TestStatusPageShowsEveryList(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium")
	recs, _ := demoStream(t)
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	oracle, _ := stream.BuildOracle(recs, dec, stream.DefaultMaxIdentifiersPerType)

	h := startHeldDemo(t, "--profiles", demoProfiles, "--events", demoEvents, "--replicas", "1")
	lists := sandboxLists(t, h.SandboxState)

	dom := dumpDOM(t, chromium, h.StatusURL)
	if !strings.Contains(dom, "Member of the consumer group") || !strings.Contains(dom, "lag: 0 records") {
		t.Errorf("the page should say the instance is a group member with no lag:\n%s", dom)
	}
	rows, err := tableRows(dom, "audiences")
	if err != nil {
		t.Fatalf("audiences table: %v\n%s", err, dom)
	}
	if len(rows) == 0 {
		t.Fatalf("the audiences table has no rows:\n%s", dom)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		aud, typ := r["audience"], r["list type"]
		key := aud + "/" + typ
		if seen[key] {
			t.Errorf("two rows for %s", key)
		}
		seen[key] = true
		members, err := strconv.Atoi(r["local members"])
		if err != nil || members <= 0 {
			t.Errorf("%s: local members %q, want a positive number", key, r["local members"])
		} else if want := oracle.Members(aud); members != want {
			t.Errorf("%s: local members %d, the oracle has %d", key, members, want)
		}
		name := "pinsync " + aud + " " + typ
		l, ok := lists[name]
		if !ok || r["customer list"] != l.id {
			t.Errorf("%s: customer list %q, the sandbox's list %q has id %q", key, r["customer list"], name, l.id)
		}
		if r["Pinterest audience"] != l.audience {
			t.Errorf("%s: Pinterest audience %q, the sandbox's audience of list %q is %q", key, r["Pinterest audience"], l.id, l.audience)
		}
	}
	for k, s := range oracle.Expected() {
		if len(s) > 0 && !seen[k.Audience+"/"+k.Type.String()] {
			t.Errorf("no row for %s, which holds %d records", k, len(s))
		}
	}
}

// sandboxList is a customer list's id and the id of its audience.
type sandboxList struct{ id, audience string }

// sandboxLists returns the sandbox's customer lists by name.
func sandboxLists(t *testing.T, stateURL string) map[string]sandboxList {
	t.Helper()
	resp, err := http.Get(stateURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st sandbox.State
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("sandbox state: %v", err)
	}
	audienceOf := map[string]string{}
	for _, a := range st.Audiences {
		audienceOf[a.CustomerListID] = a.ID
	}
	out := map[string]sandboxList{}
	for _, l := range st.CustomerLists {
		out[l.Name] = sandboxList{id: l.ID, audience: audienceOf[l.ID]}
	}
	return out
}

// dumpDOM renders url in headless Chromium and returns the DOM after load.
func dumpDOM(t *testing.T, chromium, url string) string {
	t.Helper()
	// Bounds a hung browser; not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+t.TempDir(), "--dump-dom", url)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium --dump-dom %s: %v\n%s", url, err, errOut.String())
	}
	return out.String()
}

// tableRows parses the table with the given id out of an HTML document
// and returns its body rows, each as header text -> cell text.
func tableRows(doc, id string) ([]map[string]string, error) {
	d := xml.NewDecoder(strings.NewReader(doc))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	var (
		inTable, inCell bool
		depth           int
		headers, row    []string
		cell            strings.Builder
		rows            []map[string]string
		found           bool
	)
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if tk.Name.Local == "table" {
				if inTable {
					depth++
					continue
				}
				for _, a := range tk.Attr {
					if a.Name.Local == "id" && a.Value == id {
						inTable, found = true, true
					}
				}
				continue
			}
			if !inTable {
				continue
			}
			switch tk.Name.Local {
			case "tr":
				row = nil
			case "th", "td":
				inCell = true
				cell.Reset()
			}
		case xml.CharData:
			if inCell {
				cell.Write(tk)
			}
		case xml.EndElement:
			if !inTable {
				continue
			}
			switch tk.Name.Local {
			case "table":
				if depth > 0 {
					depth--
					continue
				}
				inTable = false
			case "th":
				inCell = false
				headers = append(headers, strings.TrimSpace(cell.String()))
			case "td":
				inCell = false
				row = append(row, strings.TrimSpace(cell.String()))
			case "tr":
				if row == nil {
					continue
				}
				if len(row) != len(headers) {
					return nil, errors.New("a row has " + strconv.Itoa(len(row)) + " cells for " + strconv.Itoa(len(headers)) + " headers")
				}
				m := make(map[string]string, len(row))
				for i, h := range headers {
					m[h] = row[i]
				}
				rows = append(rows, m)
			}
		}
	}
	if !found {
		return nil, errors.New("no table with id " + strconv.Quote(id))
	}
	return rows, nil
}
