package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-build/paddock/internal/bazeltest"
	"github.com/paddock-build/paddock/internal/testfs"
)

// userAgents is a loopback HTTP server that serves one file and records
// the User-Agent of every request, to tell Paddock's downloads from
// Bazel's own.
type userAgents struct {
	mu     sync.Mutex
	agents []string
	addr   string
}

func serveFile(t *testing.T, body []byte) *userAgents {
	t.Helper()
	u := &userAgents{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.agents = append(u.agents, r.UserAgent())
		u.mu.Unlock()
		if r.URL.Path != "/payload.txt" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body) // the client may be gone; the test checks what it got
	})}
	go func() { _ = srv.Serve(lis) }()    // returns when the test closes the server
	t.Cleanup(func() { _ = srv.Close() }) // teardown: nothing left to check
	u.addr = lis.Addr().String()
	return u
}

func (u *userAgents) list() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.agents...)
}

// assetWorkspace writes a workspace whose http_file fetches url with the
// given sha256, and a genrule that copies it.
func assetWorkspace(t *testing.T, url, sha string) string {
	t.Helper()
	dir := t.TempDir()
	testfs.WriteFiles(t, dir, map[string]string{
		"WORKSPACE": `workspace(name = "asset_e2e")
load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_file")
http_file(name = "payload", urls = ["` + url + `"], sha256 = "` + sha + `", downloaded_file_path = "payload.txt")
`,
		"BUILD": `genrule(name = "copy", srcs = ["@payload//file"], outs = ["copy.txt"], cmd = "cp $< $@")
`,
	})
	return dir
}

// TestBazelRemoteDownloader: Bazel 4.2.3 with --experimental_remote_downloader
// fetches an http_file through Paddock's Remote Asset API (Paddock, not
// Bazel, downloads it from the loopback server), and a wrong checksum
// fails the build with a message that says so.
func TestBazelRemoteDownloader(t *testing.T) {
	needPaddock(t)
	payload := []byte("fetched through paddock\n")
	sum := sha256.Sum256(payload)
	origin := serveFile(t, payload)
	f := startUp(t, "", "--asset-allow-host", origin.addr)
	url := "http://" + origin.addr + "/payload.txt"
	flags := []string{"--noshow_progress", "--color=no", "--curses=no",
		"--experimental_remote_downloader=grpc://" + f.addr, "--remote_cache=grpc://" + f.addr}

	b := bazeltest.New(t, assetWorkspace(t, url, hex.EncodeToString(sum[:])))
	b.Run(0, "build", append(flags, "//:copy")...)
	if got, err := os.ReadFile(filepath.Join(b.WS, "bazel-bin", "copy.txt")); err != nil || string(got) != string(payload) {
		t.Fatalf("bazel-bin/copy.txt = %q, %v; want the served file", got, err)
	}
	agents := origin.list()
	if len(agents) != 1 || !strings.HasPrefix(agents[0], "Go-http-client/") {
		t.Fatalf("the origin saw requests from %q; want one, from Paddock (Go's client), none from Bazel", agents)
	}
	if !strings.Contains(f.log(), `msg="asset fetched" uri=`+url) {
		t.Errorf("paddock up did not log the fetch of %s", url)
	}

	other := sha256.Sum256([]byte("something else"))
	bad := bazeltest.New(t, assetWorkspace(t, url, hex.EncodeToString(other[:])))
	out := bad.Run(1, "build", append(flags, "//:copy")...)
	if !strings.Contains(out, "checksum mismatch") {
		t.Errorf("a wrong checksum: bazel's output does not say checksum mismatch:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "checksum mismatch") {
			t.Logf("bazel on a wrong checksum: %s", line)
			break
		}
	}
	bad.Shutdown()
	b.Shutdown()
	f.shutdown()
}
