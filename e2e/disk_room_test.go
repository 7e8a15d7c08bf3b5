package e2e

import (
	"crypto/rand"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/testdisk"
)

// TestAFullDiskGivesTheNextAttemptRoom: on a disk that `paddock up`'s CAS
// shares with its actions and has filled, keeping only a twentieth of it
// free, an action that needs more scratch room than that fails
// RESOURCE_EXHAUSTED (retryable) once, and its retry runs: the first
// attempt asks the CAS to evict for room. Nothing made the CAS evict,
// and every attempt failed while the disk held nothing but cached blobs
// (outside probe: Bazel retried five times, then failed the build).
func TestAFullDiskGivesTheNextAttemptRoom(t *testing.T) {
	needPaddock(t)
	data := testdisk.MountAt(t, filepath.Join(searchableTempDir(t), "disk"), 64<<20, 0)
	f := startUp(t, filepath.Join(data, "data"))
	c := newClient(t, f.addr)
	// Fill the CAS until its disk keeps only its headroom (3.2 MiB).
	var blobs [][]byte
	for range 60 {
		b := make([]byte, 1<<20)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, b)
	}
	c.upload(t.Context(), blobs...)

	d := c.prepare(t.Context(), action{cmd: shell("head -c 12000000 /dev/zero > scratch && echo done > out.txt", "out.txt"), doNotCache: true})
	var codesSeen []codes.Code
	for attempt := 1; attempt <= 3; attempt++ {
		resp, err := c.execute(t.Context(), d, true)
		if err != nil {
			t.Fatal(err)
		}
		st := status.FromProto(resp.Status)
		codesSeen = append(codesSeen, st.Code())
		if st.Code() == codes.OK && resp.Result.ExitCode == 0 {
			break
		}
		if st.Code() != codes.ResourceExhausted {
			t.Fatalf("attempt %d: status %v, exit code %d; want RESOURCE_EXHAUSTED or success", attempt, st, resp.GetResult().GetExitCode())
		}
	}
	t.Logf("attempts: %v", codesSeen)
	if last := codesSeen[len(codesSeen)-1]; last != codes.OK || len(codesSeen) > 2 {
		t.Fatalf("attempts ended %v: want the action to run by its second attempt", codesSeen)
	}
}
