package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func testOptions() Options {
	return Options{
		Binaries: []Binary{
			{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Data: []byte("\x7fELF arm64 paddock")},
			{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Data: []byte("\x7fELF amd64 paddock")},
		},
		CACerts: []byte("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"),
		Created: time.Unix(1700000000, 0),
		Version: "v1.2.3",
	}
}

func build(t *testing.T, o Options) []Image {
	t.Helper()
	imgs, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func digests(t *testing.T, imgs []Image) map[string]v1.Hash {
	t.Helper()
	d, err := Digests(imgs)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A second build of the same inputs gives the same digests, whatever the
// order the binaries come in; the time and the binaries are inputs.
func TestBuildIsReproducible(t *testing.T) {
	o := testOptions()
	first := digests(t, build(t, o))
	if len(first) != len(Roles()) {
		t.Fatalf("built %d roles, want %d", len(first), len(Roles()))
	}
	o2 := testOptions()
	slices.Reverse(o2.Binaries)
	if again := digests(t, build(t, o2)); !mapsEqual(first, again) {
		t.Errorf("a second build gave other digests:\n%v\n%v", first, again)
	}
	o3 := testOptions()
	o3.Created = o3.Created.Add(time.Second)
	if later := digests(t, build(t, o3)); later["storage"] == first["storage"] {
		t.Error("another creation time gave the same digest")
	}
	o4 := testOptions()
	o4.Binaries[0].Data = []byte("\x7fELF arm64 paddock, rebuilt")
	if other := digests(t, build(t, o4)); other["runner"] == first["runner"] {
		t.Error("another binary gave the same digest")
	}
}

func mapsEqual(a, b map[string]v1.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Each role is an OCI index of one image per platform, sorted; each image
// has the role's entrypoint, user and labels, the platform's binary at
// BinaryPath, and the base files.
func TestBuildContents(t *testing.T) {
	o := testOptions()
	for _, img := range build(t, o) {
		m, err := img.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.MediaType != types.OCIImageIndex || len(m.Manifests) != 2 {
			t.Fatalf("%s: index %s with %d manifests, want an OCI index of 2", img.Role.Name, m.MediaType, len(m.Manifests))
		}
		for i, arch := range []string{"amd64", "arm64"} {
			d := m.Manifests[i]
			if d.Platform == nil || d.Platform.Architecture != arch || d.Platform.OS != "linux" {
				t.Fatalf("%s: manifest %d platform %v, want linux/%s", img.Role.Name, i, d.Platform, arch)
			}
			child, err := img.Index.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, img.Role, arch, child, o)
		}
	}
}

func checkImage(t *testing.T, r Role, arch string, img v1.Image, o Options) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	wantEntry := append([]string{BinaryPath}, r.Entrypoint...)
	if !slices.Equal(c.Entrypoint, wantEntry) || c.User != r.User || !slices.Equal(c.Cmd, r.Cmd) {
		t.Errorf("%s/%s: entrypoint %q cmd %q user %q, want %q %q %q", r.Name, arch, c.Entrypoint, c.Cmd, c.User, wantEntry, r.Cmd, r.User)
	}
	if c.Labels[LabelRole] != r.Name || c.Labels[labelVersion] != o.Version || c.Labels[labelTitle] != "paddock-"+r.Name {
		t.Errorf("%s/%s: labels %v", r.Name, arch, c.Labels)
	}
	if cf.Architecture != arch || cf.OS != "linux" || !cf.Created.Time.Equal(o.Created) {
		t.Errorf("%s/%s: config for %s/%s created %v", r.Name, arch, cf.OS, cf.Architecture, cf.Created)
	}
	files := readFlat(t, img)
	wantBin := "\x7fELF " + arch + " paddock"
	if f := files[strings.TrimPrefix(BinaryPath, "/")]; f.body != wantBin || f.mode != 0o755 {
		t.Errorf("%s/%s: binary %q mode %o, want %q 0755", r.Name, arch, f.body, f.mode, wantBin)
	}
	if f := files["etc/passwd"]; !strings.Contains(f.body, "nonroot:x:65532:65532:") {
		t.Errorf("%s/%s: /etc/passwd has no nonroot user: %q", r.Name, arch, f.body)
	}
	if f := files["etc/ssl/certs/ca-certificates.crt"]; f.body != string(o.CACerts) {
		t.Errorf("%s/%s: CA bundle %q", r.Name, arch, f.body)
	}
	if f := files["tmp"]; f.mode != 0o1777 || f.typ != tar.TypeDir {
		t.Errorf("%s/%s: /tmp mode %o, want a 1777 directory", r.Name, arch, f.mode)
	}
}

type tarFile struct {
	typ  byte
	mode int64
	body string
}

// readFlat reads every layer of img, checking that entries are sorted and
// carry the fixed time and owners a reproducible build needs.
func readFlat(t *testing.T, img v1.Image) map[string]tarFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]tarFile{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var names []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !h.ModTime.Equal(testOptions().Created) || h.Uname != "" || h.Gname != "" {
				t.Errorf("%s: time %v owner %q:%q, want the fixed time and no names", h.Name, h.ModTime, h.Uname, h.Gname)
			}
			body, _ := io.ReadAll(tr)
			name := strings.TrimSuffix(h.Name, "/")
			names = append(names, name)
			files[name] = tarFile{typ: h.Typeflag, mode: h.Mode, body: string(body)}
		}
		rc.Close()
		if !sort.StringsAreSorted(names) {
			t.Errorf("layer entries not sorted: %q", names)
		}
	}
	return files
}

