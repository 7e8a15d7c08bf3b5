package main

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/configs"
)

// TestServeBackgroundReportsABrokenListener: a listener that breaks under
// a background server reaches fail, naming what it served and where; a
// stopped server does not.
func TestServeBackgroundReportsABrokenListener(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	defer g.Stop()
	failed := make(chan error, 1)
	done := serveBackground(g, lis, "worker listener", func(err error) { failed <- err })
	lis.Close() // as a broken listener: Accept fails for good
	<-done
	select {
	case err := <-failed:
		if !strings.Contains(err.Error(), "worker listener on "+lis.Addr().String()) {
			t.Errorf("fail got %q, want it to name the worker listener and %s", err, lis.Addr())
		}
	default:
		t.Fatal("Serve returned on a broken listener and fail was not called")
	}

	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g2 := grpc.NewServer()
	done = serveBackground(g2, lis2, "worker listener", func(err error) { t.Errorf("a stopped server failed: %v", err) })
	g2.Stop()
	<-done
}

// TestUpStopsWhenItsWorkerSocketBreaks: the worker socket of paddock up's
// endpoint breaking stops the farm (stop is called) and its error comes
// out of serve, instead of the farm running on with no way for its worker
// to reach the scheduler.
func TestUpStopsWhenItsWorkerSocketBreaks(t *testing.T) {
	cfg := configs.DefaultUp(t.TempDir())
	cfg.Storage.Listen = "127.0.0.1:0"
	if err := cfg.Resolve(); err != nil {
		t.Fatal(err)
	}
	ep, err := startUpEndpoint(cfg, serverSecurity{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ep.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan struct{})
	served := ep.serve(ctx, func() {
		select {
		case <-stopped:
		default:
			close(stopped)
		}
		cancel()
	})
	ep.gilis.Close()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "worker socket on ") {
			t.Errorf("serve ended with %v, want the worker socket's failure", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the farm kept serving after its worker socket broke")
	}
	select {
	case <-stopped:
	default:
		t.Error("stop was not called")
	}
}
