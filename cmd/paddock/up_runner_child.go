package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"
)

// startRunnerChild starts `paddock up`'s runner as a supervised child
// (restarted if it dies) and waits until it is ready. It returns the
// runner's socket and a channel closed once the last child is gone. The
// child serves its metrics on a UNIX socket in data, which obs gathers
// into up's own /metrics.
func startRunnerChild(ctx context.Context, data, config, pprofAddr, logFormat string, concurrency int, obs *observability, logger *slog.Logger) (string, <-chan struct{}, error) {
	sock := filepath.Join(data, "runner.sock")
	runnerHTTP := filepath.Join(data, "runner-http.sock")
	// The data directory holds the CAS and every action's input root: hide
	// it from actions that run on the host's root.
	args := []string{"runner", "--socket", sock, "--state", filepath.Join(data, "runner"), "--hide", data,
		"--http-listen", "unix:" + runnerHTTP, "--log-format", logFormat, "--concurrency", strconv.Itoa(concurrency)}
	obs.gather = mergeGatherers{own: obs.gather, child: newChildMetrics(runnerHTTP)}
	if config != "" {
		args = append(args, "--config", config)
	}
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
