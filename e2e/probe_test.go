package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestRandomRequestsDoNotCrash sends every RPC that `paddock up` serves
// requests filled at random, as an attack client or a careless
// conformance probe would: empty messages, missing sub-messages, paths
// with "..", malformed resource names, zstd frames that decode to other
// bytes, huge and negative sizes. Each call must end with a status (no
// hang), none may be UNKNOWN or INTERNAL (a handler that forgot to map an
// error, or failed on what it should have refused), and
// afterwards the farm must still be up, have logged no panic, and run an
// action to the end. A panic in any handler, or in a goroutine one
// started, ends the whole farm; one did (a compressed upload refused
// while its decoder still ran).
func TestRandomRequestsDoNotCrash(t *testing.T) {
	f, c := startUpClient(t)
	g := newRequestGen(t)
	actions := g.storeRandomActions(t, c)
	g.executeAll(t, c, actions)
	g.probe(t, grpctest.Dial(t, f.addr), []*process{f.process})
	checkFarmWorks(t, c, "after the probe")
}

// TestRandomRequestsToSplitRoles is TestRandomRequestsDoNotCrash against
// the roles run apart, as on several machines: storage on its own port,
// and the scheduler's, which also serves the worker protocol (Connect)
// and its admin service, so that anything that can reach it can speak as
// a worker. The probe's "workers" come and go with random messages while
// a real worker is connected; afterwards that worker still runs actions.
func TestRandomRequestsToSplitRoles(t *testing.T) {
	needPaddock(t)
	r := newRoles(t)
	r.startWorker("probe-worker")
	c := newSplitClient(t, r.storageAddr, r.schedAddr)
	g := newRequestGen(t)
	actions := g.storeRandomActions(t, c)
	g.executeAll(t, c, actions)
	roles := []*process{r.storage, r.sched, r.runner, r.worker}
	g.probe(t, grpctest.Dial(t, r.storageAddr), roles)
	g.probe(t, grpctest.Dial(t, r.schedAddr), roles)
	checkFarmWorks(t, c, "after the probe")
}

// newRequestGen seeds a generator with a fixed seed, so that a failure
// repeats; PADDOCK_PROBE_SEED tries others.
func newRequestGen(t *testing.T) *requestGen {
	seed := uint64(20261130)
	if v, err := strconv.ParseUint(os.Getenv("PADDOCK_PROBE_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d", seed)
	return &requestGen{r: rand.New(rand.NewPCG(seed, 1))}
}

// storeRandomActions stores a few small blobs (so that requests can name
// blobs the farm has) and Actions, Commands and Directories filled at
// random, each pointing at earlier ones: Execute and GetTree then reach
// their parsing and validation, and the worker its input roots. It
// returns the Actions' digests.
func (g *requestGen) storeRandomActions(t *testing.T, c *client) []*repb.Digest {
	for i := range 4 {
		g.known = append(g.known, c.upload(t.Context(), []byte(fmt.Sprintf("probe blob %d", i)))...)
	}
	g.known = append(g.known, c.prepare(t.Context(), action{cmd: shell("true")}))
	var commands, dirs, actions []*repb.Digest
	pick := func(ds []*repb.Digest) *repb.Digest {
		if len(ds) == 0 || g.r.IntN(5) == 0 {
			return nil
		}
		return ds[g.r.IntN(len(ds))]
	}
	for i := range 60 {
		var m proto.Message
		switch i % 3 {
		case 0:
			cmd := &repb.Command{}
			g.fill(cmd.ProtoReflect(), 0)
			if i%2 == 0 {
				// Half run a real program, so that their random output
				// paths, working directory and platform reach a worker.
				cmd.Arguments = []string{"/bin/sh", "-c", "echo probe; mkdir -p out; echo x > out/f"}
				cmd.EnvironmentVariables, cmd.OutputNodeProperties = nil, nil
			}
			cmd.Platform = withoutImage(cmd.Platform)
			m = cmd
		case 1:
			dir := &repb.Directory{}
			g.fill(dir.ProtoReflect(), 0)
			for _, sub := range dir.Directories {
				if d := pick(dirs); d != nil {
					sub.Digest = d
				}
			}
			m = dir
		case 2:
			// Mostly well formed: a stored Command and Directory, and a
			// timeout that proto accepts.
			a := &repb.Action{}
			g.fill(a.ProtoReflect(), 0)
			if d := pick(commands); d != nil {
				a.CommandDigest = d
			}
			if d := pick(dirs); d != nil {
				a.InputRootDigest = d
			}
			if g.r.IntN(5) != 0 {
				a.Timeout = nil
			}
			a.Platform = withoutImage(a.Platform)
			m = a
		}
		d := c.upload(t.Context(), marshal(t, m))[0]
		g.known = append(g.known, d)
		kind := []*[]*repb.Digest{&commands, &dirs, &actions}[i%3]
		*kind = append(*kind, d)
	}
	return actions
}

// withoutImage drops container-image from p: a random image name would
// make the runner pull it from a registry off this machine, and the tests
// stay on loopback.
func withoutImage(p *repb.Platform) *repb.Platform {
	if p == nil {
		return nil
	}
	var keep []*repb.Platform_Property
	for _, prop := range p.Properties {
		if prop.Name != "container-image" {
			keep = append(keep, prop)
		}
	}
	p.Properties = keep
	return p
}

// executeAll executes each of actions; each must end with a status that
// is neither UNKNOWN nor INTERNAL, in time.
func (g *requestGen) executeAll(t *testing.T, c *client, actions []*repb.Digest) {
	for _, d := range actions {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		resp, err := c.execute(ctx, d, g.r.IntN(2) == 0)
		cancel()
		if err == nil && resp.Status.GetCode() != 0 {
			err = status.ErrorProto(resp.Status)
		}
		if code := status.Code(err); code == codes.Unknown || code == codes.Internal || code == codes.DeadlineExceeded {
			t.Errorf("Execute of a random action: %v", err)
		}
	}
}

// probe calls every method of every service Paddock serves on conn, 60
// times with random requests, and fails the test on an UNKNOWN or
// INTERNAL status, or if one of procs exits or logs a panic.
func (g *requestGen) probe(t *testing.T, conn *grpc.ClientConn, procs []*process) {
	files := []protoreflect.FileDescriptor{
		repb.File_build_bazel_remote_execution_v2_remote_execution_proto,
		bytestream.File_google_bytestream_bytestream_proto,
		longrunningpb.File_google_longrunning_operations_proto,
		rapb.File_build_bazel_remote_asset_v1_remote_asset_proto,
		workerpb.File_workerpb_worker_proto,
	}
	// A drain would legitimately stop the farm's only worker.
	skip := map[string]bool{"DrainWorker": true}
	const perMethod = 60
	calls := 0
	for _, fd := range files {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				if skip[string(md.Name())] {
					continue
				}
				path := fmt.Sprintf("/%s/%s", sd.FullName(), md.Name())
				codeCount := map[codes.Code]int{}
				for n := range perMethod {
					err := g.call(t.Context(), conn, path, md, n == 0)
					calls++
					codeCount[status.Code(err)]++
					if code := status.Code(err); code == codes.Unknown || code == codes.Internal {
						t.Errorf("%s: %v", path, err)
					}
					for _, p := range procs {
						if p.hasExited() {
							t.Fatalf("%s exited after %d calls, the last to %s:\n%s", p.name, calls, path, p.log())
						}
					}
				}
				t.Logf("%s: %v", path, codeCount)
			}
		}
	}
	for _, p := range procs {
		if strings.Contains(p.log(), "panic") {
			t.Fatalf("%s logged a panic:\n%s", p.name, p.log())
		}
	}
	t.Logf("%d calls", calls)
}

