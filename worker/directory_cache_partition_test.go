package worker_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// TestDirectoriesAreCachedPerPartition: a Directory one tenant's action
// fetched is not served from the worker's cache to another tenant's
// action naming its digest: that action's partition does not hold it, so
// it is MISSING. Before, the cache was keyed by digest alone, and the
// other tenant's input root was laid out with the first tenant's names,
// symlink targets and file digests.
func TestDirectoriesAreCachedPerPartition(t *testing.T) {
	dir := t.TempDir()
	byTenant := func(instance string) string { first, _, _ := strings.Cut(instance, "/"); return first }
	cas := storage.NewPartitionedBlobStore(byTenant, func(string) (storage.BlobStore, error) { return storage.NewMemoryBlobStore(), nil })
	files, err := worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas, PartitionOf: byTenant})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Options{ID: "w1", CAS: cas, AC: storage.NewMemoryActionCache(), Files: files, Runner: &farmtest.ExecRunner{}, BuildDir: filepath.Join(dir, "builds")})
	if err != nil {
		t.Fatal(err)
	}
	put := func(instance string, m proto.Message) digest.Digest {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		d := digest.FromBytes(sha256, b)
		if err := cas.Put(storage.WithInstance(context.Background(), instance), d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	secret := &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "creds", Target: "deploy-token-for-prod.txt"}}}
	run := func(instance string, root *repb.Directory, storeSecret bool) *repb.ExecuteResponse {
		if storeSecret {
			put(instance, secret)
		}
		cmd := put(instance, sh("ls -R secret-project"))
		rd := put(instance, root)
		ad := put(instance, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: rd.Proto(), DoNotCache: true})
		return w.Execute(context.Background(), &workerpb.Assignment{
			OperationName: "operations/" + instance, InstanceName: instance, DigestFunction: int32(sha256),
			ActionDigest: &workerpb.Digest{Hash: ad.Hash(), SizeBytes: ad.SizeBytes()},
		})
	}
	sd := digest.FromBytes(sha256, func() []byte { b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(secret); return b }())
	root := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "secret-project", Digest: sd.Proto()}}}
	if resp := run("team-b/main", root, true); resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 0 {
		t.Fatalf("team-b's own action: %v, exit %d", resp.Status, resp.Result.GetExitCode())
	}
	resp := run("team-a/main", root, false)
	if st := status.FromProto(resp.Status); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), sd.Hash()) {
		t.Fatalf("team-a naming team-b's directory: %v, want FAILED_PRECONDITION with it MISSING", st)
	}
}
