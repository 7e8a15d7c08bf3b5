// Package asset serves the Remote Asset API (build.bazel.remote.asset.v1)
// next to the CAS: Push records that a URI (with qualifiers) names a blob
// or a directory tree already in the CAS; Fetch answers from those
// records, and for FetchBlob of an http(s) URL with a checksum.sri
// qualifier (Bazel's --experimental_remote_downloader) downloads the
// content from an allowed host, verifies it, stores it and records it.
// The headers Bazel sends as qualifiers, credentials among them, go with
// the download to their URI's origin only (http_header.go).
//
// A record is served only while it has not expired and everything it
// names is still in the CAS: a record whose blob or tree was evicted is
// treated as missing (and removed), never handed to a client that would
// then fail to download it. Records are bounded on disk (MaxRecordBytes):
// past the bound the least recently used are removed, since any client
// that may read the CAS makes one with each allowed URL it fetches.
package asset

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/storage"
)

// Options configure the asset services. Zero values take the defaults
// named on each field.
type Options struct {
	// CAS holds the content records point at.
	CAS storage.BlobStore
	// Dir holds the records (and temporary download files).
	Dir string
	// AllowedHosts are the hosts ("host" or "host:port") FetchBlob may
	// download from. Empty: no downloads, only pushed content is served.
	AllowedHosts []string
	// AllowWithoutChecksum lets FetchBlob download content the client gave
	// no checksum.sri for. Off by default: unverified content from the
	// network would then be served to every client as if it were checked.
	AllowWithoutChecksum bool
	// FetchTimeout bounds one download (a request's own timeout may only
	// shorten it). Default 5 minutes.
	FetchTimeout time.Duration
	// MaxFetchBytes bounds one download. Default 1 GiB.
	MaxFetchBytes int64
	// MaxRecordBytes bounds the records on disk, each counted as its
	// length plus a 4 KiB block; past it the least recently used are
	// removed. Default 512 MiB (about 130,000 records).
	MaxRecordBytes int64
	// TreeChecks is how many directory records' trees are checked at
	// once, one client or tenant holding at most half of them. Default
	// storage.TreeWalkSlots().
	TreeChecks int
	// Now is the clock for expiry; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Server holds the Fetch and Push services.
type Server struct {
	fetch *fetchServer
	push  *pushServer
}

// The defaults of FetchTimeout and MaxFetchBytes, written once: New fills
// zero fields with them, and the storage config (configs.DefaultStorage)
// starts from them. DefaultMaxRecordBytes is MaxRecordBytes's.
const (
	DefaultFetchTimeout   = 5 * time.Minute
	DefaultMaxFetchBytes  = 1 << 30
	DefaultMaxRecordBytes = 512 << 20
)

// New builds the services; the record directory is created if needed.
// Temporary files a killed process left (downloads, records being
// written) are removed: Dir is this server's alone, as the roles lock
// the directory it is in.
func New(opts Options) (*Server, error) {
	if opts.CAS == nil || opts.Dir == "" {
		return nil, fmt.Errorf("asset: a CAS and a directory are required")
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.MaxFetchBytes <= 0 {
		opts.MaxFetchBytes = DefaultMaxFetchBytes
	}
	if opts.MaxRecordBytes <= 0 {
		opts.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	records, err := newRecordStore(filepath.Join(opts.Dir, "records"), opts.MaxRecordBytes)
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(opts.Dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("asset: clear interrupted downloads: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("asset: %w", err)
	}
	idx := &index{records: records, cas: opts.CAS, now: opts.Now, log: opts.Logger, walks: storage.NewTenantSlots(cmp.Or(opts.TreeChecks, storage.TreeWalkSlots()))}
	return &Server{
		fetch: &fetchServer{opts: opts, idx: idx, dl: newDownloader(opts.AllowedHosts, opts.MaxFetchBytes, tmp), slots: storage.NewTenantSlots(MaxDownloads)},
		push:  &pushServer{idx: idx, now: opts.Now},
	}, nil
}

// Register adds Fetch and Push to g.
func (s *Server) Register(g *grpc.Server) {
	rapb.RegisterFetchServer(g, s.fetch)
	rapb.RegisterPushServer(g, s.push)
}
