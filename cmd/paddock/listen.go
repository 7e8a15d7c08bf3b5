package main

import (
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
