package configs

import "fmt"

// Backend is where the storage role keeps blobs and action results. It is
// a tree: exactly one field is set, and the composite kinds (added by the
// backends that need them) hold further Backends. Open it with the storage
// command's openBackend, which follows the same tree.
type Backend struct {
	// Disk keeps blobs and results on a local disk.
	Disk *DiskBackend `yaml:"disk"`
	// Remote fronts another REv2 storage endpoint.
	Remote *RemoteStorage `yaml:"remote"`
}

// DiskBackend is a CAS and action cache on local disk.
type DiskBackend struct {
	// Dir holds the blobs (Dir/cas) and action results (Dir/ac).
	Dir string `yaml:"dir"`
	// MaxBytes bounds the CAS; least recently used blobs are evicted past
	// it. 0 means unbounded.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// ActionCacheMaxBytes bounds the action cache. 0 means unbounded.
	ActionCacheMaxBytes ByteSize `yaml:"action_cache_max_bytes"`
}

// Validate checks that exactly one kind is set, here and below; path names
// this backend in errors ("backend", "backend.sharded.shards[1]").
func (b *Backend) Validate(path string) error {
	n := 0
	if b.Disk != nil {
		n++
		if b.Disk.Dir == "" {
			return fmt.Errorf("%s.disk.dir: must be set", path)
		}
	}
	if b.Remote != nil {
		n++
		if b.Remote.Endpoint == "" {
			return fmt.Errorf("%s.remote.endpoint: must be set", path)
		}
	}
	if n != 1 {
		return fmt.Errorf("%s: exactly one of disk or remote must be set, found %d", path, n)
	}
	return nil
}
