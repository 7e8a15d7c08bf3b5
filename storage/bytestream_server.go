package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/internal/grpclimit"
)

// byteStreamServer implements google.bytestream.ByteStream for CAS blobs.
//
// A Write streams into BlobStore.Put through a pipe, so a blob of any size
// is never held in memory. Uncompressed uploads are resumable: when a stream
// breaks before finish_write, its upload (the pipe and the Put behind it)
// is kept, keyed by resource name, for UploadIdleTimeout; QueryWriteStatus
// reports how much was committed and a new Write from that offset goes on.
// Compressed uploads are not resumable (their offsets mix compressed and
// uncompressed sizes) and are dropped when their stream breaks.
type byteStreamServer struct {
	bytestream.UnimplementedByteStreamServer
	opts *ServerOptions

	mu          sync.Mutex
	uploads     map[string]*upload
	streamSlots // guarded by mu (stream_slots.go)
}

func newByteStreamServer(opts *ServerOptions) *byteStreamServer {
	return &byteStreamServer{opts: opts, uploads: map[string]*upload{}, streamSlots: streamSlots{openBy: map[string]int{}, waitingBy: map[string]int{}, waitingBytesBy: map[string]int64{}}}
}

var errUploadAborted = errors.New("upload aborted")

// decompressInto makes u's pipe take zstd-compressed bytes: a decoder
// turns them into the bytes Put verifies and stores. Call the returned
// func when the stream ends.
//
// The decoder is made on its goroutine, once the first frame's header
// has come and codecMemory has room for the window it declares
// (newUploadDecoder): it is not safe for concurrent use, and Put can
// finish (refuse the blob, or find it stored) while that goroutine is
// still inside WriteTo, so the returned func ends the goroutine and waits
// for it before closing the decoder and giving its memory back.
func (s *byteStreamServer) decompressInto(ctx context.Context, u *upload, size int64) func() {
	toPut := u.pw
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	var dec *zstd.Decoder
	release := func() {}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		d, held, err := newUploadDecoder(ctx, pr, size)
		w := &writeErrors{w: toPut}
		if err == nil {
			dec, release = d, held
			_, err = io.Copy(w, dec)
		}
		if err != nil && w.err == nil && !errors.Is(err, errUploadAborted) && ctx.Err() == nil {
			// The decoder refused the bytes themselves: the spec's answer
			// is INVALID_ARGUMENT, which clients do not retry.
			err = status.Errorf(codes.InvalidArgument, "the uploaded data is not valid zstd: %v", err)
		}
		toPut.CloseWithError(err)
		// If Put stopped early, unblock the stream's writes too.
		pr.CloseWithError(errors.Join(err, errUploadAborted))
	}()
	u.pw = pw
	return func() {
		cancel()
		pw.CloseWithError(errUploadAborted) // keeps an earlier Close's EOF
		toPut.CloseWithError(errUploadAborted)
		<-copied
		if dec != nil {
			dec.Close()
		}
		release()
	}
}

// writeErrors remembers the error of a failed Write, so that an io.Copy
// error can be told apart: the writer's own, or the reader's.
type writeErrors struct {
	w   io.Writer
	err error
}

func (w *writeErrors) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

