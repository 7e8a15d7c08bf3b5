package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one file or directory of a layer. Paths are relative, without a
// leading slash; parents must be entries too.
type entry struct {
	path     string
	dir      bool
	mode     int64
	uid, gid int
	body     []byte
}

// layerOf writes entries as one gzip-compressed OCI layer whose bytes
// depend only on the entries and mtime: entries sorted by path (a parent
// sorts before its children), fixed owner names left empty, PAX headers
// without access or change times, and a gzip header with no name or time.
func layerOf(entries []entry, mtime time.Time) (v1.Layer, error) {
	sorted := append([]entry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].path < sorted[j].path })
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for i, e := range sorted {
		if i > 0 && sorted[i-1].path == e.path {
			return nil, fmt.Errorf("layer: %s twice", e.path)
		}
		if e.path == "" || strings.HasPrefix(e.path, "/") || path.Clean(e.path) != e.path {
			return nil, fmt.Errorf("layer: bad path %q", e.path)
		}
		h := &tar.Header{Name: e.path, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime, Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.path+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.path, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// baseEntries are the minimal base every image shares: what a static Go
// binary needs from a root filesystem (CA certificates for TLS, a passwd
// and group file so the user has a name and a home, a sticky /tmp) and the
// data directory, owned by the unprivileged user so storage can write it
// without a volume.
func baseEntries(caCerts []byte) []entry {
	const passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	const group = "root:x:0:\nnonroot:x:65532:\n"
	return []entry{
		{path: "etc", dir: true, mode: 0o755},
		{path: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{path: "etc/group", mode: 0o644, body: []byte(group)},
		{path: "etc/ssl", dir: true, mode: 0o755},
		{path: "etc/ssl/certs", dir: true, mode: 0o755},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: caCerts},
		{path: "home", dir: true, mode: 0o755},
		{path: "home/nonroot", dir: true, mode: 0o700, uid: 65532, gid: 65532},
		{path: "root", dir: true, mode: 0o700},
		{path: "tmp", dir: true, mode: 0o1777},
		{path: "var", dir: true, mode: 0o755},
		{path: "var/lib", dir: true, mode: 0o755},
		{path: "var/lib/paddock", dir: true, mode: 0o755, uid: 65532, gid: 65532},
	}
}

// binaryEntries put the paddock binary at BinaryPath.
func binaryEntries(binary []byte) []entry {
	return []entry{
		{path: "usr", dir: true, mode: 0o755},
		{path: "usr/local", dir: true, mode: 0o755},
		{path: "usr/local/bin", dir: true, mode: 0o755},
		{path: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, body: binary},
	}
}
