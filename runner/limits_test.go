package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/nettest"
)

// TestNetwork: by default the sandbox has its own network namespace, so a
// TCP listener on the host's loopback is unreachable; dockerNetwork=standard
// keeps the host's network and reaches it.
func TestNetwork(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.AllowHostNetwork = true })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 4)
	nettest.AcceptEach(t, lis, func(c net.Conn) {
		accepted <- struct{}{}
		c.Close()
	})
	port := lis.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && echo connected", port)

	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/bash", "-c", script))
	if out, _ := a.output(t); resp.StatusCode != 0 || resp.ExitCode == 0 || out != "" {
		t.Errorf("default network: exit %d, stdout %q; want the connection refused", resp.ExitCode, out)
	}
	select {
	case <-accepted:
		t.Fatal("the host listener accepted a connection from a sandbox without network")
	default:
	}

	b := e.newAction(t)
	req := b.request("/bin/bash", "-c", script)
	req.Platform = []*runnerpb.Property{{Name: "dockerNetwork", Value: "standard"}}
	resp = e.run(t, req)
	mustSucceed(t, b, resp)
	if out, _ := b.output(t); out != "connected\n" {
		t.Errorf("dockerNetwork=standard: stdout %q", out)
	}
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the host listener never saw the sandbox's connection")
	}
}

// TestTimeout: past its timeout the action is terminated, the status is
// DEADLINE_EXCEEDED with timed_out, and the output written so far is kept.
func TestTimeout(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	req := a.request("/bin/sh", "-c", "echo partial; exec sleep 600")
	req.Timeout = durationpb.New(500 * time.Millisecond)
	resp := e.run(t, req)
	if codes.Code(resp.StatusCode) != codes.DeadlineExceeded || !resp.TimedOut {
		t.Fatalf("status %s %q timed_out %v, want DEADLINE_EXCEEDED", codes.Code(resp.StatusCode), resp.StatusMessage, resp.TimedOut)
	}
	if out, _ := a.output(t); out != "partial\n" {
		t.Errorf("partial stdout %q not kept", out)
	}
	if resp.Signal == 0 {
		t.Errorf("a timed-out command reports signal %d, exit %d; want the kill's signal", resp.Signal, resp.ExitCode)
	}
}

// TestOOM: EstimatedMemory is the memory limit; a command that needs more
// is OOM-killed and the response says so.
func TestOOM(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	// dd's 256 MiB buffer is filled by the read from /dev/zero.
	req := a.request("/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1")
	req.Platform = []*runnerpb.Property{{Name: "EstimatedMemory", Value: "32MiB"}}
	resp := e.run(t, req)
	if resp.StatusCode != 0 || !resp.OomKilled || resp.ExitCode == 0 {
		t.Fatalf("status %d exit %d signal %d oom_killed %v, want an OOM kill", resp.StatusCode, resp.ExitCode, resp.Signal, resp.OomKilled)
	}
	if peak := resp.Usage.GetPeakMemoryBytes(); peak > 40<<20 {
		t.Errorf("peak memory %d above the 32 MiB limit", peak)
	}
}

// TestForkBombHitsPidsLimit: forks past the pids limit fail, the action
// still ends, and the response reports the limit hit.
func TestForkBombHitsPidsLimit(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.PidsLimit = 32 })
	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 600 & i=$((i+1)); done; exit 0"))
	if resp.StatusCode != 0 || !resp.PidsLimitHit {
		_, stderr := a.output(t)
		t.Fatalf("status %d exit %d pids_limit_hit %v (stderr %q), want the limit reported", resp.StatusCode, resp.ExitCode, resp.PidsLimitHit, stderr)
	}
	if peak := resp.Usage.GetPeakPids(); peak > 32 {
		t.Errorf("peak pids %d above the limit of 32", peak)
	}
	waitFor(t, "the fork bomb's processes to be gone", func() bool { return len(slotProcesses(t)) == 0 })
}

// TestCancel: cancelling the call terminates the sandbox; the service
// answers CANCELLED, and nothing of the sandbox or its bundle is left.
func TestCancel(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, overSocket := range []bool{false, true} {
		t.Run(fmt.Sprintf("overSocket=%v", overSocket), func(t *testing.T) {
			a := e.newAction(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				resp *runnerpb.RunResponse
				err  error
			}
			done := make(chan result, 1)
			go func() {
				req := a.request("/bin/sh", "-c", "echo started; exec sleep 600")
				var r result
				if overSocket {
					r.resp, r.err = e.client.Run(ctx, req)
				} else {
					r.resp, r.err = e.svc.Run(ctx, req)
				}
				done <- r
			}()
			waitFor(t, "the command to start", func() bool { out, _ := a.output(t); return out == "started\n" })
			if len(slotProcesses(t)) == 0 {
				t.Fatal("no sandbox process seen while the action runs")
			}
			cancel()
			r := <-done
			if overSocket {
				if status.Code(r.err) != codes.Canceled {
					t.Errorf("client saw %v, want Canceled", r.err)
				}
			} else if r.err != nil || codes.Code(r.resp.StatusCode) != codes.Canceled || !r.resp.Cancelled {
				t.Errorf("response %v, %v; want CANCELLED", r.resp, r.err)
			}
			waitFor(t, "the sandbox to be gone", func() bool { return len(slotProcesses(t)) == 0 })
			waitFor(t, "the bundle's config to be removed", func() bool {
				m, err := filepath.Glob(filepath.Join(e.cfg.StateDir, "bundles", "*", "config.json"))
				return err == nil && len(m) == 0
			})
		})
	}
}

