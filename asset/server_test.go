package asset_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage"
)

type harness struct {
	cas   *storage.MemoryBlobStore
	fetch rapb.FetchClient
	push  rapb.PushClient
	clock *clock.Fake // for expiry
}

// start serves the asset services on loopback over a memory CAS.
func start(t *testing.T, adjust func(*asset.Options)) *harness {
	t.Helper()
	h := &harness{cas: storage.NewMemoryBlobStore(), clock: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
	opts := asset.Options{CAS: h.cas, Dir: t.TempDir(), Now: h.clock.Now}
	if adjust != nil {
		adjust(&opts)
	}
	h.fetch, h.push = serve(t, opts)
	return h
}

// serve serves the asset services with opts on loopback until the test
// ends.
func serve(t *testing.T, opts asset.Options) (rapb.FetchClient, rapb.PushClient) {
	t.Helper()
	srv, err := asset.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Serve(t, srv.Register)
	return rapb.NewFetchClient(conn), rapb.NewPushClient(conn)
}

func (h *harness) put(t *testing.T, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := h.cas.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *harness) putProto(t *testing.T, m proto.Message) digest.Digest {
	t.Helper()
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return h.put(t, b)
}

func wantCode(t *testing.T, err error, code codes.Code, fragment string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), fragment) {
		t.Fatalf("got %v, want %s mentioning %q", err, code, fragment)
	}
}

func q(kv ...string) []*rapb.Qualifier {
	var out []*rapb.Qualifier
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &rapb.Qualifier{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// BuildStream probes for the service with empty requests and expects
// INVALID_ARGUMENT (UNIMPLEMENTED would mean no support).
func TestEmptyRequestsAreInvalidArgument(t *testing.T) {
	h := start(t, nil)
	ctx := t.Context()
	_, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{})
	wantCode(t, err, codes.InvalidArgument, "uris")
	_, err = h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{})
	wantCode(t, err, codes.InvalidArgument, "uris")
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{})
	wantCode(t, err, codes.InvalidArgument, "uris")
	_, err = h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{})
	wantCode(t, err, codes.InvalidArgument, "uris")
	_, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:x"}, Qualifiers: q("a", "1", "a", "2")})
	wantCode(t, err, codes.InvalidArgument, "appears twice")
}

// A request names at most 100 URIs of at most 8 KiB each: a PushBlob
// stores a record per URI, and one naming 50,000 wrote 50,000 records,
// evicting other tenants'; a 3 MB URI was taken as a key.
func TestRequestURIsAreBounded(t *testing.T) {
	h := start(t, nil)
	ctx := t.Context()
	d := h.put(t, []byte("bounded"))
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("https://mirror%d.example/a.tar.gz", i)
	}
	_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: many, BlobDigest: d.Proto()})
	wantCode(t, err, codes.InvalidArgument, "uris: 101 URIs")
	_, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: many})
	wantCode(t, err, codes.InvalidArgument, "uris: 101 URIs")
	long := "https://example/" + strings.Repeat("a", 8<<10)
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{long}, BlobDigest: d.Proto()})
	wantCode(t, err, codes.InvalidArgument, "uris[0]")
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: many[:100], BlobDigest: d.Proto()}); err != nil {
		t.Fatalf("a push naming 100 URIs: %v", err)
	}
}

