package overview

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Table is a titled table of text cells. `pinsync status` prints the same
// tables the group page shows.
type Table struct {
	// ID is the table's HTML id.
	ID      string
	Title   string
	Headers []string
	Rows    [][]string
}

// Tables returns the overview as tables: the lists, the processes, and
// each group's partitions.
func (o Overview) Tables() []Table {
	reached := 0
	for _, p := range o.Processes {
		if p.Reached {
			reached++
		}
	}
	lists := Table{ID: "lists", Title: fmt.Sprintf("Lists: %d", len(o.Lists)),
		Headers: []string{"audience", "list type", "ad account", "customer list", "Pinterest audience", "generation",
			"owner", "state", "pending", "records added", "records removed", "records", "Pinterest size", "parked", "last error"}}
	for _, l := range o.Lists {
		records := "?"
		if l.Records >= 0 {
			records = itoa(l.Records)
		}
		lists.Rows = append(lists.Rows, []string{l.Audience, l.ListType, l.AdAccount, l.CustomerListID, l.AudienceID,
			strconv.Itoa(l.Generation), l.Owner, l.State, strconv.Itoa(l.Pending), itoa(l.UploadedAdds), itoa(l.UploadedRemoves),
			records, itoa(l.PinterestSize), cmp.Or(l.Parked, l.Rebuild), l.LastError})
	}
	procs := Table{ID: "processes", Title: fmt.Sprintf("Processes: %d, %d reached", len(o.Processes), reached),
		Headers: []string{"process", "url", "reached", "ready", "input partitions", "changes partitions", "write budget", "error"}}
	for _, p := range o.Processes {
		budget := "unlimited"
		if p.WritesPerMinute >= 0 {
			budget = strconv.FormatFloat(p.WritesPerMinute, 'f', 1, 64) + "/min"
		}
		if !p.Reached {
			budget = ""
		}
		procs.Rows = append(procs.Rows, []string{p.Name, p.URL, yesNo(p.Reached), yesNo(p.Ready),
			partitions(p.InputPartitions), partitions(p.ChangesPartitions), budget, cmp.Or(p.Error, p.NotReady, p.LastError)})
	}
	out := []Table{lists, procs}
	for _, g := range o.Groups {
		var lag int64
		t := Table{ID: "partitions-" + g.Stage, Headers: []string{"partition", "owner", "committed", "end", "lag"}}
		for _, p := range g.Partitions {
			lag += p.Lag
			committed := "none"
			if p.Committed >= 0 {
				committed = itoa(p.Committed)
			}
			t.Rows = append(t.Rows, []string{strconv.Itoa(int(p.Partition)), p.Owner, committed, itoa(p.End), itoa(p.Lag)})
		}
		stage := "profile stage"
		if g.Stage == "lists" {
			stage = "list stage"
		}
		t.Title = fmt.Sprintf("Group %s (%s) on %s: %s, lag %d", g.Name, stage, g.Topic, g.State, lag)
		out = append(out, t)
	}
	return out
}

// notes explain the tables; the group page and `pinsync status` print them.
func (o Overview) notes() []string {
	n := []string{
		"Each list once, with its owner's figures, which are the whole list's: the owner alone writes it. " +
			"Records added and removed count the owner's writes since it holds the list; pending, the changes waiting in its window. " +
			"Records are the identifiers of the list's type the audience's members hold, summed over the processes: what the list holds once synced.",
		"State: " + StateReported + " (by its owner); " + StateNotSeen + " (no change of it since the owner took its partition: no figures yet); " +
			StateOwnerUnreachable + " (its figures are unknown; the registry's ids stand); " + StateNoOwner + " (its partition is not assigned).",
	}
	if !o.Complete {
		n = append(n, "Records are ? because not every input partition's owner was reached.")
	}
	return n
}

// WriteText prints the tables, aligned, with a line about each.
func (o Overview) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "pinsync deployment at %s\n", o.Taken.UTC().Format(time.RFC3339))
	for _, t := range o.Tables() {
		fmt.Fprintf(tw, "\n%s\n", t.Title)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(t.Headers, "\t")))
		for _, r := range t.Rows {
			cells := make([]string, len(r))
			for i, c := range r {
				cells[i] = cmp.Or(c, "-")
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
	}
	fmt.Fprintln(tw)
	for _, n := range o.notes() {
		fmt.Fprintln(tw, n)
	}
	return tw.Flush()
}

// WriteHTML writes the group page: the tables of WriteText. err, when not
// nil, is shown instead (the overview could not be gathered).
func WriteHTML(w io.Writer, o Overview, err error) error {
	data := struct {
		Overview
		Tables []Table
		Notes  []string
		Err    error
		Style  template.CSS
	}{Overview: o, Err: err, Style: Style}
	if err == nil {
		data.Tables, data.Notes = o.Tables(), o.notes()
	}
	return page.Execute(w, data)
}

// Style is the style sheet of pinsync's pages: this one and each
// process's status page.
const Style template.CSS = `
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f4f4f4}
.bad{color:#b00020}.ok{color:#0a7a2f}
`

var page = template.Must(template.New("group").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30"><title>pinsync group</title>
<style>{{.Style}}</style></head><body>
<h1>pinsync: the whole deployment</h1>
{{if .Err}}<p class="bad" id="error">The deployment could not be read: {{.Err}}</p>{{else}}
<p>As of {{.Taken.UTC.Format "2006-01-02 15:04:05 MST"}}.</p>
{{range .Tables}}<h2>{{.Title}}</h2>
<table id="{{.ID}}"><thead><tr>{{range .Headers}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</tbody></table>
{{end}}{{range .Notes}}<p>{{.}}</p>
{{end}}{{end}}
<p>This page refreshes every 30 seconds; <code>pinsync status</code> prints the same tables. This process's own page: <a href="./">status</a>.</p>
</body></html>
`))

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func partitions(ps []int32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}
