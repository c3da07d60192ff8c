package format_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/format"
)

// A consumer builds one Decoder per input topic (and, for the registry
// formats, one Registry from kafka.schema_registry), and decodes each
// fetched record where it would call schemas.Decoder.Decode.
func ExampleDecoder_Decode() {
	events, _ := schemas.NewDecoder(schemas.DecoderConfig{})
	dec, err := format.NewDecoder(format.Config{Kind: format.ConnectJSON}, nil, events)
	if err != nil {
		panic(err)
	}
	r := &kgo.Record{Key: []byte("p1"), Value: []byte(`{"schema":null,"payload":{"type":"forget","profile":"p1"}}`)}
	var ev schemas.Event
	err = dec.Decode(context.Background(), format.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}, &ev)
	var de *schemas.DecodeError
	switch {
	case errors.Is(err, format.ErrRegistryUnavailable):
		// Not the record's fault: pause the partition, retry it later.
	case errors.As(err, &de):
		// Dead-letter the record with de.Reason.
	case err == nil:
		fmt.Println(ev.Kind, ev.Profile)
	}
	// Output: forget p1
}
