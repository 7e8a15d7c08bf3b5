package e2e

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/bazeltest"
)

// TestMultiHostBuildSurvivesAWorker: the roles on separate machines, each
// machine a network namespace of its own on a switch (netlab): storage,
// the scheduler, two workers each with its runner, and the Bazel client.
// Nothing talks over loopback between machines. Bazel 4.2.3 builds
// testdata/fanout with every action remote; once the first worker is
// running actions it is killed (SIGKILL). The scheduler retries its
// actions on the other worker, and the build succeeds with every output
// right.
func TestMultiHostBuildSurvivesAWorker(t *testing.T) {
	needPaddock(t)
	b := newFanoutBazel(t)
	lab := newNetlab(t)
	f := startLabFarm(t, lab)
	b.Prefix = lab.enter("client")
	wantAll := fanoutAggregate(t, filepath.Join(b.WS, "src"))
	type result struct {
		out  string
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		out, code, err := b.Exec("build", append(b.remoteFlags(f.schedAddr), "--action_env=PADDOCK_SALT="+rand.Text(), "//...")...)
		done <- result{out, code, err}
	}()
	f.killWorkerWithActions(0)

	var r result
	select {
	case r = <-done:
	case <-time.After(bazeltest.CommandTimeout + time.Minute):
		t.Fatal("the build did not end")
	}
	if r.err != nil || r.code != 0 {
		t.Fatalf("bazel build after worker1 was killed: exit %d, %v\n%s", r.code, r.err, r.out)
	}
	summary := bazeltest.ProcessSummary(t, r.out)
	t.Logf("build: %v", summary)
	if summary["remote"] != fanoutActions || !onlyKinds(summary, "remote", "internal") {
		t.Errorf("process summary %v, want all %d actions executed remotely\n%s", summary, fanoutActions, r.out)
	}
	if all, err := os.ReadFile(filepath.Join(b.WS, "bazel-bin", "all", "0.txt")); err != nil || string(all) != wantAll {
		t.Errorf("bazel-bin/all/0.txt = %q (%v)\nwant (computed from the sources) %q", all, err, wantAll)
	}
	if log := f.sched.log(); !strings.Contains(log, "requeued (retry 1 of") {
		t.Errorf("the scheduler requeued none of worker1's actions:\n%s", log)
	}
	b.Shutdown()
	f.stop()
}
