package storage

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/peer"

	"github.com/paddock-build/paddock/auth"
)

// TenantSlots is a pool of slots of which one sharer holds at most half,
// so that whatever one holds (calls it never reads, say) the others share
// the rest, as with the ByteStream slots and the request memory budget.
// A sharer is a tenant of the auth policy, or, for a call without one,
// its connection (shareOf). A sharer at its share waits for one of its
// own slots to free. The share is taken before the whole's, always in
// that order, so holders never wait on each other in a circle. A
// sharer's entry lives while it holds or waits for a slot: connections
// come and go, and are not few as the policy's tenants are. Safe for
// concurrent use.
type TenantSlots struct {
	all   chan struct{} // a token per slot held
	share int
	// waiting counts the callers waiting for a slot, for tests.
	waiting atomic.Int64
	mu      sync.Mutex
	shares  map[string]*slotShare // by sharer, while in use
}

// slotShare is one sharer's slots, and how many of its calls hold or
// wait for one (under TenantSlots.mu): at zero it is forgotten.
type slotShare struct {
	slots chan struct{}
	users int
}

// NewTenantSlots returns a pool of n slots. The asset API's tree checks
// share theirs so too.
func NewTenantSlots(n int) *TenantSlots {
	return &TenantSlots{all: make(chan struct{}, n), share: max(n/2, 1), shares: map[string]*slotShare{}}
}

// shareOf names the sharer of ctx's call: its tenant, or without one (no
// policy, or the farm's own workers) the client's address. Without it, a
// farm without a policy was one sharer: one client's 40 GetTree walks
// held every slot, and another's one-directory GetTree waited minutes
// behind them. The address, not RequestMetadata's tool_invocation_id,
// because the client chooses the id: a new one per call would make every
// call a sharer with a share of its own (and the map one entry a call).
// The IP address alone, without the port, for a remote client: per
// connection, one client's two connections held every slot, and a second
// client waited out its deadline. On loopback every client has the same
// address, so there the connection (IP and port) is the sharer: a local
// client can open connections to take the slots, as a local user can
// take the machine in other ways.
func shareOf(ctx context.Context) string {
	if t := auth.TenantOf(ctx); t != "" {
		return "tenant " + t
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		return "peer " + tcp.IP.String()
	}
	return "peer " + p.Addr.String()
}

// use returns sharer's share, counting the caller as its user until it
// calls done.
func (p *TenantSlots) use(sharer string) *slotShare {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.shares[sharer]
	if s == nil {
		s = &slotShare{slots: make(chan struct{}, p.share)}
		p.shares[sharer] = s
	}
	s.users++
	return s
}

// done ends a use of sharer's share.
func (p *TenantSlots) done(sharer string, s *slotShare) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(p.shares, sharer)
	}
}

// take waits as long as ctx lasts for a slot, one of sharer's share first
// ("" has none: it counts only against the whole), and returns the
// function that frees it.
func (p *TenantSlots) take(ctx context.Context, sharer string) (release func(), err error) {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	var own *slotShare
	if sharer != "" {
		own = p.use(sharer)
		if err := take(ctx, own.slots); err != nil {
			p.done(sharer, own)
			return nil, err
		}
	}
	if err := take(ctx, p.all); err != nil {
		if own != nil {
			<-own.slots
			p.done(sharer, own)
		}
		return nil, err
	}
	return func() {
		<-p.all
		if own != nil {
			<-own.slots
			p.done(sharer, own)
		}
	}, nil
}

// Take is take for the sharer of ctx's call (shareOf).
func (p *TenantSlots) Take(ctx context.Context) (release func(), err error) {
	return p.take(ctx, shareOf(ctx))
}

// held returns how many slots are held, and how many callers wait for
// one.
func (p *TenantSlots) held() (holding, waiting int) {
	return len(p.all), int(p.waiting.Load())
}
