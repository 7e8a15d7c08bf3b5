package storage

import (
	"os"
)

// makePrivateDirs makes each of dirs (and any missing parent, mode 0755)
// and leaves it mode 0700, tightening one that an earlier version made
// 0755: what lies below it is private from then on, whatever its own
// mode. The blobs and action results below are tenants' sources and
// outputs; the disk stores are read and written by this process alone, so
// the host's other users have no business in them. (Input roots are hard
// links to the blobs, so sandboxes never search these directories.)
func makePrivateDirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
	}
	return nil
}
