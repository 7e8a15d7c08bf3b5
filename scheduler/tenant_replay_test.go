package scheduler

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
)

// tenantOrder connects a one-slot worker to s and returns the operations
// it is given, completing each, until n have run.
func tenantOrder(t *testing.T, s *Scheduler, n int) []string {
	t.Helper()
	result, _ := proto.Marshal(&repb.ExecuteResponse{Result: &repb.ActionResult{}})
	sess, err := s.connectWorker(context.Background(), &workerpb.Register{WorkerId: "one-slot", Concurrency: 1, Platform: []*workerpb.Property{linux}})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var order []string
	for len(order) < n {
		ms, err := sess.next(ctx)
		if err != nil {
			t.Fatalf("after %d dispatches: %v", len(order), err)
		}
		for _, m := range ms {
			if a := m.GetAssignment(); a != nil {
				order = append(order, a.OperationName)
				if err := sess.handle(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.Result{
					OperationName: a.OperationName, Attempt: a.Attempt, ExecuteResponse: result}}}); err != nil {
					t.Fatalf("result of %s: %v", a.OperationName, err)
				}
			}
		}
	}
	return order
}

// Queued operations of two tenants survive a restart with the journal,
// from a snapshot and from the records after it, and are still dispatched
// with the tenants taking turns, each tenant's in its order.
func TestRestartKeepsTenantsTakingTurns(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JournalDir = t.TempDir()
	first := newTestScheduler(t, cfg, nil)
	n := 0
	queue := func(tenant string, count int) {
		for i := 0; i < count; i++ {
			sub := benchSubmission(n)
			sub.name = fmt.Sprintf("%s-%03d", tenant, n)
			sub.owner, sub.instance, sub.invocation = tenant, tenant, "inv-"+tenant
			n++
			if err := first.accept(t.Context(), sub.name, func(now time.Time) error { _, err := first.core.Execute(now, sub); return err }); err != nil {
				t.Fatal(err)
			}
		}
	}
	queue("team-a", 40)
	queue("team-b", 4)
	// A snapshot covers these; the rest are records after it.
	first.mu.Lock()
	first.startSnapshot()
	first.mu.Unlock()
	first.dur.snaps.Wait()
	queue("team-a", 10)
	queue("team-b", 6)
	first.Close()

	var logs strings.Builder
	second := newTestScheduler(t, cfg, &logs)
	defer second.Close()
	if !strings.Contains(logs.String(), "queued=60") || strings.Contains(logs.String(), "snapshot_record=0") {
		t.Fatalf("the restart did not recover 60 queued operations from a snapshot and records: %s", logs.String())
	}
	order := tenantOrder(t, second, 60)
	if last := lastIndex(order, "team-b"); last >= 21 {
		t.Fatalf("team-b's last action was dispatch #%d after the restart, want < 21 (tenants in turn): %v", last, order)
	}
	for _, tenant := range []string{"team-a", "team-b"} {
		prev := ""
		for _, name := range order {
			if strings.HasPrefix(name, tenant) {
				if name <= prev {
					t.Fatalf("%s's actions out of order after the restart: %s after %s", tenant, name, prev)
				}
				prev = name
			}
		}
	}
}

// readV1Records reads testdata/records-v1.bin: records as the code of
// commit 0cc4a33 wrote them, each behind a two-byte length.
func readV1Records(t *testing.T) []record {
	t.Helper()
	b, err := os.ReadFile("testdata/records-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for len(b) > 0 {
		n := int(b[0])<<8 | int(b[1])
		r, err := decodeRecord(b[2 : 2+n])
		if err != nil {
			t.Fatalf("record %d: %v", len(out), err)
		}
		out = append(out, r)
		b = b[2+n:]
	}
	return out
}

// Journal records written before tenants took turns carry each Execute's
// tenant and invocation already: replayed, they queue by tenant, and the
// recovered queue is dispatched in turns.
func TestVersion1RecordsReplayByTenant(t *testing.T) {
	records := readV1Records(t)
	if len(records) != 8 {
		t.Fatalf("%d records in testdata/records-v1.bin, want 8 (6 executes, a cache hit, a dispatch)", len(records))
	}
	c := replayed(t, DefaultConfig(), nil, nil, records)
	c.recovered(time.Unix(1_800_000_000, 0))
	if c.lastTenant != "tenant-0" || c.tenants["tenant-0"].queued != 2 || c.tenants["tenant-1"].queued != 3 {
		t.Fatalf("after replay: last tenant %q, tenants %+v %+v", c.lastTenant, c.tenants["tenant-0"], c.tenants["tenant-1"])
	}
	c.Connect(time.Unix(1_800_000_000, 0), registration{id: "w2", capacity: 5, platform: []*workerpb.Property{linux}})
	var order []string
	for _, m := range c.takeEffects().dispatch {
		if a := m.msg.GetAssignment(); a != nil {
			order = append(order, a.OperationName[len("operations/0000000"):][:1])
		}
	}
	// tenant-1 (odd) first, as tenant-0 was served last.
	if got := strings.Join(order, ""); got != "12345" {
		t.Fatalf("dispatched actions %s, want 12345 (tenants in turn)", got)
	}
}

// A snapshot written before tenants took turns (version 1) is still
// restored: its queues are the tenant ""'s, dispatched as before, and a
// new snapshot of it is version 2 and reads back equal.
func TestVersion1SnapshotIsRestored(t *testing.T) {
	c := restoreTestdata(t, "testdata/state-v1.bin", 1)
	checkTenantCounts(t, c)
	c.recovered(time.Unix(1_800_000_000, 0))
	if len(c.queues) != 1 || c.tenants[""].queued != 5 || c.tenants[""].running != 1 {
		t.Fatalf("restored %d queues, tenant \"\" %+v; want one queue, 5 queued and 1 running", len(c.queues), c.tenants[""])
	}
	again := mustState(t, c)
	enc, err := encodeState(again)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeState(enc)
	if err != nil || enc[0] != stateVersion || !equalStates(back, again) {
		t.Fatalf("re-encoded snapshot: version %d, %v", enc[0], err)
	}
	c.Connect(time.Unix(1_800_000_000, 0), registration{id: "w2", capacity: 10, platform: []*workerpb.Property{linux}})
	if n := len(c.takeEffects().dispatch); n != 5 {
		t.Fatalf("dispatched %d of the 5 restored queued actions", n)
	}
}

// Two tenants queueing on one instance name have a queue each in the
// core; the status page and metrics see one queue, counting both.
func TestQueuesOfTenantsSharingAnInstanceAreListedAsOne(t *testing.T) {
	s := newTestScheduler(t, DefaultConfig(), nil)
	defer s.Close()
	for i, tenant := range []string{"team-a", "team-b", "team-b"} {
		sub := benchSubmission(i)
		sub.owner = tenant
		if err := s.accept(t.Context(), sub.name, func(now time.Time) error { _, err := s.core.Execute(now, sub); return err }); err != nil {
			t.Fatal(err)
		}
	}
	qs := s.Queues()
	if len(qs) != 1 || qs[0].Queued != 3 || len(s.core.queues) != 2 {
		t.Fatalf("Queues() = %+v over %d core queues; want one queue with 3 queued over 2", qs, len(s.core.queues))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("metrics: %v", err)
	}
}

// restoreTestdata restores a core from the snapshot in file, which must be
// of version version.
func restoreTestdata(t *testing.T, file string, version byte) *core {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != version {
		t.Fatalf("%s is version %d, want %d", file, b[0], version)
	}
	st, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	c := newCore(DefaultConfig())
	if err := c.restore(st); err != nil {
		t.Fatal(err)
	}
	return c
}
