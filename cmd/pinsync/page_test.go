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

// TestStatusPageShowsEveryList loads the status pages of a running demo
// of two replicas in headless Chromium and reads their tables as
// rendered: every list the stream fills is on exactly one page (its
// owner's), with the ids of the Pinterest customer list of that name and
// of its audience; and the audiences' local members, summed over the
// pages, are the oracle's members.
func TestStatusPageShowsEveryList(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium")
	recs, _ := demoStream(t)
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	oracle, _ := stream.BuildOracle(recs, dec, stream.DefaultMaxIdentifiersPerType)
	h := startHeldDemo(t, "--profiles", demoProfiles, "--events", demoEvents, "--replicas", "2")
	if len(h.StatusURLs) != 2 {
		t.Fatalf("status pages announced: %v, want two", h.StatusURLs)
	}
	lists := sandboxLists(t, h.SandboxState)
	seen := map[string]string{} // list → the page showing it
	members := map[string]int{}
	for _, url := range h.StatusURLs {
		dom := dumpDOM(t, chromium, url)
		if !strings.Contains(dom, "Member of the consumer groups") || !strings.Contains(dom, "lag: 0 records") {
			t.Errorf("%s should say the instance is a member of both groups with no lag:\n%s", url, dom)
		}
		rows, err := tableRows(dom, "lists")
		if err != nil {
			t.Fatalf("lists table of %s: %v\n%s", url, err, dom)
		}
		if len(rows) == 0 {
			t.Errorf("%s: the lists table has no rows (each replica owns lists)", url)
		}
		for _, r := range rows {
			aud, typ := r["audience"], r["list type"]
			key := aud + "/" + typ
			if page, dup := seen[key]; dup {
				t.Errorf("%s is on two pages: %s and %s", key, page, url)
			}
			seen[key] = url
			name := "pinsync " + aud + " " + typ
			l, ok := lists[name]
			if !ok || r["customer list"] != l.id {
				t.Errorf("%s: customer list %q, the sandbox's list %q has id %q", key, r["customer list"], name, l.id)
			}
			if r["Pinterest audience"] != l.audience {
				t.Errorf("%s: Pinterest audience %q, the sandbox's audience of list %q is %q", key, r["Pinterest audience"], l.id, l.audience)
			}
		}
		auds, err := tableRows(dom, "audiences")
		if err != nil {
			t.Fatalf("audiences table of %s: %v\n%s", url, err, dom)
		}
		for _, r := range auds {
			n, err := strconv.Atoi(r["local members"])
			if err != nil {
				t.Errorf("%s: local members %q of %s", url, r["local members"], r["audience"])
			}
			members[r["audience"]] += n
		}
	}
	for k, s := range oracle.Expected() {
		if len(s) > 0 && seen[k.Audience+"/"+k.Type.String()] == "" {
			t.Errorf("no page shows %s, which holds %d records", k, len(s))
		}
		if want := oracle.Members(k.Audience); members[k.Audience] != want {
			t.Errorf("%s: local members sum to %d over the pages, the oracle has %d", k.Audience, members[k.Audience], want)
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
