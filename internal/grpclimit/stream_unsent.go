package grpclimit

import (
	"context"
	"reflect"
	"sync/atomic"
	"unsafe"

	"google.golang.org/grpc"
)

// streamUnsent is how many bytes of the call's stream gRPC still holds
// unwritten when the call ends: what a stream reset drops. It reads the
// stream's write quota, which grpc-go (internal/transport) takes a
// message's bytes from when the handler sends it and gives back as its
// writer frames them: a stream starts with streamWriteQuota, so that less
// the quota left is what is handed and not yet written.
//
// That quota is not exported; it is read by reflection, atomically, as
// grpc-go itself reads it. ok is false where the layout is not the one
// this was written against (TestStreamUnsentReadsGRPCsWriteQuota fails
// then): the caller counts nothing as dropped, as before, rather than
// guess. Guessing was wrong both ways: not counting the drop held a
// cancelled download's bytes in the backlog for good, and counting the
// most the stream could hold let a client erase, with cancelled calls
// whose bytes had been written, the count of its other streams' unread
// responses (235 MB held past the 16 MiB bound on one connection).
func streamUnsent(ctx context.Context) (n int64, ok bool) {
	st := grpc.ServerTransportStreamFromContext(ctx)
	if st == nil {
		return 0, false
	}
	v := reflect.ValueOf(st)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return 0, false
	}
	stream := v.Elem().FieldByName("Stream")
	if !stream.IsValid() || stream.Kind() != reflect.Struct {
		return 0, false
	}
	wq := stream.FieldByName("wq")
	if !wq.IsValid() || wq.Kind() != reflect.Struct {
		return 0, false
	}
	q := wq.FieldByName("quota")
	if !q.IsValid() || q.Kind() != reflect.Int32 || !q.CanAddr() {
		return 0, false
	}
	left := atomic.LoadInt32((*int32)(unsafe.Pointer(q.UnsafeAddr())))
	return max(streamWriteQuota-int64(left), 0), true
}
