// The upstream, unpatched kfake as a broker process, for the regression test
// in the parent directory: it requires kfake at the version the root go.mod
// replaces, without the replace.
module github.com/pinsync/pinsync/third_party/kfaketest/upstream

go 1.26.0

require github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go v1.22.3 // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
)
