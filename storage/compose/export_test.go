package compose

import "time"

// SetSecondSideWait shortens how long the mirrors m and c wait for a side
// once the other has answered (secondSideWait), so that a test of a hung
// side need not wait seconds for each call.
func SetSecondSideWait(m *MirroredBlobStore, c *MirroredActionCache, wait time.Duration) {
	if m != nil {
		m.wait = wait
	}
	if c != nil {
		c.wait = wait
	}
}
