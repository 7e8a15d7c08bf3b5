package storage_test

import (
	"testing"

	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// A remote action cache under a configured instance name (a front's
// remote.instance_name) still keeps every caller's instance apart
// (InstancesArePartitioned): one fixed name for every call would merge
// the tenants' results.
func TestRemoteActionCacheUnderAnInstanceConformance(t *testing.T) {
	storagetest.TestActionCache(t, func(t *testing.T) storage.ActionCache {
		srv := startServer(t, storage.ServerOptions{})
		// The server refuses results for Actions its CAS does not hold.
		putString(t, srv.disk, "action")
		return storage.NewRemoteActionCacheUnder(srv.conn, "inst-x")
	})
}
