package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/proctest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// echoRunner is a Runner service that runs nothing: it writes what
// /bin/echo would to the stdout file and an empty stderr file, as the
// sandbox creates both, and answers at once.
type echoRunner struct {
	runnerpb.UnimplementedRunnerServer
}

func (echoRunner) CheckReadiness(context.Context, *runnerpb.CheckReadinessRequest) (*runnerpb.CheckReadinessResponse, error) {
	return &runnerpb.CheckReadinessResponse{Version: "echo", TakesActionDir: true}, nil
}

func (echoRunner) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	start := time.Now()
	out := ""
	if len(req.Arguments) > 1 {
		out = req.Arguments[1] + "\n"
	}
	if err := os.WriteFile(req.StdoutPath, []byte(out), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(req.StderrPath, nil, 0o644); err != nil {
		return nil, err
	}
	return &runnerpb.RunResponse{ExecutionStart: timestamppb.New(start), ExecutionCompleted: timestamppb.Now()}, nil
}

// BenchmarkActionPath is what a trivial action costs the farm outside the
// sandbox: a client's Execute through the scheduler, the worker protocol
// stream, the worker (Action, Command, input root, build directory, a Run
// over a UNIX socket, stdout and stderr to the CAS, the ActionResult to
// the action cache) and the disk storage of `paddock up`, all in this
// process on loopback gRPC, with echoRunner in place of the runner. It runs
// b.N unique /bin/echo actions, 8 at a time, on a worker of concurrency 2,
// and reports the CPU time of this process per action (cpu-ms/op):
//
//	go test ./worker/ -run '^$' -bench ActionPath -count 5
func BenchmarkActionPath(b *testing.B) {
	dir := b.TempDir()
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "storage")})
	if err != nil {
		b.Fatal(err)
	}
	ac, err := storage.NewDiskActionCache(filepath.Join(dir, "storage"), nil)
	if err != nil {
		b.Fatal(err)
	}
	sched, err := scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: cas, ActionCache: ac, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sched.Close) // this and srv.Close after the gRPC servers have stopped
	srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: ac, Execution: &repb.ExecutionCapabilities{
		DigestFunction: repb.DigestFunction_SHA256, DigestFunctions: digest.Supported, ExecEnabled: true,
	}})
	b.Cleanup(srv.Close)
	addr := grpctest.Listen(b, func(g *grpc.Server) { srv.Register(g); sched.Register(g) }, srv.GRPCServerOptions()...)

	sock := filepath.Join(dir, "runner.sock")
	grpctest.ListenUnix(b, sock, func(g *grpc.Server) { runnerpb.RegisterRunnerServer(g, echoRunner{}) })
	runnerConn := grpctest.Dial(b, "unix://"+sock)

	files, err := worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "worker", "files"), CAS: cas, Local: cas})
	if err != nil {
		b.Fatal(err)
	}
	w, err := worker.New(worker.Options{
		ID: "bench", Concurrency: 2, BuildDir: filepath.Join(dir, "worker", "builds"), SpareDir: filepath.Join(dir, "worker", "spare"),
		CAS: cas, AC: ac, Files: files, Runner: worker.RunnerClient(runnerConn, 0),
	})
	if err != nil {
		b.Fatal(err)
	}
	workerConn := grpctest.Dial(b, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer farmtest.RunWorker(b, ctx, w, workerConn)()

	exec := repb.NewExecutionClient(grpctest.Dial(b, addr))

	// The actions and their blobs, stored before the clock starts.
	put := func(m proto.Message) digest.Digest {
		data, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		d := digest.FromBytes(sha256, data)
		if err := cas.Put(ctx, d, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		return d
	}
	root := put(&repb.Directory{})
	run := time.Now().UnixNano()
	type action struct {
		d      digest.Digest
		stdout digest.Digest
	}
	newActions := func(n int, tag string) []action {
		as := make([]action, n)
		for i := range as {
			salt := fmt.Sprintf("action-path-%d-%s-%d", run, tag, i)
			cmd := put(&repb.Command{
				Arguments:            []string{"/bin/echo", salt},
				EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}},
			})
			as[i] = action{put(&repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: root.Proto()}),
				digest.FromBytes(sha256, []byte(salt+"\n"))}
		}
		return as
	}
	execute := func(a action) error {
		stream, err := exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: a.d.Proto(), DigestFunction: sha256})
		if err != nil {
			return err
		}
		var last *longrunningpb.Operation
		for {
			op, err := stream.Recv()
			if err != nil {
				break
			}
			last = op
		}
		resp := &repb.ExecuteResponse{}
		if last == nil || !last.Done || last.GetResponse().UnmarshalTo(resp) != nil {
			return fmt.Errorf("action %s: no response (last operation %v)", a.d, last)
		}
		if resp.Status.GetCode() != 0 || resp.Result.GetExitCode() != 0 || resp.Result.StdoutDigest.GetHash() != a.stdout.Hash() {
			return fmt.Errorf("action %s: %v", a.d, resp)
		}
		return nil
	}
	runAll := func(as []action) {
		work := make(chan action)
		var wg sync.WaitGroup
		var once sync.Once
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for a := range work {
					if err := execute(a); err != nil {
						once.Do(func() { b.Error(err) })
					}
				}
			}()
		}
		for _, a := range as {
			work <- a
		}
		close(work)
		wg.Wait()
	}
	runAll(newActions(20, "warm-up"))
	as := newActions(b.N, "timed")

	before := proctest.SelfCPU()
	b.ResetTimer()
	runAll(as)
	b.StopTimer()
	b.ReportMetric(float64((proctest.SelfCPU()-before).Microseconds())/1000/float64(b.N), "cpu-ms/op")
}
