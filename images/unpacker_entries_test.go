package images

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every entry counts toward the bound, so a layer of many empty files (or
// of device nodes, which are skipped) cannot use up the disk's inodes, or
// the runner's memory for what it records of them, while counting as
// nothing. The cache accounts the same cost.
func TestUnpackCountsEveryEntryTowardTheBound(t *testing.T) {
	parent, cacheDir := hostileSetup(t)
	var entries []entry
	for i := range 200 {
		entries = append(entries, file(fmt.Sprintf("empty-%03d", i), "", 0o644))
	}
	for _, limit := range []int64{50 * entryCost, 0} {
		root := filepath.Join(cacheDir, fmt.Sprintf("root-%d", limit))
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		u := &unpacker{logger: testLogger(t)}
		meta, err := u.unpack(bytes.NewReader(tarBytes(t, entries...)), root, budgetOf(limit))
		created, _ := os.ReadDir(root)
		if limit == 0 {
			if err != nil || meta.Entries != 200 || meta.cost() != 200*entryCost {
				t.Fatalf("unbounded: %v, entries %d, cost %d", err, meta.Entries, meta.cost())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), `"empty-050"`) || !strings.Contains(err.Error(), "entries count") {
			t.Fatalf("200 empty files under a bound of 50 entries: %v", err)
		}
		if len(created) > 50 {
			t.Fatalf("%d files created under a bound of 50 entries", len(created))
		}
	}
	assertOutsideUntouched(t, parent)
}
