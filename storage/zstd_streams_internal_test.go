package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// rawFrame is a zstd frame of data in raw blocks whose header declares a
// window of 1<<windowLog bytes and no content size, as a client
// streaming without knowing the size sends, or an attacker who wants the
// server to hold a large window.
func rawFrame(windowLog int, data []byte) []byte {
	f := binary.LittleEndian.AppendUint32(nil, 0xFD2FB528)
	f = append(f, 0, byte(windowLog-10)<<3)
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), 128<<10, 1<<windowLog)
		last := 0
		if n == len(data) {
			last = 1
		}
		h := uint32(n)<<3 | uint32(last)
		f = append(f, byte(h), byte(h>>8), byte(h>>16))
		f, data = append(f, data[:n]...), data[n:]
	}
	return f
}

func TestUploadWindowIsWhatTheFrameDeclares(t *testing.T) {
	small := make([]byte, 100<<10)
	streamed := new(bytes.Buffer)
	enc, _ := zstd.NewWriter(streamed, zstd.WithEncoderLevel(zstd.SpeedFastest))
	for i := 0; i < len(small); i += 32 << 10 { // written in parts: the size is not known up front
		_, _ = enc.Write(small[i:min(i+32<<10, len(small))])
	}
	_ = enc.Close()
	whole, _ := zstd.NewWriter(nil)
	for _, c := range []struct {
		name  string
		head  []byte
		size  int64
		wantW uint64
	}{
		{"klauspost streaming declares 4 MiB for 100 KiB", streamed.Bytes(), int64(len(small)), 4 << 20},
		{"a single segment: its content size, or the blob's class", whole.EncodeAll(small, nil), int64(len(small)), 128 << 10},
		{"64 MiB declared for 1 KiB", rawFrame(26, []byte("x")), 1 << 10, 64 << 20},
		{"more than the most is held to the most (and refused)", rawFrame(28, []byte("x")), 1 << 10, maxUploadWindow},
		{"not zstd: the blob's class", []byte("not a zstd frame at all"), 3 << 20, 4 << 20},
		{"not zstd, large blob: at most 8 MiB", []byte("not a zstd frame at all"), 1 << 30, 8 << 20},
		{"cut short", rawFrame(26, nil)[:5], 10, zstd.MinWindowSize},
	} {
		t.Run(c.name, func(t *testing.T) {
			head := c.head[:min(len(c.head), zstd.HeaderMaxSize)]
			if got := uploadWindow(head, c.size); got != c.wantW {
				t.Fatalf("uploadWindow = %d, want %d", got, c.wantW)
			}
		})
	}
}

// bytestreamOverDisk serves the storage services over a fresh disk store
// on loopback and returns a ByteStream client of them.
func bytestreamOverDisk(t *testing.T) bytestream.ByteStreamClient {
	t.Helper()
	return bytestream.NewByteStreamClient(servedOverDisk(t))
}

// servedOverDisk serves the storage services over a fresh disk store on
// loopback and returns a connection to them.
func servedOverDisk(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cas, err := NewDiskBlobStore(DiskOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := NewDiskActionCache(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ServerOptions{CAS: cas, AC: ac})
	t.Cleanup(srv.Close)
	return grpctest.Dial(t, grpctest.Listen(t, srv.Register, srv.GRPCServerOptions()...))
}

func sendBlob(ctx context.Context, bs bytestream.ByteStreamClient, name string, data []byte) error {
	w, err := bs.Write(ctx)
	if err != nil {
		return err
	}
	if err := w.Send(&bytestream.WriteRequest{ResourceName: name, Data: data, FinishWrite: true}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = w.CloseAndRecv()
	return err
}

func download(ctx context.Context, bs bytestream.ByteStreamClient, name string) ([]byte, error) {
	r, err := bs.Read(ctx, &bytestream.ReadRequest{ResourceName: name})
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		m, err := r.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m.Data...)
	}
}

