package client

import (
	"bytes"
	"fmt"
	"io"
	"os"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// Blob is content to upload: bytes held in memory, or a local file read
// only if the server turns out to be missing it (so a rerun reads nothing
// but the files' hashes).
type Blob struct {
	Digest digest.Digest
	// Data is the content, when it is held in memory.
	Data []byte
	// Path is the local file holding the content, when Data is nil.
	Path string
	// Root, when set, is the directory Path is relative to, and Path is
	// opened only inside it (os.Root), at hashing and again at upload: a
	// file swapped for a symlink meanwhile that leads out of it is
	// refused. Opened by name, an input swapped for a link to a file
	// outside the input root while a server stalled was uploaded with
	// that file's contents.
	Root *os.Root
}

// NewBlob returns an in-memory blob (SHA-256).
func NewBlob(data []byte) Blob {
	return Blob{Digest: digest.FromBytes(repb.DigestFunction_SHA256, data), Data: data}
}

// ProtoBlob returns m serialized deterministically, as REv2 requires for
// messages whose digest names them (Action, Command, Directory).
func ProtoBlob(m proto.Message) Blob {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		// Only an invalid message (bad UTF-8 in a string field) fails; the
		// messages built here come from validated input.
		panic("client: marshal " + string(proto.MessageName(m)) + ": " + err.Error())
	}
	return NewBlob(b)
}

// FileBlob hashes the file at path and returns a blob that reads it again
// on upload.
func FileBlob(path string) (Blob, error) {
	f, err := os.Open(path)
	return hashed(f, err, Blob{Path: path})
}

// FileBlobIn is FileBlob for the file at rel inside root, opened there
// only (Blob.Root).
func FileBlobIn(root *os.Root, rel string) (Blob, error) {
	f, err := root.Open(rel)
	return hashed(f, err, Blob{Path: rel, Root: root})
}

// hashed returns b with the digest of f, the file b names as opened (or
// the error of opening it), and closes f.
func hashed(f *os.File, err error, b Blob) (Blob, error) {
	if err != nil {
		return Blob{}, err
	}
	defer f.Close()
	if b.Digest, err = digest.FromReader(repb.DigestFunction_SHA256, f); err != nil {
		return Blob{}, err
	}
	return b, nil
}

// open returns the blob's content.
func (b Blob) open() (io.ReadCloser, error) {
	switch {
	case b.Data != nil || b.Path == "":
		return io.NopCloser(bytes.NewReader(b.Data)), nil
	case b.Root != nil:
		return b.Root.Open(b.Path)
	}
	return os.Open(b.Path)
}

// bytes returns the blob's content in memory (small blobs, for batches).
func (b Blob) bytes() ([]byte, error) {
	if b.Data != nil || b.Path == "" {
		return b.Data, nil
	}
	r, err := b.open()
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, b.Digest.SizeBytes()+1))
	r.Close()
	if err == nil && int64(len(data)) != b.Digest.SizeBytes() {
		err = errChanged(b.Path)
	}
	return data, err
}

// errChanged reports a local file whose size differs from when it was
// hashed: uploading it would store bytes under the wrong digest.
func errChanged(path string) error {
	return fmt.Errorf("%s changed while it was being uploaded", path)
}
