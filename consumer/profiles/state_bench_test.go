package profiles

import (
	"testing"
)

// BenchmarkStateBytesPerProfile reports the heap the profile state holds
// per profile (two identifiers, three audiences each).
func BenchmarkStateBytesPerProfile(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(MeasureState(200_000), "B/profile")
	}
}

// BenchmarkRestore reports how fast changelog records become state.
func BenchmarkRestore(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(MeasureRestore(200_000), "profiles/s")
	}
}