// A pushed blob or directory is served for its URIs and exactly its
// qualifiers (in any order), from any instance only its own.
func TestPushThenFetch(t *testing.T) {
	h := start(t, nil)
	ctx := readsStatus(t)
	blob := h.put(t, []byte("artifact"))
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{InstanceName: "i", Uris: []string{"urn:a", "urn:b"},
		Qualifiers: q("x", "1", "y", "2"), BlobDigest: blob.Proto()}); err != nil {
		t.Fatal(err)
	}
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{InstanceName: "i", Uris: []string{"urn:b"}, Qualifiers: q("y", "2", "x", "1")})
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != blob.Hash() || resp.Uri != "urn:b" {
		t.Fatalf("fetch of the pushed blob: %v, %v", resp, err)
	}
	for name, req := range map[string]*rapb.FetchBlobRequest{
		"other qualifiers": {InstanceName: "i", Uris: []string{"urn:a"}, Qualifiers: q("x", "1")},
		"other instance":   {InstanceName: "j", Uris: []string{"urn:a"}, Qualifiers: q("x", "1", "y", "2")},
		"other uri":        {InstanceName: "i", Uris: []string{"urn:c"}, Qualifiers: q("x", "1", "y", "2")},
	} {
		resp, err := h.fetch.FetchBlob(ctx, req)
		if err != nil || codes.Code(resp.Status.GetCode()) != codes.NotFound {
			t.Errorf("%s: %v, %v; want a NOT_FOUND status", name, resp, err)
		}
	}

	file := h.put(t, []byte("file in the tree"))
	sub := h.putProto(t, &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file.Proto()}}})
	root := h.putProto(t, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: sub.Proto()}}})
	if _, err := h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{"urn:tree"}, RootDirectoryDigest: root.Proto()}); err != nil {
		t.Fatal(err)
	}
	dresp, err := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:tree"}})
	if err != nil || dresp.Status.GetCode() != 0 || dresp.RootDirectoryDigest.GetHash() != root.Hash() {
		t.Fatalf("fetch of the pushed directory: %v, %v", dresp, err)
	}
	// A blob record is not a directory record.
	if dresp, _ := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:a"}, Qualifiers: q("x", "1", "y", "2")}); codes.Code(dresp.GetStatus().GetCode()) != codes.NotFound {
		t.Errorf("a blob record served as a directory: %v", dresp)
	}

	// Content gone from the CAS: the record is never served again.
	h.cas.Delete(file)
	dresp, err = h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:tree"}})
	if err != nil || codes.Code(dresp.Status.GetCode()) != codes.NotFound {
		t.Fatalf("a directory whose file was evicted: %v, %v; want NOT_FOUND", dresp, err)
	}
	h.put(t, []byte("file in the tree"))
	if dresp, _ := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:tree"}}); codes.Code(dresp.GetStatus().GetCode()) != codes.NotFound {
		t.Errorf("a record found incomplete came back: %v", dresp)
	}
}

// A blob pushed under a checksum.sri qualifier must match it: FetchBlob
// serves a record found under that qualifier without reading the content,
// so a wrong push would hand every later client other bytes under the
// checksum it asked for. A matching push (sha256 or sha384) is served.
func TestPushedChecksumMustMatch(t *testing.T) {
	h := start(t, nil)
	ctx := readsStatus(t)
	good, evil := []byte("the real archive"), []byte("something else")
	goodDigest, evilDigest := h.put(t, good), h.put(t, evil)
	_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"https://example.com/a.tgz"},
		Qualifiers: q("checksum.sri", sri(good)), BlobDigest: evilDigest.Proto()})
	wantCode(t, err, codes.InvalidArgument, "does not match blob_digest")
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"https://example.com/a.tgz"},
		Qualifiers: q("checksum.sri", sri(good))})
	if err == nil && resp.GetBlobDigest().GetHash() == evilDigest.Hash() {
		t.Fatal("the refused push is served")
	}
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:a"}, Qualifiers: q("checksum.sri", "sha256-notbase64!"), BlobDigest: goodDigest.Proto()})
	wantCode(t, err, codes.InvalidArgument, "checksum.sri")

	sum384 := sha512.Sum384(good)
	for _, v := range []string{sri(good), "sha384-" + base64.StdEncoding.EncodeToString(sum384[:])} {
		if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:good"}, Qualifiers: q("checksum.sri", v), BlobDigest: goodDigest.Proto()}); err != nil {
			t.Fatalf("push with %s: %v", v, err)
		}
		resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:good"}, Qualifiers: q("checksum.sri", v)})
		if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != goodDigest.Hash() {
			t.Fatalf("fetch with %s: %v, %v", v, resp, err)
		}
	}
}

