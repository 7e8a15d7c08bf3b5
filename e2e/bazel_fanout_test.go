package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/internal/bazeltest"
)

// The shape of testdata/fanout (see its BUILD and fanout.bzl): 192 leaf
// genrules over 4 sources, aggregated by 24, then 4, then 1 genrules; one
// genrule running the C binary; 4 compiles and an archive for the
// library, a compile and a link for the binary.
const (
	fanoutLeaves  = 192
	fanoutActions = fanoutLeaves + 24 + 4 + 1 + 1 + 4 + 1 + 2
)

var fanoutSources = []string{"alpha.txt", "bravo.txt", "charlie.txt", "delta.txt"}

// TestBazelFanout builds testdata/fanout, the workspace of the Bazel
// benchmark (scripts/bench-bazel.sh), on `paddock up` twice, each time with
// a fresh salt (--action_env=PADDOCK_SALT) after a `bazel clean`, as the
// benchmark does. Both times the farm executes every one of its actions:
// Bazel counts them all as remote, none as a cache hit. The outputs are
// what the sources imply: the final aggregate equals the one computed here
// from the sources, and the C binary compiled and linked on the farm
// summarized it correctly (and, run here, prints the same summary).
func TestBazelFanout(t *testing.T) {
	needPaddock(t)
	fanoutSuite(t, newFanoutBazel(t))
}

// TestBazel210Fanout is TestBazelFanout with Bazel 2.1.0.
func TestBazel210Fanout(t *testing.T) {
	needPaddock(t)
	fanoutSuite(t, withStubs(t, bazeltest.NewRelease(t, "testdata/fanout", bazeltest.Bazel210())))
}

// fanoutSuite is the body of TestBazelFanout, run by each Bazel version.
func fanoutSuite(t *testing.T, b *bazel) {
	f := startUp(t, "")
	wantAll := fanoutAggregate(t, filepath.Join(b.WS, "src"))
	wantSummary := summarizeText(wantAll)

	for run := range 2 {
		if run > 0 {
			b.Run(0, "clean")
		}
		out := b.Run(0, "build", append(b.remoteFlags(f.addr), "--action_env=PADDOCK_SALT="+rand.Text(), "//...")...)
		summary := bazeltest.ProcessSummary(t, out)
		t.Logf("build %d: %v", run+1, summary)
		if summary["remote"] != fanoutActions || !onlyKinds(summary, "remote", "internal") {
			t.Errorf("build %d: process summary %v, want all %d actions executed remotely and no cache hit\n%s", run+1, summary, fanoutActions, out)
		}
		all, err := os.ReadFile(filepath.Join(b.WS, "bazel-bin", "all", "0.txt"))
		if err != nil || string(all) != wantAll {
			t.Errorf("build %d: bazel-bin/all/0.txt = %q (%v)\nwant (computed from the sources) %q", run+1, all, err, wantAll)
		}
		got, err := os.ReadFile(filepath.Join(b.WS, "bazel-bin", "summary.txt"))
		if err != nil || string(got) != wantSummary {
			t.Errorf("build %d: bazel-bin/summary.txt = %q (%v), want %q", run+1, got, err, wantSummary)
		}
	}
	// The binary linked on the farm runs here too.
	got, err := exec.Command(filepath.Join(b.WS, "bazel-bin", "summarize"), filepath.Join(b.WS, "bazel-bin", "all", "0.txt")).Output()
	if err != nil || string(got) != wantSummary {
		t.Errorf("bazel-bin/summarize printed %q (%v), want %q", got, err, wantSummary)
	}
	b.Shutdown()
	f.shutdown()
}

// newFanoutBazel is a Bazel client in a copy of testdata/fanout.
func newFanoutBazel(t *testing.T) *bazel {
	return withStubs(t, bazeltest.New(t, "testdata/fanout"))
}

// withStubs wraps b with the offline stubs of testdata/stubs.
func withStubs(t *testing.T, b *bazeltest.Bazel) *bazel {
	stubs, err := filepath.Abs("testdata/stubs")
	if err != nil {
		t.Fatal(err)
	}
	return &bazel{Bazel: b, t: t, stubs: stubs}
}

// fanoutAggregate computes all/0.txt of testdata/fanout from its sources,
// as the genrules of fanout.bzl do.
func fanoutAggregate(t *testing.T, srcDir string) string {
	t.Helper()
	var leaves []string
	for i := range fanoutLeaves {
		src, err := os.ReadFile(filepath.Join(srcDir, fanoutSources[i%len(fanoutSources)]))
		if err != nil {
			t.Fatal(err)
		}
		// { cat SRC; echo I; } | tr a-z A-Z | sha256sum | cut -c1-16, and wc -w
		h := sha256.Sum256(bytes.ToUpper(fmt.Appendf(src, "%d\n", i)))
		leaves = append(leaves, fmt.Sprintf("leaf %d %x %d\n", i, h[:8], len(strings.Fields(string(src)))))
	}
	mids := fanIn("mid", leaves, 24)
	tops := fanIn("top", mids, 4)
	return fanIn("all", tops, 1)[0]
}

// fanIn is fanout.bzl's fan_in on file contents: each group's lines
// sorted bytewise (LC_ALL=C sort), then "NAME J LINES HASH".
func fanIn(name string, srcs []string, groups int) []string {
	k := len(srcs) / groups
	var out []string
	for j := range groups {
		var lines []string
		for _, s := range srcs[j*k : (j+1)*k] {
			lines = append(lines, strings.Split(strings.TrimSuffix(s, "\n"), "\n")...)
		}
		sort.Strings(lines)
		sorted := strings.Join(lines, "\n") + "\n"
		h := sha256.Sum256([]byte(sorted))
		out = append(out, sorted+fmt.Sprintf("%s %d %d %x\n", name, j, len(lines), h[:8]))
	}
	return out
}

// summarizeText is what testdata/fanout's C binary prints for a file
// with contents s.
func summarizeText(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("lines=%d bytes=%d fnv1a32=%08x\n", strings.Count(s, "\n"), len(s), h.Sum32())
}
