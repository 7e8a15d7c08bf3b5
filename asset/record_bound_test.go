package asset_test

import (
	"io/fs"
	"path/filepath"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/asset"
)

// countRecords is the number of record files under an asset directory.
func countRecords(t *testing.T, dir string) int {
	t.Helper()
	return len(recordSizes(t, dir))
}

// recordSizes are the sizes of the record files under an asset directory.
func recordSizes(t *testing.T, dir string) []int64 {
	t.Helper()
	var sizes []int64
	err := filepath.WalkDir(filepath.Join(dir, "records"), func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() && de.Name() == "tmp" {
			return filepath.SkipDir
		}
		if de.Type().IsRegular() {
			info, err := de.Info()
			if err != nil {
				return err
			}
			sizes = append(sizes, info.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

// TestRecordsAreBounded: any client that may read the CAS makes a record
// with each FetchBlob of a new allowed URL, so the records are bounded
// (max_record_bytes, each counted as its length plus a 4 KiB block):
// past it the least recently written or found go. A restart over the
// same directory applies a lower bound at once.
func TestRecordsAreBounded(t *testing.T) {
	const room = 3 * (4096 + 300) // three small records
	h := start(t, nil)
	dir := t.TempDir()
	opts := asset.Options{CAS: h.cas, Dir: dir, Now: h.clock.Now, MaxRecordBytes: room}
	fetch, push := serve(t, opts)
	ctx := readsStatus(t)
	blob := h.put(t, []byte("recorded"))
	pushAs := func(uri string) {
		t.Helper()
		if _, err := push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{uri}, BlobDigest: blob.Proto()}); err != nil {
			t.Fatal(err)
		}
	}
	found := func(uri string) bool {
		t.Helper()
		resp, err := fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{uri}})
		if err != nil {
			t.Fatal(err)
		}
		if c := codes.Code(resp.Status.GetCode()); c != codes.OK && c != codes.NotFound {
			t.Fatalf("fetch of %s: %v", uri, resp)
		}
		return resp.Status.GetCode() == 0
	}
	for _, uri := range []string{"urn:0", "urn:1", "urn:2"} {
		pushAs(uri)
	}
	if !found("urn:0") { // now the most recently used
		t.Fatal("urn:0 is not served while within the bound")
	}
	pushAs("urn:3")
	pushAs("urn:4")
	for uri, want := range map[string]bool{"urn:0": true, "urn:1": false, "urn:2": false, "urn:3": true, "urn:4": true} {
		if got := found(uri); got != want {
			t.Errorf("%s served: %v, want %v", uri, got, want)
		}
	}
	if n := countRecords(t, dir); n != 3 {
		t.Errorf("%d record files, want 3", n)
	}

	opts.MaxRecordBytes = 2 * (4096 + 300)
	serve(t, opts)
	if n := countRecords(t, dir); n != 2 {
		t.Errorf("%d record files after a restart with room for 2, want 2", n)
	}
}
