package e2e

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// BenchmarkForkBombResponsiveness measures how the farm and its host fare
// while a fork bomb runs in a sandbox of `paddock up` (default pids_limit,
// 4096): each iteration is one bomb, whose processes ignore SIGTERM, run
// with a 3-second timeout until the kill path ends it. Meanwhile a sampler
// calls GetCapabilities and starts /bin/true on the host, one after the
// other. Reported: the p50 and p99 of each, and how long past its timeout
// each bomb took to be answered, and its sandbox to end (by the runner's
// clock), at most (the grace period, 2s, included).
//
//	go test ./e2e/ -run '^$' -bench ForkBombResponsiveness -benchtime 2x
func BenchmarkForkBombResponsiveness(b *testing.B) {
	f, c := startUpClient(b)
	caps := repb.NewCapabilitiesClient(grpctest.Dial(b, f.addr))
	ctx := b.Context()
	const timeout = 3 * time.Second
	d := c.prepare(ctx, action{cmd: &repb.Command{
		Arguments: []string{"/bin/bash", "-c", `trap "" TERM; f() { while :; do f & done; }; f`},
	}, timeout: timeout})

	var mu sync.Mutex
	var capLat, trueLat []time.Duration
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sctx.Err() == nil {
			start := time.Now()
			_, err := caps.GetCapabilities(sctx, &repb.GetCapabilitiesRequest{})
			mid := time.Now()
			trueErr := exec.Command("/bin/true").Run()
			end := time.Now()
			if err != nil || trueErr != nil {
				continue
			}
			mu.Lock()
			capLat, trueLat = append(capLat, mid.Sub(start)), append(trueLat, end.Sub(mid))
			mu.Unlock()
		}
	}()
	var overshoot, inSandbox []time.Duration
	for b.Loop() {
		start := time.Now()
		resp, err := c.execute(ctx, d, true)
		if err != nil || status.FromProto(resp.Status).Code() != codes.DeadlineExceeded {
			b.Fatalf("fork bomb: %v, %v; want DEADLINE_EXCEEDED", resp.GetStatus(), err)
		}
		overshoot = append(overshoot, time.Since(start)-timeout)
		md := resp.GetResult().GetExecutionMetadata()
		inSandbox = append(inSandbox, md.GetExecutionCompletedTimestamp().AsTime().Sub(md.GetExecutionStartTimestamp().AsTime())-timeout)
	}
	stop()
	wg.Wait()
	b.ReportMetric(percentile(capLat, 0.5), "caps-p50-ms")
	b.ReportMetric(percentile(capLat, 0.99), "caps-p99-ms")
	b.ReportMetric(percentile(trueLat, 0.5), "true-p50-ms")
	b.ReportMetric(percentile(trueLat, 0.99), "true-p99-ms")
	b.ReportMetric(percentile(overshoot, 1)/1000, "past-timeout-max-s")
	b.ReportMetric(percentile(inSandbox, 1)/1000, "sandbox-past-timeout-max-s")
	f.shutdown()
}
