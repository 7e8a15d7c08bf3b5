package worker_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/worker"
)

// TestNotReadyUntilRegistered: a worker whose scheduler address reaches a
// server that is not a scheduler (storage's port, say) has a connection
// that is up and a runner that answers, but it never registers: it is not
// ready, where it used to say "worker ready" and SERVING.
func TestNotReadyUntilRegistered(t *testing.T) {
	h := newHarness(t)
	var attempts atomic.Int64
	addr := grpctest.Listen(t, func(*grpc.Server) {}, grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		attempts.Add(1)
		return status.Error(codes.Unimplemented, "unknown service paddock.worker.v1.WorkerService")
	}))
	conn := grpctest.Dial(t, "passthrough:///"+addr)
	w, err := worker.New(worker.Options{ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner, BuildDir: filepath.Join(h.dir, "builds2")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	up, probes := &atomic.Bool{}, &atomic.Int64{}
	up.Store(true)
	ready := make(chan bool, 10)
	go worker.Readiness{Runner: probeRunner{up: up, probes: probes}, Scheduler: conn, Worker: w, Interval: 10 * time.Millisecond}.Run(ctx, func(r bool, _ string) {
		ready <- r
	})
	defer farmtest.RunWorker(t, ctx, w, conn)()
	// Several refused attempts on a connection that is up, and readiness
	// probed twice since.
	for attempts.Load() < 3 || conn.GetState() != connectivity.Ready {
		if ctx.Err() != nil {
			t.Fatalf("%d attempts to register, connection %s", attempts.Load(), conn.GetState())
		}
		time.Sleep(time.Millisecond)
	}
	for since := probes.Load(); probes.Load() < since+2; time.Sleep(time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatal("readiness not probed")
		}
	}
	if w.Registered() {
		t.Fatal("registered with a server that is not a scheduler")
	}
	if first := <-ready; first {
		t.Fatal("ready at first")
	}
	// Not ready again (its reason changed, from the connection to the
	// registration) is no change; ready would be.
	for {
		select {
		case r := <-ready:
			if r {
				t.Fatal("ready without a scheduler")
			}
			continue
		default:
		}
		break
	}
}
