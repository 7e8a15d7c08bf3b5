package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// hostileSetup makes PARENT/cache (the cache directory) next to a sentinel
// file and directory outside it, which no layer may touch.
func hostileSetup(t *testing.T) (parent, cacheDir string) {
	parent = t.TempDir()
	cacheDir = filepath.Join(parent, "cache")
	if err := os.MkdirAll(filepath.Join(parent, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(parent, "sentinel"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parent, cacheDir
}

// assertOutsideUntouched checks that PARENT holds exactly what hostileSetup
// put there (plus the cache directory), unchanged.
func assertOutsideUntouched(t *testing.T, parent string) {
	t.Helper()
	var got []string
	if err := filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(parent, p)
		if rel == "cache" {
			return filepath.SkipDir
		}
		if rel != "." {
			got = append(got, rel)
		}
		return nil
	}); err != nil {
		t.Errorf("listing %s: %v", parent, err)
	}
	if strings.Join(got, ",") != "outside,sentinel" {
		t.Errorf("outside the cache: %v, want [outside sentinel]", got)
	}
	if b, err := os.ReadFile(filepath.Join(parent, "sentinel")); string(b) != "keep" {
		t.Errorf("sentinel changed: %q, %v", b, err)
	}
	// Nothing escaped further up either (../../x from PARENT/cache/tmp/*/root).
	for _, p := range []string{filepath.Join(parent, "..", "x"), filepath.Join(parent, "x")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
}

func unpackInto(t *testing.T, cacheDir string, keepSetuid bool, b []byte) (string, *layerMeta, error) {
	t.Helper()
	root := filepath.Join(cacheDir, "tmp", "work", "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &unpacker{keepSetuid: keepSetuid, logger: testLogger(t)}
	m, err := u.unpack(bytes.NewReader(b), root, nil)
	return root, m, err
}

func TestUnpackRefusesMaliciousLayers(t *testing.T) {
	cases := []struct {
		name    string
		entries func(parent string) []entry
		entry   string // the entry the error must name
	}{
		{"dot-dot name", func(string) []entry { return []entry{file("../../x", "evil", 0o644)} }, "../../x"},
		{"dot-dot inside name", func(string) []entry { return []entry{dir("a"), file("a/../../x", "evil", 0o644)} }, "a/../../x"},
		{"absolute symlink then a file through it", func(parent string) []entry {
			return []entry{symlink("evil", filepath.Join(parent, "outside")), file("evil/pwned", "evil", 0o644)}
		}, "evil/pwned"},
		{"relative symlink out then a directory through it", func(string) []entry {
			return []entry{symlink("up", "../../.."), dir("up/newdir")}
		}, "up/newdir"},
		{"hard link to ../x", func(string) []entry { return []entry{hardlink("link", "../x")} }, "link"},
		{"hard link to the sentinel by absolute path", func(parent string) []entry {
			return []entry{hardlink("link", filepath.Join(parent, "sentinel"))}
		}, "link"},
		{"hard link through a symlink", func(parent string) []entry {
			return []entry{symlink("s", parent), hardlink("link", "s/sentinel")}
		}, "link"},
		{"whiteout naming a path outside", func(string) []entry { return []entry{file("../.wh.sentinel", "", 0o644)} }, "../.wh.sentinel"},
		{"whiteout of the parent", func(string) []entry { return []entry{file("a/.wh..", "", 0o644)} }, "a/.wh.."},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent, cacheDir := hostileSetup(t)
			_, _, err := unpackInto(t, cacheDir, false, tarBytes(t, c.entries(parent)...))
			if err == nil {
				t.Fatal("malicious layer accepted")
			}
			if !strings.Contains(err.Error(), `"`+c.entry+`"`) {
				t.Errorf("error %q does not name entry %q", err, c.entry)
			}
			assertOutsideUntouched(t, parent)
		})
	}
}

func TestUnpackSkipsDevicesAndStripsSetuid(t *testing.T) {
	parent, cacheDir := hostileSetup(t)
	b := tarBytes(t,
		dir("dev"), entry{Name: "dev/mem", Type: tar.TypeChar, Mode: 0o666},
		entry{Name: "dev/sda", Type: tar.TypeBlock, Mode: 0o660},
		entry{Name: "fifo", Type: tar.TypeFifo, Mode: 0o666},
		file("bin/su", "setuid", 0o4755), file("bin/wall", "setgid", 0o2755),
		file("var/tmp/world", "w", 0o666), entry{Name: "tmp", Type: tar.TypeDir, Mode: 0o1777},
		file("/abs/name", "neutralised", 0o644), file("./dot/name", "ok", 0o644),
		entry{Name: "owned", Type: tar.TypeReg, Mode: 0o644, UID: 1000, Body: "x"},
		file("a", "one", 0o644), hardlink("b", "a"),
	)
	root, meta, err := unpackInto(t, cacheDir, false, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"dev/mem", "dev/sda", "fifo"} {
		if _, err := os.Lstat(filepath.Join(root, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was created: %v", n, err)
		}
	}
	if len(meta.Skipped) != 3 {
		t.Errorf("skipped %v, want the three special files", meta.Skipped)
	}
	modes := map[string]os.FileMode{
		"bin/su": 0o755, "bin/wall": 0o755, "var/tmp/world": 0o644, "tmp": os.ModeDir | os.ModeSticky | 0o755,
		"abs/name": 0o644, "dot/name": 0o644,
	}
	for n, want := range modes {
		st, err := os.Lstat(filepath.Join(root, n))
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		if st.Mode() != want {
			t.Errorf("%s mode %v, want %v", n, st.Mode(), want)
		}
	}
	if meta.Owners["owned"] != "1000:0" {
		t.Errorf("ownership not recorded: %v", meta.Owners)
	}
	sa, _ := os.Stat(filepath.Join(root, "a"))
	sb, _ := os.Stat(filepath.Join(root, "b"))
	if !os.SameFile(sa, sb) {
		t.Error("hard link inside the layer not preserved")
	}
	assertOutsideUntouched(t, parent)

	// Configured to keep them, the bits stay.
	_, cacheDir2 := hostileSetup(t)
	root2, _, err := unpackInto(t, cacheDir2, true, tarBytes(t, file("bin/su", "setuid", 0o4755)))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(root2, "bin/su")); st.Mode() != os.ModeSetuid|0o755 {
		t.Errorf("KeepSetuid: mode %v", st.Mode())
	}
}

// A later layer must not write or delete through a symlink an earlier layer
// planted: the flattener never follows symlinks either.
func TestFlattenDoesNotFollowSymlinksFromLowerLayers(t *testing.T) {
	r := newTestRegistry(t)
	parent, cacheDir := hostileSetup(t)
	lower := layerOf(t, compression.GZip, symlink("etc", parent), symlink("out", filepath.Join(parent, "outside")))
	upper := layerOf(t, compression.ZStd,
		file("etc/.wh.sentinel", "", 0o644), // would delete PARENT/sentinel
		file("out/pwned", "evil", 0o644),    // would write PARENT/outside/pwned
	)
	r.push(t, "evil:1", imageOf(t, "linux/amd64", v1.Config{}, lower, upper))
	c := newTestCache(t, cacheDir, r, nil)
	rf := r.rootfs(t, c, "evil:1")
	defer rf.Release()
	// Overlay semantics: the upper layer's directory replaces the symlink.
	if st, err := os.Lstat(filepath.Join(rf.Path, "out")); err != nil || !st.IsDir() {
		t.Errorf("out should now be a directory: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(rf.Path, "out/pwned")); err != nil || string(b) != "evil" {
		t.Errorf("out/pwned inside the rootfs: %q, %v", b, err)
	}
	assertOutsideUntouched(t, parent)
}

func TestMaliciousImageRefusedThroughTheCache(t *testing.T) {
	r := newTestRegistry(t)
	parent, cacheDir := hostileSetup(t)
	r.push(t, "evil:2", imageOf(t, "linux/amd64", v1.Config{},
		layerOf(t, compression.GZip, file("ok", "fine", 0o644), file("../../x", "evil", 0o644))))
	c := newTestCache(t, cacheDir, r, nil)
	_, err := c.Rootfs(context.Background(), r.ref(t, "evil:2"))
	if err == nil || !strings.Contains(err.Error(), `"../../x"`) {
		t.Fatalf("want an error naming ../../x, got %v", err)
	}
	t.Logf("refused: %v", err)
	assertOutsideUntouched(t, parent)
	if ents, _ := os.ReadDir(filepath.Join(cacheDir, "tmp")); len(ents) != 0 {
		t.Errorf("failed unpack left %d entries in tmp", len(ents))
	}
	if ents, _ := os.ReadDir(filepath.Join(cacheDir, "layers")); len(ents) != 0 {
		t.Errorf("a refused layer was cached")
	}
}

func TestLayerWithWrongDiffIDRefused(t *testing.T) {
	// A docker save style image whose config promises another diffID.
	parent, cacheDir := hostileSetup(t)
	c := newTestCache(t, cacheDir, nil, nil)
	img := imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file("a", "a", 0o644)))
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}
	bad := &diffIDOverride{Image: img, cfg: cf}
	d, _ := img.Digest()
	err := c.ensureImage(context.Background(), imageSource{img: bad}, d.String(), "")
	if err == nil || !strings.Contains(err.Error(), "diffID") {
		t.Fatalf("want a diffID mismatch, got %v", err)
	}
	assertOutsideUntouched(t, parent)
}

