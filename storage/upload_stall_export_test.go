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