func (s *byteStreamServer) Read(req *bytestream.ReadRequest, stream bytestream.ByteStream_ReadServer) (err error) {
	rn, err := digest.ParseReadResourceName(req.ResourceName)
	if err != nil {
		return err
	}
	d := rn.Digest
	// google.bytestream: a read_offset that is negative or past the end
	// is OUT_OF_RANGE; a negative read_limit is an error of its own.
	switch {
	case req.ReadOffset < 0:
		return status.Errorf(codes.OutOfRange, "read_offset %d is negative", req.ReadOffset)
	case req.ReadLimit < 0:
		return status.Errorf(codes.InvalidArgument, "read_limit %d is negative", req.ReadLimit)
	case req.ReadOffset > d.SizeBytes():
		return status.Errorf(codes.OutOfRange, "read_offset %d is past the end of %s", req.ReadOffset, d)
	case rn.Compressor != repb.Compressor_IDENTITY && req.ReadLimit != 0:
		return status.Errorf(codes.InvalidArgument, "read_limit must be 0 when reading compressed-blobs/, got %d", req.ReadLimit)
	}
	tenant := auth.TenantOf(stream.Context())
	if err := s.takeSlot(stream.Context(), tenant, 0); err != nil {
		return err
	}
	defer s.releaseSlot(tenant)
	sent := false // a byte of the blob has gone out
	defer func() {
		if !sent {
			err = unsentAsNotFound(err)
		}
	}()
	r, err := s.opts.CAS.Get(WithInstance(stream.Context(), rn.InstanceName), d, req.ReadOffset)
	if err != nil {
		return err
	}
	defer r.Close()
	remaining := d.SizeBytes() - req.ReadOffset
	if req.ReadLimit > 0 {
		remaining = min(remaining, req.ReadLimit)
	}
	// Each chunk waits for room in the connection's send backlog before
	// its buffer is taken and filled: a client that does not read holds
	// few of them, and a reader waiting for it holds no buffer
	// (grpclimit.WaitToSend, chunkSender).
	ctx := stream.Context()
	send := newChunkSender(remaining,
		func(n int64) error { return grpclimit.WaitToSend(ctx, n) },
		func(b []byte) error { sent = true; return stream.Send(&bytestream.ReadResponse{Data: b}) })
	defer send.release()
	if rn.Compressor == repb.Compressor_ZSTD {
		enc, release, err := newReadEncoder(ctx, send, remaining)
		if err != nil {
			return err
		}
		defer release()
		if _, err := io.Copy(enc, r); err != nil {
			_ = enc.Close() // the copy's error is the one to report
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
		return send.flush()
	}
	var src io.Reader = r
	if req.ReadLimit > 0 {
		src = &rangeReader{r: r, left: req.ReadLimit}
	}
	if _, err := io.Copy(send, src); err != nil {
		return err
	}
	return send.flush()
}

func (s *byteStreamServer) Write(stream bytestream.ByteStream_WriteServer) error {
	req, err := stream.Recv()
	if err == io.EOF {
		return status.Error(codes.InvalidArgument, "the Write stream ended before its first request")
	}
	if err != nil {
		return err
	}
	rn, err := s.parseWriteName(req.ResourceName)
	if err != nil {
		return err
	}
	d := rn.Digest
	compressed := rn.Compressor != repb.Compressor_IDENTITY
	complete := func() error {
		size := d.SizeBytes()
		if compressed {
			size = -1 // the spec's answer for a compressed upload cut short
		}
		return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: size})
	}
	// A blob that is already stored completes at once, as the spec allows.
	if done, err := s.stored(stream.Context(), rn); err != nil || done {
		return cmp.Or(err, complete())
	}
	if compressed && req.WriteOffset != 0 {
		return status.Errorf(codes.InvalidArgument, "write_offset %d: compressed uploads cannot be resumed; start at 0", req.WriteOffset)
	}
	u, err := s.acquireOrWait(stream.Context(), rn, req)
	if errors.Is(err, errStoredMeanwhile) {
		return complete()
	}
	if err != nil {
		return err
	}
	defer u.busy.Unlock()
	if compressed {
		defer s.decompressInto(stream.Context(), u, d.SizeBytes())()
	}
	recv := newWriteReceiver(stream, min(s.opts.UploadIdleTimeout, maxSilentWrite))
	cur := writeCursor{next: req.WriteOffset}
	for first := true; ; first = false {
		if !first {
			if req, err = s.nextWrite(stream, recv, u, compressed); req == nil {
				return err
			}
		}
		data, ok := cur.take(req, u.committed.Load())
		if !ok {
			return s.refuseOffset(u, req.WriteOffset, cur.next)
		}
		if !compressed && u.committed.Load()+int64(len(data)) > d.SizeBytes() {
			err := countMismatch(s.opts.CAS, status.Errorf(codes.InvalidArgument, "data goes past size_bytes %d of %s", d.SizeBytes(), d))
			s.abort(u, err)
			return err
		}
		if err := s.handToPut(stream.Context(), u, data); err != nil {
			<-u.done
			s.remove(u)
			switch {
			case u.err == nil: // stored meanwhile by another client
				return complete()
			case isPutStalled(err):
				return err
			}
			return u.err
		}
		u.committed.Add(int64(len(data)))
		if req.FinishWrite {
			return s.finishWrite(stream, u, d, compressed, complete)
		}
	}
}

// acquire returns the upload for req's resource name, busy, starting one
// if none is parked (a parked one is resumed, or restarted if the client
// starts again from 0). A new upload waits for a slot (takeSlot), and
// meanwhile another stream may register the name: so it is looked up
// again once the slot is taken. Registered blindly, the two uploads both
// ran, and the one overwritten in s.uploads, once parked, held its slot
// where no stream could take it back, until its idle timer fired.
func (s *byteStreamServer) acquire(ctx context.Context, tenant string, rn digest.ResourceName, req *bytestream.WriteRequest) (*upload, error) {
	if u, err := s.claim(req.ResourceName, req.WriteOffset); u != nil || err != nil {
		return u, err
	}
	if err := s.takeSlot(ctx, tenant, int64(proto.Size(req))); err != nil {
		return nil, err
	}
	for {
		if u := s.startUpload(ctx, tenant, rn, req.ResourceName); u != nil {
			return u, nil
		}
		u, err := s.claim(req.ResourceName, req.WriteOffset)
		if u != nil || err != nil {
			s.releaseSlot(tenant) // the other upload holds a slot of its own
			return u, err
		}
		// The other upload ended or was restarted: go on with the slot.
	}
}

