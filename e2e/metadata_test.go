package e2e

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// TestExecutedActionMetadata: a result executed through `paddock up`
// names its worker, carries every timestamp of REv2's
// ExecutedActionMetadata in the order the phases happen, and the sandbox's
// resource usage as auxiliary metadata.
func TestExecutedActionMetadata(t *testing.T) {
	f, c := startUpClient(t)
	r, _, _ := c.run(t.Context(), action{
		cmd:        shell("echo hi > out.txt", "out.txt"),
		root:       tree{files: map[string]inputFile{"in.txt": {data: []byte("in\n")}}},
		doNotCache: true,
	})
	md := r.ExecutionMetadata
	if md.GetWorker() != "local" {
		t.Errorf("worker %q, want paddock up's worker \"local\"", md.GetWorker())
	}
	phases := []struct {
		name string
		ts   *timestamppb.Timestamp
	}{
		{"queued", md.GetQueuedTimestamp()},
		{"worker_start", md.GetWorkerStartTimestamp()},
		{"input_fetch_start", md.GetInputFetchStartTimestamp()},
		{"input_fetch_completed", md.GetInputFetchCompletedTimestamp()},
		{"execution_start", md.GetExecutionStartTimestamp()},
		{"execution_completed", md.GetExecutionCompletedTimestamp()},
		{"output_upload_start", md.GetOutputUploadStartTimestamp()},
		{"output_upload_completed", md.GetOutputUploadCompletedTimestamp()},
		{"worker_completed", md.GetWorkerCompletedTimestamp()},
	}
	for i, p := range phases {
		if p.ts == nil {
			t.Errorf("%s_timestamp is not set", p.name)
			continue
		}
		if i > 0 && phases[i-1].ts != nil && p.ts.AsTime().Before(phases[i-1].ts.AsTime()) {
			t.Errorf("%s_timestamp %v is before %s_timestamp %v", p.name, p.ts.AsTime(), phases[i-1].name, phases[i-1].ts.AsTime())
		}
	}
	found := false
	for _, a := range md.GetAuxiliaryMetadata() {
		u := &runnerpb.ResourceUsage{}
		if a.UnmarshalTo(u) == nil {
			found = true
			if u.GetWallTime().AsDuration() <= 0 || u.GetMaxRssBytes() <= 0 {
				t.Errorf("resource usage %v: want the sandbox's wall time and max RSS", u)
			}
		}
	}
	if !found {
		t.Errorf("auxiliary metadata %v has no paddock.runner.v1.ResourceUsage", md.GetAuxiliaryMetadata())
	}
	f.shutdown()
}
