package scheduler

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/storage"
)

// TestExecuteReadsWithinTheMemoryBudget: Execute reads the Action and
// Command whole, within the process's budget for such reads
// (storage.RequestMemoryBytes). While the budget is taken an Execute waits
// (here until its deadline) and queues nothing; once it is given back the
// same Execute is accepted.
func TestExecuteReadsWithinTheMemoryBudget(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	req := executeRequest(f.action(t, "waits for memory", nil))
	release, err := storage.HoldMemory(context.Background(), storage.RequestMemoryBytes)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	stream, err := f.exec.Execute(short, req)
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.DeadlineExceeded {
		release()
		t.Fatalf("Execute while the budget is taken: %v, want DEADLINE_EXCEEDED", err)
	}
	if ops, n := f.s.Operations(OperationFilter{}); n != 0 {
		t.Errorf("an Execute that waited for memory created operations: %v", ops)
	}
	release()
	op, err := must(f.exec.Execute(ctxTimeout(t), req)).Recv()
	if err != nil || metadataOf(t, op).Stage != repb.ExecutionStage_QUEUED {
		t.Fatalf("Execute once the budget is free: %v, %v", op, err)
	}
}
