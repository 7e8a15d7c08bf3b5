package storage

import (
	"testing"
	"time"
)

// SetPutStallTimeout makes a Put that takes no bytes for d end its upload
// instead of after putStallTimeout, until the test ends. Call it before
// starting the servers of the test: they read it as they run.
func SetPutStallTimeout(t *testing.T, d time.Duration) {
	old := putStallTimeout
	putStallTimeout = d
	t.Cleanup(func() { putStallTimeout = old })
}

// OnHandingCallEnded calls f when a Write's call ends while it hands bytes
// to its Put, until the test ends.
func OnHandingCallEnded(t *testing.T, f func()) {
	old := handingCallEnded
	handingCallEnded = f
	t.Cleanup(func() { handingCallEnded = old })
}
