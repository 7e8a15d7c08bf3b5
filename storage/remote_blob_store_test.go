package storage_test

import (
	"context"
	"testing"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

func TestRemoteGetManyReadsABatch(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	remote := storage.NewRemoteBlobStore(ts.conn, storage.RemoteOptions{})
	var want []digest.Digest
	for _, s := range []string{"one", "two", "three"} {
		want = append(want, putString(t, ts.disk, s))
	}
	absent := sha("never stored")
	got, err := remote.GetMany(context.Background(), append(want, absent))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("GetMany returned %d blobs, want the 3 stored ones", len(got))
	}
	for i, s := range []string{"one", "two", "three"} {
		if string(got[want[i]]) != s {
			t.Errorf("blob %s = %q, want %q", want[i], got[want[i]], s)
		}
	}
	if _, ok := got[absent]; ok {
		t.Error("a missing blob was returned")
	}
}
