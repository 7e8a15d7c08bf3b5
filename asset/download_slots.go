package asset

import (
	"context"
	"sync"

	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
)

// MaxDownloads bounds the downloads in progress. Each holds a temporary
// file of up to MaxFetchBytes until its checksum is checked, and neither
// the CAS's size nor any tenant's limits count those files: eight 1 GB
// downloads put 3.8 GB in them within seconds. One tenant has at most
// half the slots, so that the others' fetches still start; a download
// past either bound waits for a slot (or its deadline) rather than fail,
// since Bazel does not retry a remote download.
const MaxDownloads = 4

// downloadSlots are the MaxDownloads slots, and each tenant's half.
type downloadSlots struct {
	all       chan struct{}
	mu        sync.Mutex
	perTenant map[string]chan struct{}
}

func newDownloadSlots(n int) *downloadSlots {
	return &downloadSlots{all: make(chan struct{}, n), perTenant: map[string]chan struct{}{}}
}

// take waits for a slot of the caller's tenant and one of all; the
// returned func gives both back.
func (s *downloadSlots) take(ctx context.Context) (func(), error) {
	tenant := auth.TenantOf(ctx)
	s.mu.Lock()
	mine := s.perTenant[tenant]
	if mine == nil {
		mine = make(chan struct{}, max(1, cap(s.all)/2))
		s.perTenant[tenant] = mine
	}
	s.mu.Unlock()
	select {
	case mine <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	select {
	case s.all <- struct{}{}:
		return func() { <-s.all; <-mine }, nil
	case <-ctx.Done():
		<-mine
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