// requestGen fills messages at random, biased towards the values that
// break servers: boundaries, paths that climb, resource names nearly
// right, and the digests of blobs the farm holds.
type requestGen struct {
	r     *rand.Rand
	known []*repb.Digest
}

// call sends one request (for a client stream, one to three) to path and
// reads the answer to its end; empty sends the zero message.
func (g *requestGen) call(ctx context.Context, conn *grpc.ClientConn, path string, md protoreflect.MethodDescriptor, empty bool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg := func() *dynamicpb.Message {
		m := dynamicpb.NewMessage(md.Input())
		if !empty {
			g.fill(m, 0)
		}
		return m
	}
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return conn.Invoke(ctx, path, msg(), dynamicpb.NewMessage(md.Output()))
	}
	desc := &grpc.StreamDesc{ServerStreams: md.IsStreamingServer(), ClientStreams: md.IsStreamingClient()}
	s, err := conn.NewStream(ctx, desc, path)
	if err != nil {
		return err
	}
	sends := 1
	if md.IsStreamingClient() {
		sends += g.r.IntN(3)
	}
	if md.Input().FullName() == "paddock.worker.v1.WorkerMessage" && !empty && g.r.IntN(2) == 0 {
		// Half the sessions register first, as a worker must, so that
		// the random messages after it reach a live session.
		reg := &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: &workerpb.Register{
			WorkerId: fmt.Sprintf("probe-%d", g.r.IntN(3)), Concurrency: 1}}}
		if err := s.SendMsg(reg); err != nil {
			sends = 0 // the server ended the stream; RecvMsg says why
		}
	}
	for range sends {
		if err := s.SendMsg(msg()); err != nil {
			break // the server ended the stream; RecvMsg says why
		}
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		err := s.RecvMsg(dynamicpb.NewMessage(md.Output()))
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if status.Code(err) == codes.DeadlineExceeded && md.IsStreamingServer() {
				return nil // a watch (Execute, WaitExecution, Connect) that stays open
			}
			return err
		}
	}
}

