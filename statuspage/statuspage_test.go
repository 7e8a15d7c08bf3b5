package statuspage_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/nettest"
	"github.com/paddock-build/paddock/statuspage"
	"github.com/paddock-build/paddock/storage"
)

// put stores m in the CAS and returns its digest.
func put(t testing.TB, cas storage.BlobStore, m proto.Message) digest.Digest {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(digest.Function(repb.DigestFunction_SHA256), b)
	if err := cas.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

// run executes args on the farm and returns the action's digest.
func run(t testing.TB, f *farmtest.Farm, args ...string) digest.Digest {
	t.Helper()
	root := put(t, f.CAS, &repb.Directory{})
	cmd := put(t, f.CAS, &repb.Command{Arguments: args, EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}}})
	ad := put(t, f.CAS, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: root.Proto()})
	stream, err := repb.NewExecutionClient(f.Conn).Execute(t.Context(), &repb.ExecuteRequest{ActionDigest: ad.Proto(), SkipCacheLookup: true})
	if err != nil {
		t.Fatal(err)
	}
	for {
		op, err := stream.Recv()
		if err != nil {
			t.Fatalf("Execute %q: %v", args, err)
		}
		if op.Done {
			return ad
		}
	}
}

func newServer(t testing.TB, f *farmtest.Farm) *httptest.Server {
	mux := http.NewServeMux()
	statuspage.New(statuspage.Options{Scheduler: f.Scheduler, CAS: f.CAS, AC: f.AC}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestHTMLIsEscaped: what a client wrote (arguments) and what an action
// printed (stdout) appear on the pages as text, never as markup.
func TestHTMLIsEscaped(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	srv := newServer(t, f)
	ad := run(t, f, "/bin/sh", "-c", "echo '<script>alert(1)</script>'", "<script>x</script>")

	_, overview := nettest.HTTPGet(t, srv.URL+"/")
	_, action := nettest.HTTPGet(t, srv.URL+"/action/"+ad.Hash()+"-"+sizeOf(ad))
	for name, body := range map[string]string{"overview": overview, "action page": action} {
		if strings.Contains(body, "<script>") {
			t.Errorf("the %s has an unescaped <script>:\n%s", name, body)
		}
		if !strings.Contains(body, "&lt;script&gt;x&lt;/script&gt;") {
			t.Errorf("the %s does not show the argument <script>x</script> escaped:\n%s", name, body)
		}
	}
	if !strings.Contains(action, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Errorf("the action page does not show the stdout escaped:\n%s", action)
	}
}

// TestBadInput: a malformed digest is a 400 page that says why; an action
// the CAS does not have is a 404; bad query values are 400s.
func TestBadInput(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	srv := newServer(t, f)
	missing := digest.FromBytes(digest.Function(repb.DigestFunction_SHA256), []byte("never stored"))
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/action/xyz-12", 400, "xyz"},
		{"/action/" + strings.Repeat("a", 64), 400, "want HASH-SIZE"},
		{"/action/" + strings.Repeat("a", 64) + "-many", 400, "not a number"},
		{"/action/" + strings.Repeat("g", 64) + "-3", 400, "gggg"},
		{"/action/" + missing.Hash() + "-" + "12", 404, "not in the CAS"},
		{"/tree/" + missing.Hash() + "-12", 404, "not in the CAS"},
		{"/blob/" + missing.Hash() + "-12", 404, "not in the CAS"},
		{"/?page=0", 400, "page"},
		{"/?page=9223372036854775807", 400, "want a number from 1 to"},
		{"/?stage=<b>", 400, "&lt;b&gt;"},
	} {
		code, body := nettest.HTTPGet(t, srv.URL+c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d, want %d with %q in:\n%s", c.path, code, c.code, c.want, body)
		}
	}
}

// TestActionPageAndDownloads: the action page shows the command and its
// stdout; the input tree is browsable and outputs download from the CAS.
func TestActionPageAndDownloads(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	srv := newServer(t, f)
	ad := run(t, f, "/bin/sh", "-c", "echo hello from the action")
	code, body := nettest.HTTPGet(t, srv.URL+"/action/"+ad.Hash()+"-"+sizeOf(ad))
	if code != 200 || !strings.Contains(body, "echo hello from the action") || !strings.Contains(body, "hello from the action\n</pre>") {
		t.Fatalf("action page: %d\n%s", code, body)
	}
	link := downloadLink(t, body)
	resp, err := http.Get(srv.URL + link)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(data) != "hello from the action\n" || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("GET %s: %q (%s), want the stdout as a download", link, data, resp.Header.Get("Content-Type"))
	}
	if code, body := nettest.HTTPGet(t, srv.URL+"/"); code != 200 || !strings.Contains(body, `class="worker"`) || !strings.Contains(body, "farmtest") {
		t.Errorf("overview: %d, want the worker row:\n%s", code, body)
	}
}

// downloadLink is the first download link on a page.
func downloadLink(t *testing.T, body string) string {
	t.Helper()
	i := strings.Index(body, `href="/blob/`)
	if i < 0 {
		t.Fatalf("no download link on the action page:\n%s", body)
	}
	link := body[i+len(`href="`):]
	return strings.ReplaceAll(link[:strings.IndexByte(link, '"')], "&amp;", "&")
}

func sizeOf(d digest.Digest) string { return d.String()[len(d.Hash())+1:] }

