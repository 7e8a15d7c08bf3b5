package scheduler

import (
	"context"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/internal/grpclimit"
)

// A finished operation carries its whole ExecuteResponse, up to 4 MiB,
// and an execution's response is shared by every operation joined to it:
// each Execute or WaitExecution stream following one, each GetOperation
// and each ListOperations page renders its own copy. An outside probe
// had 100 streams join one execution of a 3.7 MB result and read
// nothing: 526 MB was held at completion; one ListOperations of them
// built a 369 MB message and took the scheduler to 1.2 GB. A finished
// operation is rendered and sent only once its connection's send backlog
// has room for it (grpclimit.WaitToSend, as the storage services wait
// for theirs), and a page of ListOperations stops short of what a client
// receives by default (opPage).

// opOverheadBytes is what an Operation adds to its response: its name and
// metadata (digests, stage, a worker's name, timestamps) take far less.
const opOverheadBytes = 2 << 10

// opSize is an upper bound on the bytes of v's Operation.
func opSize(v opView) int64 {
	if !v.done {
		return opOverheadBytes
	}
	return int64(proto.Size(v.response)) + opOverheadBytes
}

// waitToSend waits until ctx's connection has room to send views, and
// reserves it; a view not done is small and never waits.
func waitToSend(ctx context.Context, views ...opView) error {
	var n int64
	done := false
	for _, v := range views {
		n += opSize(v)
		done = done || v.done
	}
	if !done {
		return nil
	}
	return grpclimit.WaitToSend(ctx, n)
}

// sendOperation renders v and sends it once ctx's connection has room.
func sendOperation(ctx context.Context, send func(*longrunningpb.Operation) error, v opView) error {
	if err := waitToSend(ctx, v); err != nil {
		return err
	}
	return send(toOperation(v))
}
