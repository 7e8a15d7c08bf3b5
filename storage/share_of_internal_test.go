package storage

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc/peer"
)

// TestShareOfARemoteClientIsItsAddress: without a tenant, a remote
// client's connections are one sharer of the GetTree slots (one client's
// two connections held every slot when each was its own), while on
// loopback, where every client has the same address, each connection is.
func TestShareOfARemoteClientIsItsAddress(t *testing.T) {
	at := func(ip string, port int) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}})
	}
	if a, b := shareOf(at("10.0.0.7", 40001)), shareOf(at("10.0.0.7", 40002)); a != b || a == "" {
		t.Errorf("one remote client's two connections: sharers %q and %q, want one", a, b)
	}
	if a, b := shareOf(at("10.0.0.7", 40001)), shareOf(at("10.0.0.8", 40001)); a == b {
		t.Errorf("two remote clients: one sharer %q", a)
	}
	if a, b := shareOf(at("127.0.0.1", 40001)), shareOf(at("127.0.0.1", 40002)); a == b {
		t.Errorf("two loopback connections: one sharer %q", a)
	}
	if got := shareOf(context.Background()); got != "" {
		t.Errorf("no peer: sharer %q, want none", got)
	}
}