// TestBinaryOutputIsNotShown: output that is not UTF-8 is a download only.
func TestBinaryOutputIsNotShown(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	srv := newServer(t, f)
	ad := run(t, f, "/bin/sh", "-c", `printf 'ok\377\376\n'`)
	code, body := nettest.HTTPGet(t, srv.URL+"/action/"+ad.Hash()+"-"+sizeOf(ad))
	if code != 200 || !strings.Contains(body, "(not text: download it)") || strings.Contains(body, "ok\xff") {
		t.Errorf("action page with binary stdout: %d\n%s", code, body)
	}
}

// TestPagination: operations come a page at a time, newest first, with
// links to the pages around.
func TestPagination(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	mux := http.NewServeMux()
	statuspage.New(statuspage.Options{Scheduler: f.Scheduler, CAS: f.CAS, AC: f.AC, PageSize: 2}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for i := range 5 {
		run(t, f, "/bin/echo", "action-"+string(rune('a'+i)))
	}
	_, first := nettest.HTTPGet(t, srv.URL+"/")
	if !strings.Contains(first, "Page 1 of 3") || !strings.Contains(first, `href="/?page=2" id="next"`) || strings.Contains(first, `id="prev"`) {
		t.Errorf("first page without the right links:\n%s", first)
	}
	if strings.Count(first, `class="operation"`) != 2 || !strings.Contains(first, "action-e") {
		t.Errorf("first page does not hold the 2 newest operations:\n%s", first)
	}
	_, last := nettest.HTTPGet(t, srv.URL+"/?stage=completed&page=3")
	if strings.Count(last, `class="operation"`) != 1 || !strings.Contains(last, "action-a") || !strings.Contains(last, `href="/?page=2&amp;stage=completed" id="prev"`) {
		t.Errorf("last page of completed operations:\n%s", last)
	}
}

// TestPagesReadTheInstancesPartition: with an auth policy each tenant's
// blobs are in a partition of the CAS, chosen by instance name; the
// action page, its downloads and the overview read the action's own
// instance's partition (they read the default one, and showed every
// tenant's action as not found).
func TestPagesReadTheInstancesPartition(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{PartitionOf: func(instance string) string { return "p-" + strings.SplitN(instance, "/", 2)[0] }})
	mux := http.NewServeMux()
	statuspage.New(statuspage.Options{Scheduler: f.Scheduler, CAS: f.Blobs, AC: f.AC}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := storage.WithInstance(t.Context(), "team-a/x")
	putIn := func(m proto.Message) digest.Digest {
		b, _ := proto.Marshal(m)
		d := digest.FromBytes(digest.Function(repb.DigestFunction_SHA256), b)
		if err := f.Blobs.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	cmd := putIn(&repb.Command{Arguments: []string{"/bin/sh", "-c", "echo in a partition"}})
	ad := putIn(&repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: putIn(&repb.Directory{}).Proto()})
	stream, err := repb.NewExecutionClient(f.Conn).Execute(t.Context(), &repb.ExecuteRequest{InstanceName: "team-a/x", ActionDigest: ad.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	for op, err := stream.Recv(); !op.GetDone(); op, err = stream.Recv() {
		if err != nil {
			t.Fatal(err)
		}
	}
	code, body := nettest.HTTPGet(t, srv.URL+"/action/"+ad.Hash()+"-"+sizeOf(ad)+"?instance=team-a%2Fx")
	if code != 200 || !strings.Contains(body, "echo in a partition") || !strings.Contains(body, "in a partition\n</pre>") {
		t.Fatalf("action page of an action in a partition: %d\n%s", code, body)
	}
	link := downloadLink(t, body)
	if code, data := nettest.HTTPGet(t, srv.URL+link); code != 200 || data != "in a partition\n" {
		t.Errorf("GET %s: %d %q, want the stdout", link, code, data)
	}
	if code, body := nettest.HTTPGet(t, srv.URL+"/"); code != 200 || !strings.Contains(body, "echo in a partition") {
		t.Errorf("overview: %d, want the action's arguments:\n%s", code, body)
	}
}

// TestControlBytesAreShownEscaped: terminal escape sequences in an
// action's arguments and stdout are shown as \x1b and \x07, not passed to
// whoever reads the page (curl in a terminal took a title change from
// them); newlines and tabs stay.
func TestControlBytesAreShownEscaped(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	srv := newServer(t, f)
	ad := run(t, f, "/bin/sh", "-c", `printf 'a\033]0;TITLE\007b\tc\n'`, "arg\x1b[31m")
	_, overview := nettest.HTTPGet(t, srv.URL+"/")
	_, action := nettest.HTTPGet(t, srv.URL+"/action/"+ad.Hash()+"-"+sizeOf(ad))
	for name, body := range map[string]string{"overview": overview, "action page": action} {
		if strings.ContainsAny(body, "\x1b\x07") {
			t.Errorf("the %s holds raw control bytes:\n%q", name, body)
		}
		if !strings.Contains(body, `arg\x1b[31m`) {
			t.Errorf("the %s does not show the argument's ESC as \\x1b:\n%s", name, body)
		}
	}
	if !strings.Contains(action, `a\x1b]0;TITLE\x07b`+"\tc\n") {
		t.Errorf("the action page does not show the stdout's control bytes escaped, its tab and newline kept:\n%s", action)
	}
}
