// Package imagetest builds small container images for tests (the images
// package's own, the runner's, and the end-to-end tests) and serves them
// from go-containerregistry's in-process registry on loopback.
package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Entry is one tar entry of a test layer.
type Entry struct {
	Name     string
	Type     byte
	Mode     int64
	Body     string
	Linkname string
	UID      int
}

// File, Dir, Symlink and Hardlink build the common entries.
func File(name, body string, mode int64) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Mode: mode, Body: body}
}
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir, Mode: 0o755} }
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
}
func Hardlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeLink, Mode: 0o644, Linkname: target}
}

// TarBytes writes entries as an uncompressed (PAX) tar stream. A
// character device entry gets device 1:3.
func TarBytes(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Linkname,
			Uid: e.UID, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if e.Type == tar.TypeChar {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer is a layer of entries, compressed with comp.
func Layer(t testing.TB, comp compression.Compression, entries ...Entry) v1.Layer {
	t.Helper()
	b := TarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompression(comp), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Image is an image of layers for platform ("linux/amd64") with config cfg.
func Image(t testing.TB, platform string, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// Busybox returns Debian's static busybox, or skips the test.
func Busybox(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Skipf("needs a static busybox at %s (apt-get install busybox-static): %v", BusyboxPath, err)
	}
	return b
}

// BusyboxLayer is a gzip layer of Debian's static busybox at bin/busybox,
// a link bin/<applet> to it for each of applets, and extra entries after
// them: the smallest rootfs that runs a shell. It skips the test where
// there is no static busybox.
func BusyboxLayer(t testing.TB, applets []string, extra ...Entry) v1.Layer {
	t.Helper()
	entries := []Entry{Dir("bin"), File("bin/busybox", string(Busybox(t)), 0o755)}
	for _, a := range applets {
		entries = append(entries, Symlink("bin/"+a, "busybox"))
	}
	return Layer(t, compression.GZip, append(entries, extra...)...)
}

// MarkerImage is an image for platform, with config cfg, of one
// BusyboxLayer with applets and the file /etc/marker holding marker: a
// test tells the image's rootfs from the host's, and one image from
// another, by that file.
func MarkerImage(t testing.TB, platform string, cfg v1.Config, marker string, applets ...string) v1.Image {
	t.Helper()
	return Image(t, platform, cfg, BusyboxLayer(t, applets, Dir("etc"), File("etc/marker", marker, 0o644)))
}

// Serve starts an in-process registry on loopback for the rest of the test
// and returns its host:port.
func Serve(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Push writes img to host/repoTag and returns the container-image value
// naming it ("docker://host/repo:tag").
func Push(t testing.TB, host, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return "docker://" + host + "/" + repoTag
}