// Pushes of content not in the CAS, or already expired, are refused;
// records stop being served when they expire.
func TestPushValidationAndExpiry(t *testing.T) {
	h := start(t, nil)
	ctx := readsStatus(t)
	absent := digest.FromBytes(repb.DigestFunction_SHA256, []byte("never uploaded"))
	_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:a"}, BlobDigest: absent.Proto()})
	wantCode(t, err, codes.FailedPrecondition, "blob_digest")
	present := h.put(t, []byte("present"))
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:a"}, BlobDigest: present.Proto(), ReferencesBlobs: []*repb.Digest{absent.Proto()}})
	wantCode(t, err, codes.FailedPrecondition, "blob_digest")
	_, err = h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{"urn:d"}, RootDirectoryDigest: present.Proto()})
	wantCode(t, err, codes.FailedPrecondition, "root_directory_digest") // not a Directory
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:a"}, BlobDigest: &repb.Digest{Hash: "xyz", SizeBytes: 1}})
	wantCode(t, err, codes.InvalidArgument, "blob_digest")
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:a"}, BlobDigest: present.Proto(), ExpireAt: timestamppb.New(h.clock.Now().Add(-time.Second))})
	wantCode(t, err, codes.InvalidArgument, "expire_at")

	expire := h.clock.Now().Add(time.Hour)
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:a"}, BlobDigest: present.Proto(), ExpireAt: timestamppb.New(expire)}); err != nil {
		t.Fatal(err)
	}
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:a"}})
	if err != nil || resp.Status.GetCode() != 0 || !resp.ExpiresAt.AsTime().Equal(expire) {
		t.Fatalf("before expiry: %v, %v", resp, err)
	}
	// oldest_content_accepted after the push: not served.
	resp, _ = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:a"}, OldestContentAccepted: timestamppb.New(h.clock.Now().Add(time.Minute))})
	if codes.Code(resp.GetStatus().GetCode()) != codes.NotFound {
		t.Errorf("content older than oldest_content_accepted served: %v", resp)
	}
	h.clock.Advance(time.Hour)
	resp, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:a"}})
	if err != nil || codes.Code(resp.Status.GetCode()) != codes.NotFound {
		t.Fatalf("after expiry: %v, %v; want NOT_FOUND", resp, err)
	}
}

func sri(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// origin is a loopback HTTP server with a few paths.
type origin struct {
	*httptest.Server
	hits atomic.Int64
}

func startOrigin(t *testing.T, content []byte) *origin {
	o := &origin{}
	mux := http.NewServeMux()
	// A Write to a client that may be gone is not checked.
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { o.hits.Add(1); _, _ = w.Write(content) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(make([]byte, 4096)) })
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost.invalid/file", http.StatusFound)
	})
	o.Server = httptest.NewServer(mux)
	t.Cleanup(o.Close)
	return o
}

