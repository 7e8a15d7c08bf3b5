package auth_test

import (
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// TestEmptyInstanceNameTenant: a tenant that owns the empty instance name
// alone (instance_names: [""], for clients that always send it, such as
// BuildStream 1.x) runs actions there beside a tenant with a prefix, over
// TLS through the whole farm; neither reaches the other's instances, and
// the empty name's blobs are in its own partition.
func TestEmptyInstanceNameTenant(t *testing.T) {
	const tokenDefault = "default-tenant-token"
	sf := startSecureFarmWith(t, fmt.Sprintf(`tenants:
  - name: default
    instance_names: [""]
    identities: [{name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}]
  - name: team-a
    instance_prefixes: [team-a]
    identities: [{name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}]
workers:
  - {name: by-cert, certificate: "spiffe://farm.test/worker"}
`, hashOf(tokenDefault), hashOf(tokenA)))
	def, a := sf.dial(t, tokenDefault, nil), sf.dial(t, tokenA, nil)
	ad := farmtest.UploadAction(t, def, "", []byte("the default tenant's input"), "/bin/true")
	if _, err := execOnce(t, def, "", ad); err != nil {
		t.Fatalf("the default tenant's action under the empty name: %v", err)
	}
	_, err := execOnce(t, def, "team-a", ad)
	wantCode(t, err, codes.PermissionDenied, "the default tenant under team-a")
	_, err = execOnce(t, a, "", ad)
	wantCode(t, err, codes.PermissionDenied, "team-a under the empty name")
	secret := digest.FromBytes(repb.DigestFunction_SHA256, []byte("the default tenant's input"))
	r, err := repb.NewContentAddressableStorageClient(a).FindMissingBlobs(t.Context(), &repb.FindMissingBlobsRequest{
		InstanceName: "team-a", BlobDigests: []*repb.Digest{secret.Proto()}})
	if err != nil || len(r.MissingBlobDigests) != 1 {
		t.Errorf("team-a's FindMissingBlobs of the default tenant's input: %v, %v; want it missing", r, err)
	}
}
