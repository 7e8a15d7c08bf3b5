package e2e

import (
	"slices"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BenchmarkTrivialActionOverhead measures what one trivial action costs
// through the whole stack of `paddock up`: Execute (skipping the cache
// lookup) → scheduler queue → worker (fetch Action, Command and a
// one-file input root, build it) → runner → sandbox running /bin/true →
// output and stdout/stderr upload → result back to the client. Actions run
// one after another, so each iteration is one action's latency; p50 and p90
// are reported alongside the mean.
//
//	go test ./e2e/ -run '^$' -bench TrivialActionOverhead -benchtime 200x
func BenchmarkTrivialActionOverhead(b *testing.B) {
	f, c := startUpClient(b)
	ctx := b.Context()
	d := c.prepare(ctx, action{
		cmd: &repb.Command{
			Arguments:            []string{"/bin/true"},
			EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
			OutputPaths:          []string{"out"},
		},
		root: tree{files: map[string]inputFile{"in.txt": {data: []byte("input\n")}}},
	})
	// One untimed run warms the sandbox's init and the worker's caches.
	if _, err := c.execute(ctx, d, true); err != nil {
		b.Fatal(err)
	}
	// Where the time goes, from the result's metadata: the worker's whole
	// handling, and the runner's sandbox alone (from the runner's clock).
	var total, inWorker, inSandbox []time.Duration
	for b.Loop() {
		start := time.Now()
		resp, err := c.execute(ctx, d, true)
		total = append(total, time.Since(start))
		if err != nil || status.FromProto(resp.Status).Code() != codes.OK || resp.Result.GetExitCode() != 0 {
			b.Fatalf("trivial action: %v, %v", resp.GetStatus(), err)
		}
		md := resp.Result.ExecutionMetadata
		inWorker = append(inWorker, md.WorkerCompletedTimestamp.AsTime().Sub(md.WorkerStartTimestamp.AsTime()))
		inSandbox = append(inSandbox, md.ExecutionCompletedTimestamp.AsTime().Sub(md.ExecutionStartTimestamp.AsTime()))
	}
	b.ReportMetric(percentile(total, 0.5), "p50-ms")
	b.ReportMetric(percentile(total, 0.9), "p90-ms")
	b.ReportMetric(percentile(inWorker, 0.5), "worker-p50-ms")
	b.ReportMetric(percentile(inSandbox, 0.5), "sandbox-p50-ms")
	f.shutdown()
}

// percentile returns the p-th percentile of ds in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return float64(ds[int(p*float64(len(ds)-1))].Microseconds()) / 1000
}
