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

// AUFS's metadata at a layer's root (.wh..wh.aufs, .wh..wh.orph/…,
// .wh..wh.plnk/…), which images saved from an AUFS-backed Docker keep, is
// skipped as Docker skips it: such an image was refused ("whiteout names
// no entry"). The opaque marker, and whiteouts beside them, still work.
func TestUnpackSkipsAUFSMetadata(t *testing.T) {
	_, cacheDir := hostileSetup(t)
	root := filepath.Join(cacheDir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &unpacker{logger: testLogger(t)}
	meta, err := u.unpack(bytes.NewReader(tarBytes(t,
		file(".wh..wh.aufs", "", 0o644),
		dir(".wh..wh.orph"), file(".wh..wh.orph/x", "", 0o644),
		dir(".wh..wh.plnk"), file(".wh..wh.plnk/1234.5678", "linked", 0o644),
		file(".wh.gone", "", 0o644), dir("d"), file("d/.wh..wh..opq", "", 0o644), file("kept", "k", 0o644),
	)), root, budgetOf(0))
	if err != nil {
		t.Fatalf("a layer with AUFS metadata: %v", err)
	}
	created, _ := os.ReadDir(root)
	var names []string
	for _, e := range created {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "d,kept" {
		t.Fatalf("the layer's root holds %v, want d and kept only", names)
	}
	if fmt.Sprint(meta.Whiteouts, meta.Opaque) != "[gone] [d]" {
		t.Fatalf("whiteouts %v, opaque %v; want [gone] and [d]", meta.Whiteouts, meta.Opaque)
	}
}
