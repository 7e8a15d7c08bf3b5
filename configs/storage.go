package configs

import (
	"time"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/storage"
)

// Storage configures `paddock storage`, and the storage part of `paddock up`.
type Storage struct {
	// Listen is the gRPC address to serve CAS, Action Cache, ByteStream and
	// Capabilities on.
	Listen string `yaml:"listen"`
	// Dir holds the blobs and action cache entries of the disk backend.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the disk the CAS's files take (each blob rounded up
	// to whole blocks, plus its inode); least recently used blobs are
	// evicted past it. 0 means unbounded: nothing is ever evicted. That
	// is how the disk CAS has always read it, and a farm may rely on it,
	// though 0 is the default in the worker's input and output bounds and
	// the runner's memory limits (docs/configuration.md says which is
	// which).
	MaxBytes ByteSize `yaml:"max_bytes"`
	// ActionCacheMaxBytes bounds the disk action cache; least recently used
	// entries are evicted past it. 0 means unbounded.
	ActionCacheMaxBytes ByteSize `yaml:"action_cache_max_bytes"`
	// MaxBatchTotalSizeBytes is advertised to clients and enforced on the
	// batch RPCs; larger transfers go through ByteStream.
	MaxBatchTotalSizeBytes ByteSize `yaml:"max_batch_total_size_bytes"`
	// MaxInlineBytes bounds the stdout, stderr and output file contents that
	// GetActionResult inlines on request.
	MaxInlineBytes ByteSize `yaml:"max_inline_bytes"`
	// UploadIdleTimeout is how long an interrupted ByteStream upload is kept
	// for the client to resume.
	UploadIdleTimeout time.Duration `yaml:"upload_idle_timeout"`
	// Remote, when its endpoint is set, replaces the disk backend: this
	// server then fronts another REv2 storage endpoint. (The older form of
	// Backend.Remote; a config may not set both.)
	Remote RemoteStorage `yaml:"remote"`
	// Backend, when set, replaces Dir's disk and Remote: one backend or a
	// tree of them. Dir still holds the Remote Asset API's records.
	Backend *Backend `yaml:"backend"`
	// CheckCompleteness has the action cache serve and accept only results
	// whose Action and outputs are in this server's CAS. Turn it off only
	// on a storage node behind a sharded front: its CAS holds just its
	// share of the blobs, and the front checks against all of them.
	CheckCompleteness bool `yaml:"check_completeness"`
	// Assets configures the Remote Asset API (Fetch and Push) served next
	// to the CAS; its records live under Dir/assets.
	Assets Assets `yaml:"assets"`
}

// Assets configures the Remote Asset API.
type Assets struct {
	// AllowedHosts are the hosts ("host" or "host:port") FetchBlob may
	// download http(s) URLs from, redirects included. Empty: nothing is
	// downloaded; only pushed content is served.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// AllowWithoutChecksum lets FetchBlob download when the client sends
	// no checksum.sri qualifier. Off: unverified content would be served
	// to every client.
	AllowWithoutChecksum bool `yaml:"allow_without_checksum"`
	// FetchTimeout bounds one download.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// MaxFetchBytes bounds one download.
	MaxFetchBytes ByteSize `yaml:"max_fetch_bytes"`
}

// RemoteStorage names another REv2 endpoint to use as the backend.
type RemoteStorage struct {
	// Endpoint is host:port of the remote REv2 server (plain gRPC).
	Endpoint string `yaml:"endpoint"`
	// InstanceName is the remote instance the front's calls go to, so
	// that a remote serving only that instance serves them all. CAS calls
	// use it as it is. Action cache calls keep each client's instance
	// name below it (NAME for the empty name, NAME/CLIENT otherwise): the
	// action cache is keyed by instance name, and one name for every
	// client would merge tenants' results. Empty: clients' names as they
	// are for the action cache, "" for the CAS.
	InstanceName string `yaml:"instance_name"`
}

// DefaultStorage returns the defaults that a config file overrides; the
// server's limits are the storage package's own.
func DefaultStorage() Storage {
	return Storage{
		Listen:                 "127.0.0.1:8980",
		Dir:                    "/var/lib/paddock/storage",
		MaxBytes:               10 << 30,
		ActionCacheMaxBytes:    1 << 30,
		MaxBatchTotalSizeBytes: storage.DefaultMaxBatchTotalSizeBytes,
		MaxInlineBytes:         storage.DefaultMaxInlineBytes,
		UploadIdleTimeout:      storage.DefaultUploadIdleTimeout,
		CheckCompleteness:      true,
		Assets:                 Assets{FetchTimeout: asset.DefaultFetchTimeout, MaxFetchBytes: asset.DefaultMaxFetchBytes},
	}
}
