package configs

import (
	"fmt"
	"math"
	"strings"
)

// Backend is where the storage role keeps blobs and action results. It is
// a tree: exactly one field is set, and the composite kinds (added by the
// backends that need them) hold further Backends. Open it with the storage
// command's openBackend, which follows the same tree.
type Backend struct {
	// Disk keeps blobs and results on a local disk.
	Disk *DiskBackend `yaml:"disk"`
	// Remote fronts another REv2 storage endpoint.
	Remote *RemoteStorage `yaml:"remote"`
	// Cached keeps a bounded local disk cache of the CAS in front of
	// another backend (written through; the action cache is the backend's).
	Cached *CachedBackend `yaml:"cached"`
	// Sharded spreads blobs and action results over several backends.
	Sharded *ShardedBackend `yaml:"sharded"`
	// Mirrored keeps everything on two backends.
	Mirrored *MirroredBackend `yaml:"mirrored"`
	// S3 keeps blobs and results in an S3-compatible bucket.
	S3 *S3Backend `yaml:"s3"`
}

// DiskBackend is a CAS and action cache on local disk.
type DiskBackend struct {
	// Dir holds the blobs (Dir/cas) and action results (Dir/ac).
	Dir string `yaml:"dir"`
	// MaxBytes bounds the disk the CAS's files take (each blob rounded up
	// to whole blocks, plus its inode); least recently used blobs are
	// evicted past it. 0 means unbounded.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// ActionCacheMaxBytes bounds the action cache. 0 means unbounded.
	ActionCacheMaxBytes ByteSize `yaml:"action_cache_max_bytes"`
}

// CachedBackend is a local disk cache of blobs in front of Backend.
type CachedBackend struct {
	// Dir holds the cached blobs.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the cache (required): least recently used blobs are
	// evicted past it, and blobs larger than it are not cached.
	MaxBytes ByteSize `yaml:"max_bytes"`
	// Backend is where blobs are written and read from on a miss.
	Backend *Backend `yaml:"backend"`
}

// ShardedBackend spreads keys over Shards by weighted rendezvous hashing
// of the blob or action digest. Shards are known by name: renaming one
// moves its keys, reordering them moves nothing.
type ShardedBackend struct {
	Shards []Shard `yaml:"shards"`
}

// Shard is one backend of a ShardedBackend.
type Shard struct {
	// Name identifies the shard in placement and in errors clients see.
	Name string `yaml:"name"`
	// Weight is the shard's share of the keys relative to the others
	// (e.g. its capacity); it must be positive. Omitted: 1.
	Weight *float64 `yaml:"weight"`
	// Backend holds the shard's keys.
	Backend *Backend `yaml:"backend"`
}

// MirroredBackend keeps every blob and action result on both Backends;
// either may be down without clients noticing. Reads prefer the first.
type MirroredBackend struct {
	Backends []Backend `yaml:"backends"`
}

// Validate checks that exactly one kind is set, here and below; path names
// this backend in errors ("backend", "backend.sharded.shards[1].backend").
func (b *Backend) Validate(path string) error {
	var kinds []string
	var err error
	check := func(set bool, kind string, f func(string) error) {
		if !set {
			return
		}
		kinds = append(kinds, kind)
		if err == nil {
			err = f(path + "." + kind)
		}
	}
	check(b.Disk != nil, "disk", func(p string) error { return required(p+".dir", b.Disk.Dir) })
	check(b.Remote != nil, "remote", func(p string) error { return required(p+".endpoint", b.Remote.Endpoint) })
	check(b.Cached != nil, "cached", func(p string) error { return b.Cached.validate(p) })
	check(b.Sharded != nil, "sharded", func(p string) error { return b.Sharded.validate(p) })
	check(b.Mirrored != nil, "mirrored", func(p string) error { return b.Mirrored.validate(p) })
	check(b.S3 != nil, "s3", func(p string) error { return b.S3.Validate(p) })
	if len(kinds) != 1 {
		return fmt.Errorf("%s: exactly one of disk, remote, s3, cached, sharded or mirrored must be set, found %d (%s)", path, len(kinds), strings.Join(kinds, ", "))
	}
	return err
}

func required(path, value string) error {
	if value == "" {
		return fmt.Errorf("%s: must be set", path)
	}
	return nil
}

func child(path string, b *Backend) error {
	if b == nil {
		return fmt.Errorf("%s: must be set", path)
	}
	return b.Validate(path)
}

func (c *CachedBackend) validate(path string) error {
	if err := required(path+".dir", c.Dir); err != nil {
		return err
	}
	if c.MaxBytes <= 0 {
		return fmt.Errorf("%s.max_bytes: must be set: the cache is bounded", path)
	}
	return child(path+".backend", c.Backend)
}

func (s *ShardedBackend) validate(path string) error {
	if len(s.Shards) == 0 {
		return fmt.Errorf("%s.shards: at least one shard is needed", path)
	}
	seen := map[string]int{}
	for i, sh := range s.Shards {
		p := fmt.Sprintf("%s.shards[%d]", path, i)
		if err := required(p+".name", sh.Name); err != nil {
			return err
		}
		if j, dup := seen[sh.Name]; dup {
			return fmt.Errorf("%s.name: %q is also the name of shards[%d]", p, sh.Name, j)
		}
		seen[sh.Name] = i
		if w := sh.WeightOrDefault(); !(w > 0) || math.IsInf(w, 0) {
			return fmt.Errorf("%s.weight: must be a positive number, got %v", p, w)
		}
		if err := child(p+".backend", sh.Backend); err != nil {
			return err
		}
	}
	return nil
}

// WeightOrDefault is the shard's weight, 1 when omitted.
func (s Shard) WeightOrDefault() float64 {
	if s.Weight == nil {
		return 1
	}
	return *s.Weight
}

func (m *MirroredBackend) validate(path string) error {
	if len(m.Backends) != 2 {
		return fmt.Errorf("%s.backends: exactly two backends are needed, found %d", path, len(m.Backends))
	}
	for i := range m.Backends {
		if err := m.Backends[i].Validate(fmt.Sprintf("%s.backends[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}