// diffIDOverride lies about its config, as a tampered image would.
type diffIDOverride struct {
	v1.Image
	cfg *v1.ConfigFile
}

func (d *diffIDOverride) ConfigFile() (*v1.ConfigFile, error) { return d.cfg, nil }
func (d *diffIDOverride) Layers() ([]v1.Layer, error) {
	ls, err := d.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = &layerDiffID{Layer: l, diffID: d.cfg.RootFS.DiffIDs[i]}
	}
	return out, nil
}

type layerDiffID struct {
	v1.Layer
	diffID v1.Hash
}

func (l *layerDiffID) DiffID() (v1.Hash, error) { return l.diffID, nil }

func TestUnpackRefusesLayerLargerThanTheBound(t *testing.T) {
	parent, cacheDir := hostileSetup(t)
	root := filepath.Join(cacheDir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &unpacker{logger: testLogger(t)}
	_, err := u.unpack(bytes.NewReader(tarBytes(t, file("small", "x", 0o644), file("big", strings.Repeat("x", 1000), 0o644))), root, budgetOf(2*entryCost+500))
	if err == nil || !strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("want the oversized entry refused, got %v", err)
	}
	assertOutsideUntouched(t, parent)
}

// budgetOf is an image budget of limit bytes, none for 0.
func budgetOf(limit int64) *imageBudget {
	if limit == 0 {
		return nil
	}
	return &imageBudget{limit: limit}
}