func (g *requestGen) fill(m protoreflect.Message, depth int) {
	// One member of each oneof, chosen at random.
	chosen := map[protoreflect.FullName]protoreflect.Name{}
	oneofs := m.Descriptor().Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		od := oneofs.Get(i)
		chosen[od.FullName()] = od.Fields().Get(g.r.IntN(od.Fields().Len())).Name()
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && chosen[od.FullName()] != fd.Name() {
			continue
		}
		if g.r.IntN(3) == 0 {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range g.r.IntN(3) {
				k := g.scalar(fd.MapKey(), depth)
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					v := mp.NewValue()
					g.fill(v.Message(), depth+1)
					mp.Set(k.MapKey(), v)
				} else {
					mp.Set(k.MapKey(), g.scalar(fd.MapValue(), depth))
				}
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range g.r.IntN(4) {
				if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
					if depth >= 4 {
						break
					}
					v := l.NewElement()
					g.fill(v.Message(), depth+1)
					l.Append(v)
				} else {
					l.Append(g.scalar(fd, depth))
				}
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if depth >= 4 {
				continue
			}
			if d, ok := g.digest(m, fd); ok {
				m.Set(fd, d)
				continue
			}
			g.fill(m.Mutable(fd).Message(), depth+1)
		case (fd.Name() == "instance_name" || fd.Name() == "digest_function") && g.r.IntN(5) != 0:
			// Most requests name the default instance and digest function,
			// so that they get past those checks to the rest.
		default:
			m.Set(fd, g.scalar(fd, depth))
		}
	}
}

// digest returns, for a Digest field of m, a known digest most of the time.
func (g *requestGen) digest(m protoreflect.Message, fd protoreflect.FieldDescriptor) (protoreflect.Value, bool) {
	if fd.Message().FullName() != "build.bazel.remote.execution.v2.Digest" || len(g.known) == 0 || g.r.IntN(5) == 0 {
		return protoreflect.Value{}, false
	}
	d := g.known[g.r.IntN(len(g.known))]
	v := m.NewField(fd) // a *repb.Digest or a dynamic message, as m is
	v.Message().Set(fd.Message().Fields().ByName("hash"), protoreflect.ValueOfString(d.Hash))
	v.Message().Set(fd.Message().Fields().ByName("size_bytes"), protoreflect.ValueOfInt64(d.SizeBytes))
	return v, true
}

func (g *requestGen) scalar(fd protoreflect.FieldDescriptor, depth int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(g.r.IntN(2) == 0)
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if g.r.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(g.r.Int32N(1000) - 500))
		}
		return protoreflect.ValueOfEnum(vals.Get(g.r.IntN(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(g.integer()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(g.integer())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(g.integer()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(g.integer()))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(g.integer()))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64([]float64{math.NaN(), math.Inf(1), -1, 0, 1e300}[g.r.IntN(5)])
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(g.text())
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(g.bytes())
	}
	panic(fmt.Sprintf("field %s of kind %v", fd.FullName(), fd.Kind()))
}

func (g *requestGen) integer() int64 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return math.MaxInt64
	case 3:
		return math.MinInt64
	case 4:
		if len(g.known) > 0 {
			return g.known[g.r.IntN(len(g.known))].SizeBytes
		}
	}
	return g.r.Int64N(1 << 20)
}

func (g *requestGen) text() string {
	hash := strings.Repeat("ab", 32)
	size := "5"
	if len(g.known) > 0 {
		d := g.known[g.r.IntN(len(g.known))]
		hash, size = d.Hash, fmt.Sprint(d.SizeBytes)
	}
	choices := []string{
		"", "a", "..", "/", "a/b", "../x", "/abs", "pkg/", "a//b", ".", "\x00", "é",
		strings.Repeat("x", 5000),
		"blobs/" + hash + "/" + size,
		"inst/blobs/" + hash + "/" + size,
		"blobs/" + hash + "/-1",
		"blobs/" + hash + "/99999999999999999999",
		"../blobs/" + hash + "/" + size,
		"uploads/u/blobs/" + hash + "/" + size,
		"uploads/u/compressed-blobs/zstd/" + hash + "/" + size,
		"compressed-blobs/zstd/" + hash + "/" + size,
		"compressed-blobs/identity/" + hash + "/" + size,
		"operations/" + hash,
		"operations/../x",
		hash, strings.ToUpper(hash),
		"container-image", "OSFamily", "docker://example.invalid/x",
		"https://example.invalid/a", "file:///etc/passwd",
	}
	return choices[g.r.IntN(len(choices))]
}

func (g *requestGen) bytes() []byte {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		b := make([]byte, g.r.IntN(64))
		for i := range b {
			b[i] = byte(g.r.Uint32())
		}
		return b
	case 2:
		// A zstd frame whose content is some other blob's.
		enc, _ := zstd.NewWriter(nil)
		defer func() { _ = enc.Close() }() // only EncodeAll used: nothing to flush
		return enc.EncodeAll([]byte(strings.Repeat("probe ", g.r.IntN(2000))), nil)
	}
	return []byte("probe blob 0")
}
