package schemas

import _ "embed"

// The native event as a registry schema, for teams whose producers write
// through a schema registry: register one of them and package
// schemas/format reads its records with no field mapping.
var (
	//go:embed native-event.avsc
	NativeEventAvro string
	//go:embed native-event.proto
	NativeEventProto string
)