// claim returns the upload registered as name, busy, for a stream whose
// first write_offset is offset to resume; errUploadBusy while another
// stream holds it; or nil: none, or the client starts again from
// 0 and claim aborted it.
func (s *byteStreamServer) claim(name string, offset int64) (*upload, error) {
	s.mu.Lock()
	u, ok := s.uploads[name]
	if !ok {
		s.mu.Unlock()
		return nil, nil
	}
	if !u.busy.TryLock() {
		s.mu.Unlock()
		return nil, errUploadBusy
	}
	if u.idle != nil {
		u.idle.Stop()
	}
	u.parkedAt = time.Time{}
	u.claimedAt = u.committed.Load()
	u.released = make(chan struct{})
	s.mu.Unlock()
	if offset != 0 || u.committed.Load() == 0 {
		return u, nil
	}
	s.abort(u, errUploadAborted)
	u.busy.Unlock()
	return nil, nil
}

// startUpload starts an upload of name, busy, in the slot taken for
// tenant, and registers it; nil if another upload of name is registered.
// Compressed uploads are never parked, so they need no entry.
func (s *byteStreamServer) startUpload(streamCtx context.Context, tenant string, rn digest.ResourceName, name string) *upload {
	s.mu.Lock()
	if _, ok := s.uploads[name]; ok {
		s.mu.Unlock()
		return nil
	}
	pr, pw := io.Pipe()
	// The Put outlives the stream (a parked upload), so not its
	// cancellation; but it keeps its values: the caller (whose tenant a
	// remote store names to the storage behind it) and the incoming
	// metadata (the forwarding hop count). From a bare context, an upload
	// through a scheduler reached storage as the scheduler's, outside the
	// tenant's shares.
	ctx, cancel := context.WithCancel(WithInstance(context.WithoutCancel(streamCtx), rn.InstanceName))
	u := &upload{name: name, tenant: tenant, d: rn.Digest, pw: pw, cancel: cancel, done: make(chan struct{}), released: make(chan struct{})}
	u.busy.Lock()
	if rn.Compressor == repb.Compressor_IDENTITY {
		s.uploads[name] = u
	}
	s.mu.Unlock()
	// Short of room in the CAS, the Put has other parked uploads give way
	// (giveWay); not u, which its Put would then wait for.
	ctx = withGiveWay(ctx, func(ctx context.Context) bool { return s.giveWay(ctx, u) })
	go func() {
		if err := s.opts.CAS.Put(ctx, rn.Digest, pr); err != nil {
			u.err = grpcerr.Clean(fmt.Errorf("ByteStream Write: %w", err)) // the call named, the code kept
		}
		pr.CloseWithError(errUploadAborted)
		s.releaseSlot(tenant) // before done: an abort that returns has freed it
		close(u.done)
	}()
	return u
}

// abort ends u's Put with err (so nothing is stored) and forgets it.
func (s *byteStreamServer) abort(u *upload, err error) {
	u.pw.CloseWithError(err)
	u.cancel()
	<-u.done
	s.remove(u)
}

func (s *byteStreamServer) remove(u *upload) {
	s.mu.Lock()
	if s.uploads[u.name] == u {
		delete(s.uploads, u.name)
		releaseLocked(u)
	}
	s.mu.Unlock()
}

func (s *byteStreamServer) QueryWriteStatus(ctx context.Context, req *bytestream.QueryWriteStatusRequest) (*bytestream.QueryWriteStatusResponse, error) {
	rn, err := digest.ParseWriteResourceName(req.ResourceName)
	if err != nil {
		return nil, err
	}
	if missing, err := s.opts.CAS.FindMissing(WithInstance(ctx, rn.InstanceName), []digest.Digest{rn.Digest}); err != nil {
		return nil, err
	} else if len(missing) == 0 {
		return &bytestream.QueryWriteStatusResponse{CommittedSize: rn.Digest.SizeBytes(), Complete: true}, nil
	}
	s.mu.Lock()
	u, ok := s.uploads[req.ResourceName]
	s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "resource_name %q: no upload in progress", req.ResourceName)
	}
	return &bytestream.QueryWriteStatusResponse{CommittedSize: u.committed.Load()}, nil
}

// close aborts every parked upload.
func (s *byteStreamServer) close() {
	s.mu.Lock()
	var all []*upload
	for _, u := range s.uploads {
		all = append(all, u)
	}
	s.mu.Unlock()
	for _, u := range all {
		if u.busy.TryLock() {
			s.abort(u, errUploadAborted)
			u.busy.Unlock()
		}
	}
}

// parseWriteName parses an upload's resource name, and refuses a blob
// larger than MaxCASBlobBytes, as the spec asks, before any byte of it.
func (s *byteStreamServer) parseWriteName(name string) (digest.ResourceName, error) {
	rn, err := digest.ParseWriteResourceName(name)
	if err == nil && s.opts.MaxCASBlobBytes > 0 && rn.Digest.SizeBytes() > s.opts.MaxCASBlobBytes {
		return rn, status.Errorf(codes.InvalidArgument, "resource_name: blob %s is larger than max_cas_blob_size_bytes, %d: this CAS holds no larger blob", rn.Digest, s.opts.MaxCASBlobBytes)
	}
	return rn, err
}