// Bad options are refused with the reason.
func TestBuildRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no binary", func(o *Options) { o.Binaries = nil }, "no binary"},
		{"same platform twice", func(o *Options) { o.Binaries[1].Platform = o.Binaries[0].Platform }, "two binaries for linux/arm64"},
		{"not linux", func(o *Options) { o.Binaries[0].Platform.OS = "windows" }, "want linux/ARCH"},
	} {
		o := testOptions()
		tc.edit(&o)
		if _, err := Build(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	if _, err := ParsePlatform("linux"); err == nil {
		t.Error("ParsePlatform accepted \"linux\"")
	}
	if p, err := ParsePlatform("linux/arm/v7"); err != nil || p.Variant != "v7" {
		t.Errorf("ParsePlatform(linux/arm/v7) = %v, %v", p, err)
	}
}

// WriteLayout writes an OCI layout naming each role's index, and writing
// it again over the first gives the same bytes.
func TestWriteLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	imgs := build(t, testOptions())
	want := digests(t, imgs)
	for range 2 {
		if err := WriteLayout(dir, "v1.2.3", imgs); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != len(Roles()) {
		t.Fatalf("layout lists %d indexes, want %d", len(m.Manifests), len(Roles()))
	}
	for i, d := range m.Manifests {
		r := Roles()[i]
		if d.Digest != want[r.Name] || d.Annotations["org.opencontainers.image.ref.name"] != RefName(r.Name, "v1.2.3") {
			t.Errorf("layout entry %d: %s %v, want %s named %s", i, d.Digest, d.Annotations, want[r.Name], RefName(r.Name, "v1.2.3"))
		}
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		// Every blob is in the layout: the flattened filesystem reads.
		cm, _ := child.IndexManifest()
		img, err := child.Image(cm.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, mutate.Extract(img)); err != nil {
			t.Fatalf("%s: read from layout: %v", r.Name, err)
		}
	}
	// A directory of other files is not replaced: a mistyped --out
	// removed it whole.
	other := filepath.Join(t.TempDir(), "notes")
	if err := os.MkdirAll(filepath.Join(other, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "sub", "important.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteLayout(other, "v1.2.3", imgs); err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Errorf("WriteLayout over a directory of other files: %v, want it refused", err)
	}
	if b, err := os.ReadFile(filepath.Join(other, "sub", "important.txt")); err != nil || string(b) != "keep" {
		t.Errorf("the directory's file after a refused WriteLayout: %q, %v", b, err)
	}
}
