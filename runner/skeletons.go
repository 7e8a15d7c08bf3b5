package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// skeletons holds the skeleton directories made so far, one per plan, in
// dir (the state directory's rootfs/, emptied at start-up). There is one
// per distinct plan (input root path and the host directories above it),
// so few; but InputRootAbsolutePath is the client's, and the host's
// directories change, so they are bounded (maxSkeletons,
// maxSkeletonEntries): past the bound, the least recently used skeleton
// no sandbox is using is removed to make room. Kept until a restart, as
// they once were, one tenant's made-up paths took the whole bound in
// seconds, and from then on any change to the names in /, /var or
// /var/lib (a package installed) made every tenant's plain action
// RESOURCE_EXHAUSTED. Only when every skeleton is in use is a new plan
// refused. Safe for concurrent use.
type skeletons struct {
	dir     string
	mu      sync.Mutex
	byKey   map[string]*skeleton
	entries int    // in all the skeletons
	clock   uint64 // counts uses, for least recently used
	evicted int    // names the evicted directories, removed in the background
}

// skeleton is one skeleton directory, the sandboxes using it, and when it
// was last taken or given back.
type skeleton struct {
	path    string
	entries int
	users   int
	used    uint64
}

func newSkeletons(dir string) *skeletons {
	return &skeletons{dir: dir, byKey: map[string]*skeleton{}}
}

// acquire returns the skeleton directory for v, whose key() is key,
// creating it if needed, and the function that ends the caller's use of
// it: until then it is not removed. The key is the caller's, computed
// once per plan rather than hashed again on every sandbox.
func (s *skeletons) acquire(key string, v *hostView) (string, func(), error) {
	s.mu.Lock()
	sk := s.byKey[key]
	if sk == nil {
		var gone []string
		var err error
		sk, gone, err = s.make(key, v)
		defer removeEvicted(gone)
		if err != nil {
			s.mu.Unlock()
			return "", nil, err
		}
	}
	sk.users++
	s.clock++
	sk.used = s.clock
	s.mu.Unlock()
	var once sync.Once
	return sk.path, func() {
		once.Do(func() {
			s.mu.Lock()
			sk.users--
			s.clock++
			sk.used = s.clock
			s.mu.Unlock()
		})
	}, nil
}

// make makes the skeleton of v under key, first evicting the least
// recently used ones not in use until it fits the bounds. It returns the
// evicted directories, renamed out of the way, for the caller to remove
// without the lock. Called with s.mu held.
func (s *skeletons) make(key string, v *hostView) (*skeleton, []string, error) {
	var gone []string
	for len(s.byKey) >= maxSkeletons || s.entries+len(v.Skeleton) > maxSkeletonEntries {
		victim := s.leastRecentlyUsedIdle()
		if victim == "" {
			return nil, gone, status.Errorf(codes.ResourceExhausted, "this runner's sandboxes are using the host's root for %d input root paths (%d entries), its most; retry when some have ended", len(s.byKey), s.entries)
		}
		old := s.byKey[victim]
		delete(s.byKey, victim)
		s.entries -= old.entries
		s.evicted++
		trash := filepath.Join(s.dir, fmt.Sprintf(".evicted-%d", s.evicted))
		if err := os.Rename(old.path, trash); err == nil {
			gone = append(gone, trash)
		}
	}
	p := filepath.Join(s.dir, key)
	if err := os.RemoveAll(p); err != nil { // left by a crash
		return nil, gone, err
	}
	if err := v.create(p); err != nil {
		// Give back what it took at once: on a full disk, every
		// inode counts, and no later acquire may come for this plan.
		_ = os.RemoveAll(p)
		return nil, gone, err
	}
	sk := &skeleton{path: p, entries: len(v.Skeleton)}
	s.byKey[key] = sk
	s.entries += sk.entries
	return sk, gone, nil
}

// leastRecentlyUsedIdle is the key of the least recently used skeleton no
// sandbox is using, or "" if all are in use. A scan: it runs only when a
// new plan meets the bound.
func (s *skeletons) leastRecentlyUsedIdle() string {
	var key string
	var oldest uint64
	for k, sk := range s.byKey {
		if sk.users == 0 && (key == "" || sk.used < oldest) {
			key, oldest = k, sk.used
		}
	}
	return key
}

// removeEvicted removes evicted skeleton directories (renamed already, so
// a plan made again under the same key is not in their way).
func removeEvicted(dirs []string) {
	for _, d := range dirs {
		_ = os.RemoveAll(d)
	}
}
