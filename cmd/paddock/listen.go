package main

import (
	"fmt"
	"net"

	"golang.org/x/net/netutil"

	"github.com/paddock-build/paddock/internal/fdlimit"
	"github.com/paddock-build/paddock/internal/grpclimit"
)

// listenTCP listens on the TCP address addr with at most an eighth of the
// process's open-file limit (at least 64) of connections open at once;
// past it, Accept waits for one to close and new clients wait in the
// kernel's backlog, which takes no file of this process. Unbounded, a
// client that opened 20,000 connections and sent nothing took every open
// file of `paddock up`: the worker could not build input roots nor the
// scheduler write its journal until they timed out. Its connections'
// writes count in the send backlog (grpclimit.TrackSends).
func listenTCP(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return grpclimit.TrackSends(netutil.LimitListener(lis, fdlimit.Share(8, 64))), nil
}

// namedAddr is an address to listen on and the setting that names it,
// for errors.
type namedAddr struct{ addr, setting string }

// checkPortsFree binds each TCP address of addrs and lets it go again (an
// address with port 0 needs no check): `paddock up` checks its ports
// before it makes anything in its data directory or replays its journal,
// so that a port in use (another farm's, usually) leaves nothing behind.
// Another process may still take a port in between; the listen that
// follows then fails as it would have.
func checkPortsFree(addrs ...namedAddr) error {
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a.addr); err == nil && port == "0" {
			continue
		}
		lis, err := net.Listen("tcp", a.addr)
		if err != nil {
			return fmt.Errorf("%s: %w", a.setting, err)
		}
		lis.Close()
	}
	return nil
}