// FetchBlob of an http URL with a checksum: downloaded from an allowed
// host, checked, stored and recorded; a second fetch is served from the
// record. Every way it can go wrong is a status of its own.
func TestFetchBlobFromOrigin(t *testing.T) {
	content := []byte("downloaded content\n")
	o := startOrigin(t, content)
	host := strings.TrimPrefix(o.URL, "http://")
	h := start(t, func(opts *asset.Options) {
		opts.AllowedHosts = []string{host}
		opts.MaxFetchBytes = 1024
		opts.FetchTimeout = 300 * time.Millisecond
	})
	ctx := readsStatus(t)
	req := &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri(content))}
	resp, err := h.fetch.FetchBlob(ctx, req)
	want := digest.FromBytes(repb.DigestFunction_SHA256, content)
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != want.Hash() || resp.DigestFunction != repb.DigestFunction_SHA256 {
		t.Fatalf("fetch: %v, %v", resp, err)
	}
	if missing, _ := h.cas.FindMissing(ctx, []digest.Digest{want}); len(missing) != 0 {
		t.Fatal("the fetched content is not in the CAS")
	}
	if resp, err = h.fetch.FetchBlob(ctx, req); err != nil || resp.Status.GetCode() != 0 || o.hits.Load() != 1 {
		t.Fatalf("second fetch: %v, %v, %d downloads; want the record, one download", resp, err, o.hits.Load())
	}

	for name, tc := range map[string]struct {
		req  *rapb.FetchBlobRequest
		code codes.Code
		want string
	}{
		"wrong checksum":   {&rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri([]byte("other")))}, codes.Aborted, "checksum mismatch"},
		"host not allowed": {&rapb.FetchBlobRequest{Uris: []string{"http://localhost.invalid/file"}, Qualifiers: q("checksum.sri", sri(content))}, codes.PermissionDenied, "allow-list"},
		"redirect away":    {&rapb.FetchBlobRequest{Uris: []string{o.URL + "/away"}, Qualifiers: q("checksum.sri", sri(content))}, codes.PermissionDenied, "allow-list"},
		"too large":        {&rapb.FetchBlobRequest{Uris: []string{o.URL + "/big"}, Qualifiers: q("checksum.sri", sri(content))}, codes.ResourceExhausted, "limit"},
		"timeout":          {&rapb.FetchBlobRequest{Uris: []string{o.URL + "/hang"}, Qualifiers: q("checksum.sri", sri(content))}, codes.DeadlineExceeded, "within"},
		"not found":        {&rapb.FetchBlobRequest{Uris: []string{o.URL + "/nothing"}, Qualifiers: q("checksum.sri", sri(content))}, codes.NotFound, "404"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := h.fetch.FetchBlob(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if st := status.FromProto(resp.Status); st.Code() != tc.code || !strings.Contains(st.Message(), tc.want) || resp.Uri != tc.req.Uris[0] {
				t.Fatalf("status %v (uri %q); want %s mentioning %q", st, resp.Uri, tc.code, tc.want)
			}
		})
	}
	if got := o.hits.Load(); got != 2 {
		t.Errorf("%d downloads of /file; want 2 (the wrong checksum is not recorded)", got)
	}

	// Requests the server refuses outright.
	_, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}})
	wantCode(t, err, codes.InvalidArgument, "checksum.sri is required")
	_, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", "md5-abc")})
	wantCode(t, err, codes.InvalidArgument, "checksum.sri")
	_, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri(content), "vcs.commit", "abc")})
	wantCode(t, err, codes.InvalidArgument, `"vcs.commit" not supported`)
	var br *errdetails.BadRequest
	for _, d := range status.Convert(err).Details() {
		if b, ok := d.(*errdetails.BadRequest); ok {
			br = b
		}
	}
	if br == nil || br.FieldViolations[0].Field != "qualifiers.name" {
		t.Errorf("unsupported qualifier without a BadRequest detail: %v", status.Convert(err).Details())
	}
}

// Records live on disk: a restarted server serves what was pushed before.
func TestRecordsSurviveRestart(t *testing.T) {
	h := start(t, nil)
	dir := t.TempDir()
	opts := asset.Options{CAS: h.cas, Dir: dir, Now: h.clock.Now}
	_, push := serve(t, opts)
	blob := h.put(t, []byte("kept"))
	if _, err := push.PushBlob(t.Context(), &rapb.PushBlobRequest{Uris: []string{"urn:kept"}, BlobDigest: blob.Proto()}); err != nil {
		t.Fatal(err)
	}
	fetch, _ := serve(t, opts)
	resp, err := fetch.FetchBlob(t.Context(), &rapb.FetchBlobRequest{Uris: []string{"urn:kept"}})
	if err != nil || resp.BlobDigest.GetHash() != blob.Hash() {
		t.Fatalf("after a restart: %v, %v", resp, err)
	}
}

