package auth

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// tenantCalls bounds each tenant's calls in progress. A server's bound on
// calls (internal/grpclimit) is for the process's memory; without a
// share, one tenant's idle streams could hold all of it, and every other
// tenant's calls were refused. The share is taken in the server's tap
// (Interceptors.Admit) where there is one, so that a call counts from its
// headers on, before its request has arrived, and until its handler
// returns (admission).
// Calls of the public methods (health), which need no credentials, count
// as one party of their own with a small bound (maxPublicCalls): before,
// anyone reaching the port held the whole bound with idle health Watch
// streams. Health Checks count per connection (partyOf,
// maxChecksPerConnection).
// Identified callers without a tenant (workers, schedulers acting for
// themselves, the farm's own clients) are not counted here.
// Its methods are safe from several goroutines; an entry of open is
// deleted when its count falls to 0, so open holds only parties with
// calls in progress.
type tenantCalls struct {
	max    int
	mu     sync.Mutex
	open   map[party]int
	checks int // every connection's Checks (maxChecksInAll)
}

// party is what a call counts under in tenantCalls: a tenant's name,
// publicParty, or healthCheckParty with the connection the Check came on.
// name "" is not counted.
type party struct {
	name string
	conn connection // zero but for healthCheckParty
}

// connection identifies a client's connection while it is open. The
// addresses tell TCP connections apart, but not those of a UNIX socket
// (`paddock up`'s endpoint), whose clients all have the same unnamed
// address; grpc-go gives each connection one *peer.Peer, in the context
// of every stream of that connection, so the pointer tells any two apart.
// A count held in tenantCalls keeps its Peer from being collected, so no
// other connection's Peer can have that pointer while the count lasts.
type connection struct {
	addr string
	peer *peer.Peer
}

// connectionOf is the connection of a stream's context; zero (one party
// for every such stream) if grpc-go put no peer in it, which it does for
// every stream it serves.
func connectionOf(ctx context.Context) connection {
	pe, ok := peer.FromContext(ctx)
	if !ok {
		return connection{}
	}
	c := connection{peer: pe}
	if pe.Addr != nil {
		c.addr = pe.Addr.String()
	}
	if pe.LocalAddr != nil {
		c.addr += "|" + pe.LocalAddr.String()
	}
	return c
}

// publicParty is the key the public methods' calls count under, and
// healthCheckParty that of Health Check's (partyOf): no tenant name can
// be either (tenant names are printable).
const (
	publicParty      = "\x00public"
	healthCheckParty = "\x00health-check"
)

// healthCheck is the method partyOf counts apart.
const healthCheck = "/grpc.health.v1.Health/Check"

// maxPublicCalls bounds the public methods' calls in progress (but
// Checks, counted apart): health probes need a handful.
const maxPublicCalls = 1024

// maxChecksPerConnection bounds the Health Checks in progress on one
// connection, and only a high backstop (maxChecksInAll) bounds all
// connections' Checks together: a probe (kubelet's gRPC probe dials a
// connection for each) must not be refused because another connection
// holds Checks. Before, Checks had
// one bound of 1,024 for the server, and one anonymous connection that
// opened 1,100 Checks and never sent their requests held all of it for
// the request timeout (2 minutes): every probe was refused and the pods
// restarted. Memory stays bounded because the number of connections is:
// the listener takes at most an eighth of the open-file limit
// (cmd/paddock's listenTCP). A Check whose request has not come is an
// idle stream, about 12 KiB, with its headers, at most 16 KiB
// (grpclimit), so a connection holds at most 16 × 28 KiB = 448 KiB of
// Checks; at 65,536 open files, 8,192 connections hold at most 131,072
// Checks (3.5 GiB) until the request timeout, and tenantCalls.open at
// most 8,192 entries of Checks (an entry is deleted with its last Check);
// past that, maxChecksInAll. A Check whose request has come in part
// holds what came, up to the server's largest message, so its
// connection is closed if the rest has not come within seconds
// (grpclimit's publicRequestTimeout).
const maxChecksPerConnection = 16

// maxChecksInAll is a backstop on every connection's Checks together, for
// a large open-file limit (at a million files the listener takes 131,072
// connections: 56 GiB of Checks without it). 65,536 Checks are at most
// 1.8 GiB, and an attacker needs 4,096 connections to reach it.
const maxChecksInAll = 65536

// bound is how many calls p may have in progress.
func (c *tenantCalls) bound(p party) int {
	switch p.name {
	case healthCheckParty:
		return maxChecksPerConnection
	case publicParty:
		return min(c.max, maxPublicCalls)
	}
	return c.max
}

// take counts a call of p, or refuses it with RESOURCE_EXHAUSTED when p
// has its bound in progress. The returned func ends the call; call it
// once.
func (c *tenantCalls) take(p party) (func(), error) {
	if c == nil || p.name == "" {
		return func() {}, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.name == healthCheckParty && c.checks >= maxChecksInAll {
		refusals.share.Add(1)
		return nil, status.Errorf(codes.ResourceExhausted, "%d health Checks are in progress, as many as this server takes at once; retry later", c.checks)
	}
	if n := c.open[p]; n >= c.bound(p) {
		refusals.share.Add(1)
		switch p.name {
		case healthCheckParty:
			return nil, status.Errorf(codes.ResourceExhausted, "%d health Checks are in progress on this connection, as many as one connection may have at once; retry later", n)
		case publicParty:
			return nil, status.Errorf(codes.ResourceExhausted, "%d calls of public methods (health) are in progress, as many as this server takes at once; retry later", n)
		}
		return nil, status.Errorf(codes.ResourceExhausted, "tenant %q has %d calls in progress, as many as one tenant may have at once; retry later", p.name, n)
	}
	c.open[p]++
	check := p.name == healthCheckParty
	if check {
		c.checks++
	}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.open[p]--; c.open[p] == 0 {
			delete(c.open, p)
		}
		if check {
			c.checks--
		}
	}, nil
}

// LimitTenantCalls makes the interceptors refuse a tenant's call with
// RESOURCE_EXHAUSTED while the tenant has max calls in progress (streams
// included, from their start). Give it a share of the server's own bound
// on calls, so that the other tenants keep the rest. It returns a.
func (a *Interceptors) LimitTenantCalls(max int) *Interceptors {
	if a != nil && max > 0 {
		a.calls = &tenantCalls{max: max, open: map[party]int{}}
	}
	return a
}
