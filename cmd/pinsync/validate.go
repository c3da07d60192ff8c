package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
)

// maxRecordLine bounds one input line of pinsync validate.
const maxRecordLine = 1 << 20

// runValidate decodes records and says what each means to pinsync:
//
//	pinsync validate [flags] [FILE|-]
//
// Each line is one record: a value, or KEY<TAB>VALUE to give the Kafka
// record key. The value is JSON, or in the format of --format (a Connect
// envelope, a structured CloudEvent, ...); with --base64, and always for
// the registry formats (avro, protobuf, json-schema), it is the record's
// bytes in standard base64. --header NAME=VALUE (repeated) gives every
// record a header: the ce_* headers of a binary-mode CloudEvent, or the
// schema id with --schema-id header. --map FIELD=ENTRY (repeated) is the
// field mapping of a registry format. For every line it prints the decoded
// event (kind, profile, audience, membership, identifier types with their
// hashes) or the reason it is rejected. Exit status: 0 all accepted, 1 some
// rejected, 2 the input could not be read (including a line longer than
// 1 MiB or a line that is not base64) or the schema registry could not
// answer.
func runValidate(ctx context.Context, stdio *stdio, args []string) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stdio.Err)
	var cfg schemas.DecoderConfig
	fs.StringVar(&cfg.EnteredEvent, "entered-event", schemas.DefaultEnteredEvent, "Segment track event name of audience entries")
	fs.StringVar(&cfg.ExitedEvent, "exited-event", schemas.DefaultExitedEvent, "Segment track event name of audience exits")
	fs.StringVar(&cfg.ConsentCategory, "consent-category", "", "consent category to check in context.consent.categoryPreferences")
	var (
		ff      formatFlags
		isB64   bool
		hdrs    headerFlag
		mapping mappingFlag
	)
	ff.register(fs)
	fs.BoolVar(&isB64, "base64", false, "values are base64 (implied by avro, protobuf and json-schema)")
	fs.Var(&hdrs, "header", "NAME=VALUE: a header of every record (repeated)")
	fs.Var(&mapping, "map", "FIELD=ENTRY: a field mapping entry of a registry format (repeated; FIELD is type, profile, audience, ...)")
	fs.Usage = func() {
		fmt.Fprintln(stdio.Err, "usage: pinsync validate [flags] [FILE|-]")
		fmt.Fprintln(stdio.Err, "\nDecodes records, one a line (VALUE, or KEY<TAB>VALUE; VALUE is JSON, or base64 with --base64\nand for the registry formats), and prints what each means.\nExit status 1 when any record is rejected, 2 when the input cannot be read or the registry cannot answer.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	events, err := schemas.NewDecoder(cfg)
	if err != nil {
		fmt.Fprintf(stdio.Err, "pinsync validate: %v\n", err)
		return 2
	}
	fcfg, reg, err := ff.config(stdio.Getenv, format.Mapping(mapping))
	if err != nil {
		fmt.Fprintf(stdio.Err, "pinsync validate: %v\n", err)
		return 2
	}
	dec, err := format.NewDecoder(fcfg, reg, events)
	if err != nil {
		fmt.Fprintf(stdio.Err, "pinsync validate: %v\n", err)
		return 2
	}
	v := validator{dec: dec, headers: hdrs, base64: isB64 || fcfg.Kind.Registered()}
	in := stdio.In
	if name := fs.Arg(0); name != "" && name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stdio.Err, "pinsync validate: %v\n", err)
			return 2
		}
		defer f.Close()
		in = f
	}
	return v.run(ctx, in, stdio.Out, stdio.Err)
}

// validator decodes the lines of pinsync validate.
type validator struct {
	dec     *format.Decoder
	headers []kgo.RecordHeader
	base64  bool
}

