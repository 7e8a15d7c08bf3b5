package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// roles is a farm run as separate processes, as on several machines:
// `paddock storage`, `paddock scheduler`, `paddock runner` and workers
// started one by one, so a test can kill or replace one of them.
type roles struct {
	t                      testing.TB
	storageAddr, schedAddr string
	dir, sock, workDir     string // dir holds every role's state
	storage, sched, runner *process
	worker                 *process // the latest started
	admin                  workerpb.AdminServiceClient
	schedArgs              []string // the scheduler's arguments but --listen
}

var schedReady = regexp.MustCompile(`^paddock scheduler listening on (\S+)`)

// restartSchedulerAfter stops the scheduler with sig (SIGKILL when nil,
// as a crash) and starts it again on the same address.
func (r *roles) restartSchedulerAfter(sig os.Signal) {
	r.t.Helper()
	if sig == nil {
		r.sched.kill()
	} else {
		r.sched.stop(sig)
	}
	r.sched, _ = startProcess(r.t, "scheduler-restarted", schedReady, append(r.schedArgs, "--listen", r.schedAddr)...)
}

// startRoles starts storage, a scheduler and a runner under dir; workers
// will keep their file caches and build directories in workDir. The
// scheduler gives up on a worker whose stream broke after 2s (10s by
// default), so tests of lost workers are quick.
func startRoles(t testing.TB, dir, workDir string) *roles {
	return startRolesWith(t, dir, workDir, "reconnect_grace: 2s\n", false)
}

// newRoles is startRoles in a fresh searchable temporary directory, with
// the workers' directories in its "worker".
func newRoles(t testing.TB) *roles {
	dir := searchableTempDir(t)
	return startRoles(t, dir, filepath.Join(dir, "worker"))
}

// newJournaledRoles is newRoles with startRolesJournaled.
func newJournaledRoles(t testing.TB) *roles {
	dir := searchableTempDir(t)
	return startRolesJournaled(t, dir, filepath.Join(dir, "worker"))
}

// startRolesJournaled is startRoles with the scheduler keeping a journal
// (so restartSchedulerAfter keeps its operations) and the default
// reconnect_grace, which workers need to come back after its restart.
func startRolesJournaled(t testing.TB, dir, workDir string) *roles {
	return startRolesWith(t, dir, workDir, "", true)
}

func startRolesWith(t testing.TB, dir, workDir, schedConfig string, journal bool) *roles {
	t.Helper()
	storage, addr := startProcess(t, "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
	return startRolesOn(t, dir, workDir, schedConfig, journal, storage, addr)
}

// startRolesOn is startRolesWith around a storage process already started.
func startRolesOn(t testing.TB, dir, workDir, schedConfig string, journal bool, storage *process, storageAddr string) *roles {
	t.Helper()
	r := &roles{t: t, dir: dir, sock: filepath.Join(dir, "runner.sock"), workDir: workDir, storage: storage, storageAddr: storageAddr}
	cfg := filepath.Join(dir, "scheduler.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\n"+schedConfig+"lease_duration: 10s\nheartbeat_interval: 1s\ntick_interval: 100ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.schedArgs = []string{"scheduler", "--storage", r.storageAddr, "--config", cfg}
	if journal {
		r.schedArgs = append(r.schedArgs, "--journal-dir", filepath.Join(dir, "scheduler-journal"))
	}
	r.sched, r.schedAddr = startProcess(t, "scheduler", schedReady, append(r.schedArgs, "--listen", "127.0.0.1:0")...)
	r.runner, _ = startProcess(t, "runner", regexp.MustCompile(`^paddock runner listening on (\S+)`),
		"runner", "--socket", r.sock, "--state", filepath.Join(dir, "runner"), "--hide", workDir, "--config", hostNetworkConfig(t))
	r.admin = workerpb.NewAdminServiceClient(grpctest.Dial(t, r.schedAddr))
	return r
}

// startWorker starts a worker with the given id and concurrency 1, and
// waits until the scheduler has it connected.
func (r *roles) startWorker(id string) *process {
	r.t.Helper()
	r.worker, _ = startProcess(r.t, "worker-"+id, nil, "worker", "--id", id, "--concurrency", "1",
		"--scheduler", r.schedAddr, "--storage", r.storageAddr, "--runner", r.sock, "--dir", r.workDir)
	waitFor(r.t, "worker "+id+" connected", faultLimit, func() bool {
		resp, err := r.admin.ListWorkers(r.t.Context(), &workerpb.ListWorkersRequest{})
		for _, w := range resp.GetWorkers() {
			if err == nil && w.WorkerId == id && w.Connected {
				return true
			}
		}
		return false
	})
	return r.worker
}

// stop stops every role with Ctrl-C, and checks they exit cleanly and
// leave no process behind.
func (r *roles) stop() {
	r.t.Helper()
	r.worker.stop(os.Interrupt)
	r.runner.stop(os.Interrupt)
	r.sched.stop(os.Interrupt)
	r.storage.stop(os.Interrupt)
	checkNoProcessesLeft(r.t)
}
