package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Hostile input through a real `paddock up`: each case asserts the status,
// that the message names no host path, that nothing was cached, and that
// the farm then runs the next action normally.

// checkRefused checks an Execute error: its code, a message free of the
// farm's host paths, and bounded in size.
func checkRefused(t *testing.T, f *farm, err error, code codes.Code, want string) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), want) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), code, want)
	}
	if strings.Contains(st.Message(), f.data) || strings.Contains(st.Message(), "/tmp/") {
		t.Errorf("the message names a host path: %q", st.Message())
	}
	if len(st.Message()) > 2000 {
		t.Errorf("the message is %d bytes long", len(st.Message()))
	}
	return st
}

func checkNotCached(t *testing.T, f *farm, d *repb.Digest) {
	t.Helper()
	ac := repb.NewActionCacheClient(dial(t, f.addr))
	if r, err := ac.GetActionResult(t.Context(), &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
		t.Errorf("the action cache has %v (%v), want NOT_FOUND", r, err)
	}
}

// checkFarmWorks runs a plain action to the end.
func checkFarmWorks(t *testing.T, c *client, salt string) {
	t.Helper()
	if _, out, _ := c.run(t.Context(), action{cmd: shell("echo fine " + salt)}); out != "fine "+salt+"\n" {
		t.Fatalf("the next action's stdout %q", out)
	}
}

// TestCorruptInputIsCaughtBeforeUse: a CAS file damaged at rest (one byte
// flipped, or truncated) after it was uploaded and used is caught before
// an action reads it: Execute answers FAILED_PRECONDITION with a MISSING
// violation for the blob (Bazel then uploads it again), nothing is cached,
// and after the upload the action sees the right bytes.
func TestCorruptInputIsCaughtBeforeUse(t *testing.T) {
	f := startUp(t, "")
	c := newClient(t, f.addr)
	ctx := t.Context()
	for i, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[3] ^= 0x01; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c.withT(t)
			content := []byte(fmt.Sprintf("the true content of input %d\n", i))
			root := tree{files: map[string]inputFile{"in.txt": {data: content}}}
			if _, out, _ := c.run(ctx, action{cmd: shell("cat in.txt; echo first"), root: root}); out != string(content)+"first\n" {
				t.Fatalf("first run's stdout %q", out)
			}
			h := digestOf(content).Hash
			p := filepath.Join(f.data, "storage", "cas", "sha256", h[:2], h)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.edit(b), 0o444); err != nil {
				t.Fatal(err)
			}
			d := c.prepare(ctx, action{cmd: shell("cat in.txt; echo second"), root: root})
			// prepare uploaded the tree again, but the CAS still indexes
			// the damaged file, so the upload was skipped as present.
			resp, err := c.execute(ctx, d, true)
			if err == nil {
				err = status.ErrorProto(resp.Status)
			}
			st := checkRefused(t, f, err, codes.FailedPrecondition, digestOf(content).Hash)
			found := false
			for _, det := range st.Details() {
				if pf, ok := det.(*errdetails.PreconditionFailure); ok {
					for _, v := range pf.Violations {
						found = found || v.Type == "MISSING" && strings.Contains(v.Subject, h)
					}
				}
			}
			if !found {
				t.Errorf("no MISSING violation for the damaged blob in %v", st.Details())
			}
			checkNotCached(t, f, d)
			// What Bazel does next: upload the missing blob, execute again.
			c.upload(ctx, content)
			resp, err = c.execute(ctx, d, true)
			if err != nil || status.FromProto(resp.Status).Code() != codes.OK {
				t.Fatalf("after the upload: %v %v", err, resp.GetStatus())
			}
			if out := string(c.read(ctx, resp.Result.StdoutDigest)); out != string(content)+"second\n" {
				t.Fatalf("after the upload the action read %q", out)
			}
		})
	}
}