func (v *validator) run(ctx context.Context, in io.Reader, out, errOut io.Writer) int {
	w := bufio.NewWriter(out)
	defer w.Flush()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxRecordLine)
	var (
		ev                           schemas.Event
		line, total, invalid, hashed int
	)
	for sc.Scan() {
		line++
		if err := ctx.Err(); err != nil {
			w.Flush()
			fmt.Fprintf(errOut, "pinsync validate: stopped at line %d: %v\n", line, err)
			return 2
		}
		text := sc.Bytes()
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		key, value := splitRecord(text)
		if v.base64 {
			var err error
			if value, err = base64.StdEncoding.AppendDecode(nil, bytes.TrimSpace(value)); err != nil {
				w.Flush()
				fmt.Fprintf(errOut, "pinsync validate: line %d: the value is not base64: %v\n", line, err)
				return 2
			}
		}
		total++
		if err := v.dec.Decode(ctx, format.Record{Key: key, Value: value, Headers: v.headers}, &ev); err != nil {
			if errors.Is(err, format.ErrRegistryUnavailable) {
				w.Flush()
				fmt.Fprintf(errOut, "pinsync validate: line %d: %v\n", line, err)
				return 2
			}
			invalid++
			fmt.Fprintf(w, "line %d: rejected: %v\n", line, err)
			continue
		}
		desc, n := describe(&ev, value)
		hashed += n
		fmt.Fprintf(w, "line %d: %s\n", line, desc)
	}
	if err := sc.Err(); err != nil {
		w.Flush()
		if errors.Is(err, bufio.ErrTooLong) {
			fmt.Fprintf(errOut, "pinsync validate: line %d is longer than %d bytes; stopped\n", line+1, maxRecordLine)
		} else {
			fmt.Fprintf(errOut, "pinsync validate: %v\n", err)
		}
		return 2
	}
	fmt.Fprintf(w, "%d records: %d accepted, %d rejected\n", total, total-invalid, invalid)
	if hashed > 0 {
		fmt.Fprintf(w, "%d identifiers came already hashed (marked prehashed): pinsync sends them as they are, and Pinterest matches them "+
			"only if the platform normalised them by Pinterest's rules before hashing (email lowercased, IDFA uppercased, Android id lowercased)\n", hashed)
	}
	if invalid > 0 {
		return 1
	}
	return 0
}

// splitRecord splits KEY<TAB>JSON. A line that starts with a JSON object
// (or has no tab) is a value without key.
func splitRecord(line []byte) (key, value []byte) {
	trimmed := bytes.TrimLeft(line, " \t\r")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return nil, line
	}
	if i := bytes.IndexByte(line, '\t'); i >= 0 {
		return line[:i], line[i+1:]
	}
	return nil, line
}

// describe renders an event on one line. Identifiers appear only hashed;
// those that came hashed in value are marked, and counted in prehashed.
func describe(ev *schemas.Event, value []byte) (line string, prehashed int) {
	lower := bytes.ToLower(value)
	mark := func(id schemas.Identifier) string {
		if bytes.Contains(lower, []byte(id.Hash.String())) {
			prehashed++
			return "(prehashed)"
		}
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s profile=%q", ev.Kind, ev.Profile)
	if ev.Kind == schemas.KindMembership {
		fmt.Fprintf(&b, " audience=%q member=%t", ev.Audience, ev.Member)
		if ev.AudienceName != "" {
			fmt.Fprintf(&b, " audience_name=%q", ev.AudienceName)
		}
		if ev.AdAccount != "" {
			fmt.Fprintf(&b, " ad_account=%q", ev.AdAccount)
		}
	}
	if ev.Replace {
		b.WriteString(" replace=true")
	}
	if ev.NoConsent {
		b.WriteString(" no_consent=true")
	}
	for _, id := range ev.Identifiers {
		fmt.Fprintf(&b, " %s=%s%s", id.Type, id.Hash, mark(id))
	}
	for _, id := range ev.Drop {
		fmt.Fprintf(&b, " drop:%s=%s%s", id.Type, id.Hash, mark(id))
	}
	if ev.Rejected > 0 {
		reasons := make([]string, len(ev.RejectReasons))
		for i, r := range ev.RejectReasons {
			reasons[i] = string(r)
		}
		fmt.Fprintf(&b, " skipped=%d(%s)", ev.Rejected, strings.Join(reasons, ","))
	}
	return b.String(), prehashed
}

// headerFlag is --header NAME=VALUE, repeated.
type headerFlag []kgo.RecordHeader

func (h *headerFlag) String() string { return fmt.Sprint(len(*h), " headers") }

func (h *headerFlag) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return errors.New("want NAME=VALUE")
	}
	*h = append(*h, kgo.RecordHeader{Key: name, Value: []byte(value)})
	return nil
}

// mappingFlag is --map FIELD=ENTRY, repeated: one entry of a
// format.Mapping, FIELD its configuration key.
type mappingFlag format.Mapping

func (m *mappingFlag) String() string { return "" }

func (m *mappingFlag) Set(s string) error {
	field, entry, ok := strings.Cut(s, "=")
	fields := map[string]*string{
		"type": &m.Type, "profile": &m.Profile, "audience": &m.Audience, "audience_name": &m.AudienceName,
		"ad_account_id": &m.AdAccountID, "member": &m.Member, "identifiers": &m.Identifiers,
		"email": &m.Email, "idfa": &m.IDFA, "maid": &m.MAID, "timestamp": &m.Timestamp,
	}
	p, known := fields[field]
	if !ok || !known {
		return fmt.Errorf("want FIELD=ENTRY, FIELD one of type, profile, audience, audience_name, ad_account_id, member, identifiers, email, idfa, maid, timestamp")
	}
	*p = entry
	return nil
}
