package storage

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// makePrivateDirs makes each of dirs (and any missing parent, mode 0755)
// and leaves it, and the directories below it, mode 0700: the blobs and
// action results there are tenants' sources and outputs, and the disk
// stores are read and written by this process alone. A directory an
// earlier version made 0755 is tightened at start, the ones below it
// too, down to privateDepth levels (the stores' fan-out directories; the
// blobs' own directories hold files only): a local user who opened one of
// them before the upgrade keeps no way in through it. (Input roots are
// hard links to the blobs, so sandboxes never search these directories;
// atomicfile makes new fan-out directories 0700.)
func makePrivateDirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || !e.IsDir() {
				return err
			}
			if err := os.Chmod(p, 0o700); err != nil {
				return err
			}
			if rel, _ := filepath.Rel(d, p); rel != "." && strings.Count(rel, string(filepath.Separator)) >= privateDepth-1 {
				return fs.SkipDir // its files are blobs: not read
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// privateDepth is how many levels of directories makePrivateDirs
// tightens below each top directory: cas/FUNCTION/XX, ac/XX.
const privateDepth = 2
