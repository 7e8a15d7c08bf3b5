package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/images/imagetest"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestMetrics runs actions that end every way the farm counts (success, a
// retry after the runner died, timeout, OOM kill, pids limit, an image
// pulled, inputs from the worker's file cache), a corrupt upload and
// uploads past the CAS's size, then scrapes `paddock up`'s /metrics and
// finds a non-zero value in every family the farm promises (issue 14):
// scheduler, worker, runner/sandbox, storage, images, per-RPC gRPC, Go
// runtime and process.
func TestMetrics(t *testing.T) {
	needPaddock(t)
	host := imagetest.Serve(t)
	layer := imagetest.BusyboxLayer(t, []string{"sh"})
	imageRef := imagetest.Push(t, host, "e2e/metrics:1", imagetest.Image(t, "linux/"+runtime.GOARCH, v1.Config{Env: []string{"PATH=/bin"}}, layer))
	cfgPath := filepath.Join(searchableTempDir(t), "runner.yaml")
	if err := os.WriteFile(cfgPath, []byte("version: 1\nallow_host_network: true # the gate is on the host's loopback\npids_limit: 32\nimages:\n  insecure: [\""+host+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, httpAddr := startUpHTTP(t, "--runner-config", cfgPath, "--concurrency", "1", "--cas-size", "4MiB", "--log-format", "json")
	c := newClient(t, f.addr)
	ctx := t.Context()

	// One action holds the only slot while a second waits: the queue and
	// worker gauges are non-zero now.
	g := newGate(t)
	gated := c.executeAsync(ctx, c.prepare(ctx, g.action()))
	first := g.attempt(faultLimit)
	queued := c.executeAsync(ctx, c.prepare(ctx, action{cmd: shell("echo queued behind the gate"), doNotCache: true}))
	waitFor(t, "an action queued behind the gated one", faultLimit, func() bool {
		v, _ := familyValue(scrape(t, httpAddr), "paddock_scheduler_queued_actions")
		return v >= 1
	})
	checkNonZero(t, scrape(t, httpAddr),
		"paddock_scheduler_queued_actions", "paddock_scheduler_running_actions", "paddock_scheduler_workers{state=busy}")

	// The runner dies under the gated action: the scheduler retries it.
	before := f.runnerPID()
	if err := syscall.Kill(before, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	checkKilled(t, first, faultLimit)
	second := g.attempt(faultLimit)
	if _, err := second.Write([]byte("go\n")); err != nil {
		t.Fatalf("telling the gated action to go: %v", err)
	}
	second.Close()
	for _, ch := range []<-chan execResult{gated, queued} {
		r := <-ch
		if r.err != nil || status.FromProto(r.resp.Status).Code() != codes.OK {
			t.Fatalf("Execute: %v, %v", r.resp.GetStatus(), r.err)
		}
		if got := c.read(ctx, r.resp.Result.StdoutDigest); len(got) == 0 {
			t.Errorf("empty stdout of %v", r.resp.Result)
		}
	}

	// Actions that end every way the runner counts; two share an
	// executable input, which the worker's file cache fetches once.
	tool := tree{files: map[string]inputFile{
		"tool.sh": {data: []byte("#!/bin/sh\necho tool \"$@\"\n"), executable: true}, "data.txt": {data: []byte("input data\n")}}}
	for _, a := range []action{
		{cmd: shell("./tool.sh first; cat data.txt"), root: tool},
		{cmd: shell("./tool.sh second; cat data.txt"), root: tool},
		{cmd: shell("exec sleep 600"), timeout: time.Second},
		{cmd: shell("dd if=/dev/zero of=/dev/null bs=256M count=1"), platform: []*repb.Platform_Property{{Name: "EstimatedMemory", Value: "32MiB"}}},
		{cmd: shell("i=0; while [ $i -lt 100 ]; do sleep 600 & i=$((i+1)); done; exit 0")},
		{cmd: &repb.Command{Arguments: []string{"/bin/sh", "-c", "echo in the image"}}, platform: []*repb.Platform_Property{{Name: "container-image", Value: imageRef}}},
	} {
		a.doNotCache = true
		if _, err := c.execute(ctx, c.prepare(ctx, a), true); err != nil {
			t.Fatalf("Execute %q: %v", a.cmd.Arguments, err)
		}
	}

	// An upload whose bytes do not match its digest.
	bs := bytestream.NewByteStreamClient(grpctest.Dial(t, f.addr))
	w, err := bs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	claimed := digestOf([]byte("what the client claims"))
	if err := w.Send(&bytestream.WriteRequest{
		ResourceName: fmt.Sprintf("uploads/4a1c2f55-8c5e-4c1e-9a0e-2b9f2c1d0e01/blobs/%s/%d", claimed.Hash, claimed.SizeBytes),
		Data:         []byte("what the client sends!"), FinishWrite: true,
	}); err != nil {
		t.Fatalf("ByteStream Write: sending: %v", err)
	}
	if _, err := w.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ByteStream Write of bytes that do not match the digest: %v, want INVALID_ARGUMENT", err)
	}

	// More than the CAS holds: it evicts.
	for range 6 {
		blob := make([]byte, 1<<20)
		rand.Read(blob)
		c.upload(ctx, blob)
	}

	fams := scrape(t, httpAddr)
	checkNonZero(t, fams,
		// scheduler
		"paddock_scheduler_queue_wait_seconds", "paddock_scheduler_dispatches_total", "paddock_scheduler_retries_total",
		"paddock_scheduler_workers{state=idle}",
		// runner and sandbox
		"paddock_runner_sandbox_start_seconds",
		"paddock_runner_actions_total{end=exited}", "paddock_runner_actions_total{end=timeout}",
		"paddock_runner_actions_total{end=oom_killed}", "paddock_runner_actions_total{end=pids_limit}",
		"paddock_runner_action_cpu_seconds_total", "paddock_runner_action_peak_memory_bytes",
		// worker
		"paddock_worker_stage_seconds{stage=fetch}", "paddock_worker_stage_seconds{stage=input_root}",
		"paddock_worker_stage_seconds{stage=run}", "paddock_worker_stage_seconds{stage=upload}",
		"paddock_worker_stage_seconds{stage=total}", "paddock_worker_input_files_linked_total",
		"paddock_worker_file_cache_fetches_total", "paddock_worker_input_cache_hit_ratio", "paddock_worker_file_cache_bytes",
		// storage
		"paddock_storage_cas_stored_bytes", "paddock_storage_cas_stored_blobs", "paddock_storage_cas_evictions_total",
		"paddock_storage_cas_bytes_total{direction=read}", "paddock_storage_cas_bytes_total{direction=write}",
		"paddock_storage_verification_failures_total{direction=write}",
		// images
		"paddock_images_lookups_total", "paddock_images_pulls_total{result=ok}", "paddock_images_pull_seconds",
		"paddock_images_pulled_bytes_total", "paddock_images_layers_unpacked_total", "paddock_images_cached_bytes",
		// per-RPC gRPC, of the farm's endpoint and of the runner's socket
		"grpc_server_handled_total{grpc_service=build.bazel.remote.execution.v2.Execution}",
		"grpc_server_handled_total{grpc_service=paddock.runner.v1.Runner}",
		"grpc_server_handling_seconds", "grpc_server_started_total",
		// Go runtime and process
		"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes",
	)
	// Registered, if zero here: nothing was evicted or is in use now.
	for _, n := range []string{"paddock_images_evictions_total", "paddock_images_in_use", "paddock_storage_verification_failures_total"} {
		if _, ok := familyValue(fams, n); !ok {
			t.Errorf("metric family %s is not served", n)
		}
	}
	// up's endpoint: the farm and its worker are healthy.
	health := grpc_health_v1.NewHealthClient(grpctest.Dial(t, f.addr))
	for _, svc := range []string{"", "paddock.worker"} {
		if resp, err := health.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc}); err != nil || resp.Status != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Errorf("health of %q on up's endpoint: %v %v, want SERVING", svc, resp, err)
		}
	}
	checkActionLog(t, f.log())
	f.shutdown()
}

// checkActionLog checks that a JSON log has an info line per completed
// action with its digest, stage durations and outcome.
func checkActionLog(t *testing.T, log string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(log, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["msg"] != "action completed" {
			continue
		}
		n++
		keys := []string{"action", "instance", "worker", "status"}
		if _, ran := m["exit_code"]; ran {
			keys = append(keys, "queued_seconds", "fetch_seconds", "run_seconds", "upload_seconds")
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("action log line without %s: %s", k, line)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d \"action completed\" JSON log lines, want one per action (at least 5)", n)
	}
}
