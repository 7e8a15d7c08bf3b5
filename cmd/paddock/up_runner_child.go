package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/paddock-build/paddock/configs"
)

// startRunnerChild starts `paddock up`'s runner as a supervised child
// (restarted if it dies) and waits until it is ready. The child reads
// cfg.Runner (resolved: its socket and state under the data directory,
// which it hides from actions on the host's root, as it holds the CAS and
// every input root) from DATA/runner.yaml. It returns the runner's socket
// and a channel closed once the last child is gone. The child serves its
// metrics on a UNIX socket in the data directory, which obs gathers into
// up's own /metrics.
func startRunnerChild(ctx context.Context, cfg configs.Up, pprofAddr string, logs logFlags, obs *observability, logger *slog.Logger) (string, <-chan struct{}, error) {
	sock := cfg.Runner.Socket
	runnerHTTP := filepath.Join(cfg.Data, "runner-http.sock")
	file := filepath.Join(cfg.Data, "runner.yaml")
	b, err := configs.Marshal(cfg.Runner)
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return "", nil, err
	}
	args := append([]string{"runner", "--config", file, "--http-listen", "unix:" + runnerHTTP}, logs.childArgs()...)
	obs.gather = mergeGatherers{own: obs.gather, child: newChildMetrics(runnerHTTP)}
	if pprofAddr != "" {
		host, _, _ := net.SplitHostPort(pprofAddr)
		args = append(args, "--pprof-listen", net.JoinHostPort(host, "0"))
	}
	done := superviseChild(ctx, logger, args)
	if err := waitRunnerReady(ctx, sock, 30*time.Second); err != nil {
		return "", nil, err
	}
	return sock, done, nil
}
