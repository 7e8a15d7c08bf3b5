package storage

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/hops"
)

// RemoteActionCache is an ActionCache over another REv2 endpoint's
// ActionCache service. The remote checks completeness itself.
//
// Results are kept apart by instance name on the remote as here: the
// caller's instance name is sent as it is, or, when an instance name is
// configured (NewRemoteActionCacheUnder), below it (remoteACInstance).
// Below, not instead: the action cache is keyed by instance name, and a
// tenant of an auth policy reaches only its own instance names, so one
// fixed name for every call would let a tenant read, and with ac-write
// overwrite, the results of another tenant's actions of the same digest.
type RemoteActionCache struct {
	ac       repb.ActionCacheClient
	instance string
}

// NewRemoteActionCache returns an ActionCache that talks to conn and sends
// each call's instance name as it is, and its caller's tenant
// (forwardingConn), as a RemoteBlobStore with ForwardInstance does.
func NewRemoteActionCache(conn grpc.ClientConnInterface) *RemoteActionCache {
	return NewRemoteActionCacheUnder(forwardingConn(conn, true), "")
}

// forwardingConn is conn, sending with each call the tenant of the
// caller it is made for when forward is set (auth.ForwardTenants): a
// scheduler's front reaches storage for every tenant over one connection
// under its own credential, and storage counts each call in its tenant's
// shares only when told whose it is. Only where the instance name is the
// caller's own: a front that keeps every caller under a configured name
// (NewRemoteActionCacheUnder, RemoteOptions.InstanceName) is one client of
// its remote, not its tenants'.
func forwardingConn(conn grpc.ClientConnInterface, forward bool) grpc.ClientConnInterface {
	if !forward {
		return conn
	}
	return auth.ForwardTenants(conn)
}

// NewRemoteActionCacheUnder returns an ActionCache that talks to conn and
// keeps every result under the remote instance name instance: the one a
// front's CAS calls use (RemoteOptions.InstanceName), so that a remote
// serving only that instance serves the action cache too.
func NewRemoteActionCacheUnder(conn grpc.ClientConnInterface, instance string) *RemoteActionCache {
	return &RemoteActionCache{ac: repb.NewActionCacheClient(hops.Conn(conn)), instance: instance}
}

// remoteACInstance is the remote instance name under which a front
// configured with instance keeps the results of the caller's instance
// name caller: instance itself for the empty name (the usual client's),
// else instance/caller. Distinct callers' names stay distinct (caller is
// what follows "instance/"), and a name below instance stays below it, as
// REv2 servers route and Paddock's policies grant instance names by
// "/"-separated prefix.
func remoteACInstance(instance, caller string) string {
	switch {
	case instance == "":
		return caller
	case caller == "":
		return instance
	}
	return instance + "/" + caller
}

// Get implements ActionCache.
func (c *RemoteActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	return c.ac.GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: remoteACInstance(c.instance, instance), ActionDigest: action.Proto(), DigestFunction: action.Function(),
	})
}

// Put implements ActionCache.
func (c *RemoteActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	_, err := c.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		InstanceName: remoteACInstance(c.instance, instance), ActionDigest: action.Proto(), ActionResult: result, DigestFunction: action.Function(),
	})
	return err
}

var _ ActionCache = (*RemoteActionCache)(nil)