// withTool returns a context whose calls carry RequestMetadata naming
// the client tool, as Bazel sends it.
func withTool(ctx context.Context, tool, version string) context.Context {
	rm, _ := proto.Marshal(&repb.RequestMetadata{ToolDetails: &repb.ToolDetails{ToolName: tool, ToolVersion: version}})
	return metadata.AppendToOutgoingContext(ctx, "build.bazel.remote.execution.v2.requestmetadata-bin", string(rm))
}

// readsStatus is the context of a client known to read the status inside
// Fetch responses (Bazel 8.1 and later).
func readsStatus(t *testing.T) context.Context { return withTool(t.Context(), "bazel", "9.0.0") }

// Clients that ignore the status inside Fetch responses (Bazel before 8.1,
// BuildStream 1.6, anything unknown) get a failed fetch as the call's
// error, with the same code and message.
func TestClientsThatIgnoreStatusGetErrors(t *testing.T) {
	o := startOrigin(t, []byte("content"))
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")} })
	req := &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri([]byte("other")))}
	for name, ctx := range map[string]context.Context{
		"bazel 4.2.3":       withTool(t.Context(), "bazel", "4.2.3"),
		"debian bazel":      withTool(t.Context(), "bazel", "no_version"),
		"no request header": t.Context(), // BuildStream 1.6
	} {
		_, err := h.fetch.FetchBlob(ctx, req)
		if st := status.Convert(err); st.Code() != codes.Aborted || !strings.Contains(st.Message(), "checksum mismatch") {
			t.Errorf("%s: FetchBlob error %v; want ABORTED, checksum mismatch", name, err)
		} else if strings.Contains(st.Message(), sri([]byte("content"))) {
			// The content's checksum would let a client fetch
			// anything in two calls, as if none were required.
			t.Errorf("%s: the mismatch names the content's checksum: %q", name, st.Message())
		}
		_, err = h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:fdc:buildstream.build:2020:v1:absent"}})
		if status.Code(err) != codes.NotFound {
			t.Errorf("%s: FetchDirectory of nothing: %v; want NOT_FOUND as the call's error", name, err)
		}
	}
	resp, err := h.fetch.FetchBlob(withTool(t.Context(), "bazel", "8.1.0"), req)
	if err != nil || codes.Code(resp.Status.GetCode()) != codes.Aborted {
		t.Errorf("bazel 8.1.0: %v, %v; want the failure in the response's status", resp, err)
	}
}

// Without a checksum, a download happens only when the operator allows it.
func TestFetchWithoutChecksumWhenAllowed(t *testing.T) {
	content := []byte("unchecked\n")
	o := startOrigin(t, content)
	h := start(t, func(opts *asset.Options) {
		opts.AllowedHosts = []string{"127.0.0.1"} // without the port: any port
		opts.AllowWithoutChecksum = true
	})
	resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}})
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetSizeBytes() != int64(len(content)) {
		t.Fatalf("%v, %v", resp, err)
	}
}

// Downloads in progress are bounded (asset.MaxDownloads, half of them per
// tenant): each holds a temporary file of up to max_fetch_bytes that no
// size bound counts. Four fetches at once from one client reach the
// origin two at a time, and all four complete.
func TestFetchBlobDownloadsAreBounded(t *testing.T) {
	content := []byte("slow content\n")
	var inFlight, most atomic.Int64
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow/", func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		_, _ = w.Write(content) // the client may be gone
	})
	o := httptest.NewServer(mux)
	t.Cleanup(o.Close)
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")} })
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := h.fetch.FetchBlob(t.Context(), &rapb.FetchBlobRequest{
				Uris: []string{fmt.Sprintf("%s/slow/%d", o.URL, i)}, Qualifiers: q("checksum.sri", sri(content))})
			errs <- err
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); inFlight.Load() < asset.MaxDownloads/2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d downloads reached the origin, want %d", inFlight.Load(), asset.MaxDownloads/2)
		}
	}
	close(release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if m := most.Load(); m != asset.MaxDownloads/2 {
		t.Fatalf("%d downloads reached the origin at once, want one tenant's %d", m, asset.MaxDownloads/2)
	}
}
