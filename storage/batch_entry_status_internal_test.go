package storage

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A batch entry's status, built from an error that wraps a remote's
// status (a front's read from its backend), keeps the code and both
// servers' words without Go's "rpc error: code = ... desc =" text: that
// text took most of the entry's 120 bytes, and the reason was cut off.
func TestBatchEntryStatusReadsClean(t *testing.T) {
	inner := status.Error(codes.DataLoss, "is corrupt in storage and has been removed; upload it again")
	got := statusProto(fmt.Errorf("remote BatchReadBlobs: %w", fmt.Errorf("read blob 0a7c/100000: %w", inner)))
	if codes.Code(got.Code) != codes.DataLoss || strings.Contains(got.Message, "rpc error") || !strings.Contains(got.Message, "has been removed") {
		t.Fatalf("entry status %v %q; want DATA_LOSS with the reason, without Go's error text", codes.Code(got.Code), got.Message)
	}
}