// TestCompressedStreamsWaitForCodecMemory: a compressed upload holds
// codecMemory for the window its frame declares, and a compressed read for
// its encoder, before either is made; while the budget is taken they wait
// (here until their deadline), others go on. Before, every such stream
// made its coder at once: 40 uploads of 1 KB declaring 64 MiB windows,
// held open, took `paddock up` to 1.3 GB, 500 compressed reads not read
// to 2.3 GB.
func TestCompressedStreamsWaitForCodecMemory(t *testing.T) {
	bs := bytestreamOverDisk(t)
	data := make([]byte, 300<<10)
	_, _ = rand.Read(data)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	wide := rawFrame(26, data) // declares 64 MiB for 300 KiB
	uploadName := func(u string) string { return "uploads/" + u + "/compressed-blobs/zstd/" + d.String() }
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}

	// All but 20 MiB taken: a 64 MiB window does not fit, 512 KiB does.
	release, err := codecMemory.holdBytes(context.Background(), CodecMemoryBytes-20<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendBlob(short(), bs, uploadName("wide"), wide); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("an upload declaring 64 MiB while 20 MiB are left: %v, want DEADLINE_EXCEEDED (waiting for codec memory)", err)
	}
	if err := sendBlob(context.Background(), bs, uploadName("narrow"), rawFrame(19, data)); err != nil {
		t.Fatalf("an upload declaring 512 KiB while 20 MiB are left: %v", err)
	}
	release()

	// All taken: a compressed read waits, an uncompressed one does not.
	release, err = codecMemory.holdBytes(context.Background(), CodecMemoryBytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := download(short(), bs, "compressed-blobs/zstd/"+d.String()); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a compressed read with no codec memory left: %v, want DEADLINE_EXCEEDED", err)
	}
	if got, err := download(context.Background(), bs, "blobs/"+d.String()); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("an uncompressed read with no codec memory left: %v", err)
	}
	release()

	// Once there is room, both go through.
	if err := sendBlob(context.Background(), bs, uploadName("wide-again"), wide); err != nil {
		t.Fatalf("an upload declaring 64 MiB with the budget free: %v", err)
	}
	z, err := download(context.Background(), bs, "compressed-blobs/zstd/"+d.String())
	if err != nil {
		t.Fatal(err)
	}
	var h zstd.Header
	if err := h.Decode(z); err != nil || h.WindowSize > 512<<10 {
		t.Fatalf("a 300 KiB read was encoded with a window of %d (%v), want at most 512 KiB", h.WindowSize, err)
	}
	dec, _ := zstd.NewReader(nil)
	if got, err := dec.DecodeAll(z, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the compressed read does not decode to the blob: %v", err)
	}
}

// TestLaterFramesMayNotDeclareMore: a decoder is held to the window it
// was budgeted for, so an upload whose first frame declares a small
// window cannot declare a larger one in a later frame; frames that
// declare what the first did, as an encoder writing several does, are
// taken.
func TestLaterFramesMayNotDeclareMore(t *testing.T) {
	bs := bytestreamOverDisk(t)
	data := make([]byte, 2<<10)
	_, _ = rand.Read(data)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	name := func(u string) string { return "uploads/" + u + "/compressed-blobs/zstd/" + d.String() }

	growing := append(rawFrame(10, data[:1<<10]), rawFrame(26, data[1<<10:])...)
	err := sendBlob(context.Background(), bs, name("growing"), growing)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "window") {
		t.Fatalf("a second frame declaring 64 MiB after one of 1 KiB, for a 2 KiB blob: %v, want INVALID_ARGUMENT naming the window", err)
	}
	same := append(rawFrame(22, data[:1<<10]), rawFrame(22, data[1<<10:])...)
	if err := sendBlob(context.Background(), bs, name("same"), same); err != nil {
		t.Fatalf("two frames declaring 4 MiB each: %v", err)
	}
}
