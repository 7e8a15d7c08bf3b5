package worker

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// Runner runs one command in a sandbox: the worker's only need of its
// runner. RunnerClient adapts the runner's gRPC client; tests and other
// runners implement it directly.
type Runner interface {
	Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error)
}

// RunnerClient returns the Runner reached over conn (a connection to a
// `paddock runner`). An action waits up to readyTimeout (default 30s) for
// a runner that is not answering (restarting) before it is reported as
// retryable; while conn is ready, the action goes to the runner at once,
// without a readiness round trip.
func RunnerClient(conn *grpc.ClientConn, readyTimeout time.Duration) Runner {
	if readyTimeout <= 0 {
		readyTimeout = 30 * time.Second
	}
	return &grpcRunner{client: runnerpb.NewRunnerClient(conn), conn: conn, readyTimeout: readyTimeout}
}

type grpcRunner struct {
	client       runnerpb.RunnerClient
	conn         runnerConn
	readyTimeout time.Duration
}

// runnerConn is what grpcRunner uses of its connection (*grpc.ClientConn).
type runnerConn interface {
	GetState() connectivity.State
	ResetConnectBackoff()
}

func (r *grpcRunner) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	// A runner that is restarting (it crashed, or was upgraded) gets a
	// moment to come back before the action is given up as retryable.
	if r.conn.GetState() != connectivity.Ready {
		// Try the socket now rather than at the end of the connection's
		// backoff: the runner may be back already.
		r.conn.ResetConnectBackoff()
		rctx, cancel := context.WithTimeout(ctx, r.readyTimeout)
		_, err := r.client.CheckReadiness(rctx, &runnerpb.CheckReadinessRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("runner not ready after %s: %w", r.readyTimeout, err)
		}
	}
	return r.client.Run(ctx, req, grpc.WaitForReady(true))
}