// TestCancelledBeforeTheSandbox: a Run cancelled while the runner sets it
// up starts no sandbox, and what its set-up runs into meanwhile (the
// worker removes an abandoned action's directory at once) is logged as
// the cancellation, not as a failed set-up.
func TestCancelledBeforeTheSandbox(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, removed := range []bool{false, true} {
		t.Run(fmt.Sprintf("removed=%v", removed), func(t *testing.T) {
			a := e.newAction(t)
			if removed {
				if err := os.RemoveAll(filepath.Dir(a.root)); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			resp, err := e.svc.Run(ctx, a.request("/bin/sh", "-c", "echo ran"))
			if err != nil || codes.Code(resp.StatusCode) != codes.Canceled || !resp.Cancelled || resp.StatusMessage != "run cancelled" {
				t.Errorf("Run = %v, %v; want CANCELLED, %q", resp, err, "run cancelled")
			}
			if _, err := os.Stat(a.stdout); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("stdout: %v; want none: no sandbox started", err)
			}
			want := fmt.Sprintf("level=INFO msg=action id=%s status=Canceled message=%q ", a.id, "run cancelled")
			for _, line := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(line, "id="+a.id+" ") && !strings.Contains(line, want) {
					t.Errorf("logged %q, want only %q", line, want)
				}
			}
			if !strings.Contains(e.logs.String(), want) {
				t.Errorf("the cancelled run was not logged as %q", want)
			}
		})
	}
}

// TestRefusals: refused properties and bad requests come back as statuses
// naming what was wrong, and nothing runs.
func TestRefusals(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, tc := range []struct {
		name  string
		props []*runnerpb.Property
		mod   func(*runnerpb.RunRequest)
		code  codes.Code
		want  string
	}{
		{"privileged", []*runnerpb.Property{{Name: "dockerPrivileged", Value: "true"}}, nil, codes.InvalidArgument, "dockerPrivileged"},
		{"unknown property", []*runnerpb.Property{{Name: "dockerNetworkk", Value: "off"}}, nil, codes.InvalidArgument, "dockerNetworkk"},
		{"bad network", []*runnerpb.Property{{Name: "dockerNetwork", Value: "bridge"}}, nil, codes.InvalidArgument, "dockerNetwork"},
		// The host's network reaches the farm's own ports: an operator's choice.
		{"host network by default", []*runnerpb.Property{{Name: "dockerNetwork", Value: "standard"}}, nil, codes.InvalidArgument, "allow_host_network"},
		{"no image cache", []*runnerpb.Property{{Name: "container-image", Value: "docker://127.0.0.1:1/x:1"}}, nil, codes.FailedPrecondition, "container-image"},
		{"missing executable", nil, func(r *runnerpb.RunRequest) { r.Arguments = []string{"/no/such/tool"} }, codes.InvalidArgument, "/no/such/tool"},
		{"relative input root", nil, func(r *runnerpb.RunRequest) { r.InputRoot = "build/1" }, codes.InvalidArgument, "input_root"},
		{"escaping working directory", nil, func(r *runnerpb.RunRequest) { r.WorkingDirectory = "../x" }, codes.InvalidArgument, "working directory"},
		// Inside the root a tmp exists, but the sandbox's chdir would not
		// be clamped at the root: it would land in the sandbox's /tmp.
		{"working directory through a symlink leaving the root", nil, func(r *runnerpb.RunRequest) {
			if err := errors.Join(os.Mkdir(filepath.Join(r.InputRoot, "tmp"), 0o755), os.Symlink("../tmp", filepath.Join(r.InputRoot, "t"))); err != nil {
				t.Fatal(err)
			}
			r.WorkingDirectory = "t"
		}, codes.InvalidArgument, "leads out of the input root"},
		// Execute counts the Command's strings; the kernel also counts
		// what the runner adds (here the program's path).
		{"arguments past ARG_MAX", nil, func(r *runnerpb.RunRequest) {
			for range 21 {
				r.Arguments = append(r.Arguments, strings.Repeat("a", 100<<10))
			}
		}, codes.InvalidArgument, "command.arguments and command.environment_variables"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.newAction(t)
			req := a.request("/bin/sh", "-c", "echo ran > ran")
			req.Platform = tc.props
			if tc.mod != nil {
				tc.mod(req)
			}
			resp := e.run(t, req)
			if codes.Code(resp.StatusCode) != tc.code || !strings.Contains(resp.StatusMessage, tc.want) {
				t.Errorf("status %s %q, want %s naming %q", codes.Code(resp.StatusCode), resp.StatusMessage, tc.code, tc.want)
			}
			if _, err := os.Stat(filepath.Join(a.root, "ran")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the command ran despite the refusal")
			}
		})
	}
}

// TestResourceProperties: EstimatedCPU, dockerShmSize and capability
// changes are accepted by the sandbox: /dev/shm has the asked size, the
// capability set is the changed one, and the CPU quota does not stop the
// command from running.
func TestResourceProperties(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	req := a.request("/bin/sh", "-c", "/bin/df -k --output=size /dev/shm | tail -n1; grep CapEff /proc/self/status")
	req.Platform = []*runnerpb.Property{
		{Name: "EstimatedCPU", Value: "0.5"},
		{Name: "dockerShmSize", Value: "128m"},
		{Name: "dockerDropCapabilities", Value: "ALL"},
		{Name: "dockerAddCapabilities", Value: "CHOWN"},
	}
	resp := e.run(t, req)
	mustSucceed(t, a, resp)
	out, _ := a.output(t)
	if fields := strings.Fields(out); len(fields) != 3 || fields[0] != "131072" || fields[2] != "0000000000000001" {
		t.Errorf("inside: %q, want /dev/shm of 131072 KiB and only CAP_CHOWN (mask 1)", out)
	}
}
