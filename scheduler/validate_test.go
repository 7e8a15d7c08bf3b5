package scheduler

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
)

// deepPath returns an output path of n names, "a/a/…/x".
func deepPath(n int) string { return strings.Repeat("a/", n-1) + "x" }

// manyDeepPaths returns count sorted output paths of the given levels,
// each with parents of its own (levels-1 directories each).
func manyDeepPaths(count, levels int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = fmt.Sprintf("p%06d/%s", i, deepPath(levels-1))
	}
	return out
}

// Bad input: every check names the offending field in its message.

func TestExecuteValidation(t *testing.T) {
	cfg := testConfig()
	cfg.MaxActionTimeout = time.Hour
	cfg.MaxQueuedPerInstance = 1
	f := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	missingCmd := digest.FromBytes(repb.DigestFunction_SHA256, []byte("no such command"))
	missingRoot := digest.FromBytes(repb.DigestFunction_SHA256, []byte("no such root"))
	props := func(kv ...string) *repb.Platform {
		p := &repb.Platform{}
		for i := 0; i < len(kv); i += 2 {
			p.Properties = append(p.Properties, &repb.Platform_Property{Name: kv[i], Value: kv[i+1]})
		}
		return p
	}
	type validationCase struct {
		name    string
		req     func() *repb.ExecuteRequest
		code    codes.Code
		field   string
		missing []string // PreconditionFailure subjects
	}
	cases := []validationCase{
		{"no action digest", func() *repb.ExecuteRequest { return &repb.ExecuteRequest{} }, codes.InvalidArgument, "action_digest", nil},
		{"bad digest function", func() *repb.ExecuteRequest {
			return &repb.ExecuteRequest{ActionDigest: missingCmd.Proto(), DigestFunction: 99}
		}, codes.InvalidArgument, "digest_function", nil},
		{"action missing", func() *repb.ExecuteRequest { return executeRequest(missingCmd) },
			codes.FailedPrecondition, "action_digest", []string{"blobs/" + missingCmd.String()}},
		{"command and input root missing", func() *repb.ExecuteRequest {
			return executeRequest(f.put(t, &repb.Action{CommandDigest: missingCmd.Proto(), InputRootDigest: missingRoot.Proto()}))
		}, codes.FailedPrecondition, "action.command_digest", []string{"blobs/" + missingCmd.String(), "blobs/" + missingRoot.String()}},
		{"no input root digest", func() *repb.ExecuteRequest {
			return executeRequest(f.put(t, &repb.Action{CommandDigest: missingCmd.Proto()}))
		}, codes.InvalidArgument, "action.input_root_digest", nil},
		{"timeout above maximum", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "t", func(a *repb.Action, c *repb.Command) { a.Timeout = durationpb.New(2 * time.Hour) }))
		}, codes.InvalidArgument, "action.timeout", nil},
		{"negative timeout", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "t2", func(a *repb.Action, c *repb.Command) { a.Timeout = durationpb.New(-time.Second) }))
		}, codes.InvalidArgument, "action.timeout", nil},
		{"malformed command digest", func() *repb.ExecuteRequest {
			return executeRequest(f.put(t, &repb.Action{CommandDigest: &repb.Digest{Hash: "xyz", SizeBytes: 1}, InputRootDigest: missingRoot.Proto()}))
		}, codes.InvalidArgument, "action.command_digest", nil},
		{"empty program", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "a0", func(a *repb.Action, c *repb.Command) { c.Arguments = []string{"", "x"} }))
		}, codes.InvalidArgument, "command.arguments[0]", nil},
		// "" is the working directory itself (worker/TestWholeRootOutputDirectory), and
		// so is "."; both name it twice. "./x" is not clean.
		{"output paths \"\" and .", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "o0", func(a *repb.Action, c *repb.Command) { c.OutputPaths = []string{"", "."} }))
		}, codes.InvalidArgument, "command.output_paths[1]", nil},
		{"output path ./x", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "o1", func(a *repb.Action, c *repb.Command) { c.OutputPaths = []string{"./x"} }))
		}, codes.InvalidArgument, "command.output_paths[0]", nil},
		{"unknown output node property (REv2 2.1+)", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "n0", func(a *repb.Action, c *repb.Command) { c.OutputNodeProperties = []string{"mtime"} }))
		}, codes.InvalidArgument, "command.output_node_properties[0]", nil},
		{"environment variable without a name", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "e0", func(a *repb.Action, c *repb.Command) {
				c.EnvironmentVariables = []*repb.Command_EnvironmentVariable{{Name: "", Value: "x"}}
			}))
		}, codes.InvalidArgument, "command.environment_variables[0]", nil},
		{"platform property without a name", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "p0", func(a *repb.Action, c *repb.Command) { a.Platform = props("", "x") }))
		}, codes.InvalidArgument, "action.platform.properties[0]", nil},
		{"platform values of one name unsorted", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "p3", func(a *repb.Action, c *repb.Command) { a.Platform = props("Pool", "b", "Pool", "a") }))
		}, codes.InvalidArgument, "action.platform.properties[1]", nil},
		{"no arguments", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "a", func(a *repb.Action, c *repb.Command) { c.Arguments = nil }))
		}, codes.InvalidArgument, "command.arguments", nil},
		{"absolute output path", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "o1", func(a *repb.Action, c *repb.Command) { c.OutputPaths = []string{"ok", "/etc/passwd"} }))
		}, codes.InvalidArgument, "command.output_paths[1]", nil},
		{"escaping output path", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "o2", func(a *repb.Action, c *repb.Command) { c.OutputPaths = []string{"a/../../x"} }))
		}, codes.InvalidArgument, "command.output_paths[0]", nil},
		{"output path escaping through the working directory", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "o3", func(a *repb.Action, c *repb.Command) {
				c.WorkingDirectory = "sub"
				c.OutputPaths = []string{"../../x"}
			}))
		}, codes.InvalidArgument, "command.output_paths[0]", nil},
		{"escaping output file (REv2 2.0)", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "o4", func(a *repb.Action, c *repb.Command) { c.OutputPaths, c.OutputFiles = nil, []string{"../x"} }))
		}, codes.InvalidArgument, "command.output_files[0]", nil},
		{"absolute output directory (REv2 2.0)", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "o5", func(a *repb.Action, c *repb.Command) { c.OutputPaths, c.OutputDirectories = nil, []string{"/tmp"} }))
		}, codes.InvalidArgument, "command.output_directories[0]", nil},
		{"absolute working directory", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "w1", func(a *repb.Action, c *repb.Command) { c.WorkingDirectory = "/src" }))
		}, codes.InvalidArgument, "command.working_directory", nil},
		{"escaping working directory", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "w2", func(a *repb.Action, c *repb.Command) { c.WorkingDirectory = "a/../.." }))
		}, codes.InvalidArgument, "command.working_directory", nil},
		{"unsorted action platform", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "p1", func(a *repb.Action, c *repb.Command) { a.Platform = props("Pool", "x", "OSFamily", "linux") }))
		}, codes.InvalidArgument, "action.platform.properties[1]", nil},
		{"unknown property in command platform (REv2 2.0)", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "p2", func(a *repb.Action, c *repb.Command) { c.Platform = props("OSFamily", "linux", "gpu", "yes") }))
		}, codes.InvalidArgument, "command.platform.properties[1]", nil},
		// Every queued action keeps its platform and instance name.
		{"a platform of 70 KB", func() *repb.ExecuteRequest {
			return executeRequest(f.action(t, "p3", func(a *repb.Action, c *repb.Command) {
				c.Platform = props("OSFamily", "linux", "container-image", "docker://r.example/"+strings.Repeat("x", 70<<10))
			}))
		}, codes.InvalidArgument, "command.platform", nil},
		{"an instance name of 2 KB", func() *repb.ExecuteRequest {
			req := executeRequest(missingCmd)
			req.InstanceName = strings.Repeat("i", 2048)
			return req
		}, codes.InvalidArgument, "instance_name", nil},
	}
	// Names no ByteStream resource name can carry are refused before the
	// Action is even looked up (it is missing here: FAILED_PRECONDITION
	// otherwise).
	for _, bad := range []struct{ what, name string }{
		{"blobs", "team/blobs/x"}, {"uploads", "a/uploads/b"}, {"leading slash", "/lead"},
		{"trailing slash", "trail/"}, {"dot", "a/./b"}, {"dot-dot", ".."},
	} {
		cases = append(cases, validationCase{"instance name with " + bad.what, func() *repb.ExecuteRequest {
			req := executeRequest(missingCmd)
			req.InstanceName = bad.name
			return req
		}, codes.InvalidArgument, "instance_name", nil})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := collect(must(f.exec.Execute(ctx, tc.req())))
			st := status.Convert(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.field) {
				t.Fatalf("got %v %q, want %v naming %s", st.Code(), st.Message(), tc.code, tc.field)
			}
			if tc.missing != nil {
				subjects, onlyMissing := rev2.MissingSubjects(st)
				if !onlyMissing {
					t.Errorf("violations other than MISSING in %v", st.Details())
				}
				if strings.Join(subjects, ",") != strings.Join(tc.missing, ",") {
					t.Fatalf("missing subjects %v, want %v", subjects, tc.missing)
				}
			}
		})
	}

	// An operator-declared property is accepted (testConfig declares
	// team-label), and the queue limit answers RESOURCE_EXHAUSTED.
	ok := f.action(t, "declared", func(a *repb.Action, c *repb.Command) { a.Platform = props("OSFamily", "linux", "team-label", "x") })
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream := must(f.exec.Execute(sctx, executeRequest(ok)))
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("declared execution property refused: %v", err)
	}
	_, err := collect(must(f.exec.Execute(ctx, executeRequest(f.action(t, "second", nil)))))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "max_queued_per_instance") {
		t.Fatalf("over the queue limit: %v, want RESOURCE_EXHAUSTED naming max_queued_per_instance", err)
	}
}

// A valid action under an instance name ByteStream cannot address is
// refused with INVALID_ARGUMENT naming instance_name and the segment, and
// no operation is created, so nothing runs whose outputs the client could
// never read. Names Bazel was seen to use are accepted.
func TestExecuteRefusesInstanceNamesByteStreamCannotAddress(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	a := f.action(t, "instance names", nil)
	for bad, segment := range map[string]string{
		"team/blobs/x": `"blobs"`, "a/uploads/b": `"uploads"`, "x/compressed-blobs": `"compressed-blobs"`,
		"/lead": "empty path segment", "trail/": "empty path segment", "a/./b": `"."`, "..": `".."`,
	} {
		req := executeRequest(a)
		req.InstanceName = bad
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := must(f.exec.Execute(ctx, req)).Recv()
		cancel()
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "instance_name") || !strings.Contains(st.Message(), segment) {
			t.Errorf("Execute under %q: %v %q, want INVALID_ARGUMENT naming instance_name and %s", bad, st.Code(), st.Message(), segment)
		}
	}
	if ops, n := f.s.Operations(OperationFilter{}); n != 0 {
		t.Fatalf("%d operations exist after refused Executes: %v", n, ops)
	}
	for _, good := range []string{"has space", "ünï", "team/a/b"} {
		req := executeRequest(a)
		req.InstanceName = good
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := must(f.exec.Execute(ctx, req)).Recv()
		cancel()
		if err != nil {
			t.Errorf("Execute under %q: %v, want it queued", good, err)
		}
	}
}

func TestWorkerRegisterValidation(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	conn, err := grpc.NewClient("passthrough:///"+f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := workerpb.NewWorkerServiceClient(conn)
	cases := []struct {
		name  string
		first *workerpb.WorkerMessage
		field string
	}{
		{"heartbeat first", &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}}, "register"},
		{"no worker id", &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: &workerpb.Register{Concurrency: 1}}}, "register.worker_id"},
		{"no concurrency", &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: &workerpb.Register{WorkerId: "w"}}}, "register.concurrency"},
		{"unnamed property", &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: &workerpb.Register{
			WorkerId: "w", Concurrency: 1, Platform: []*workerpb.Property{{Value: "x"}}}}}, "register.platform[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := client.Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tc.first); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.field) {
				t.Fatalf("got %v %q, want INVALID_ARGUMENT naming %s", st.Code(), st.Message(), tc.field)
			}
		})
	}
}

func TestExecutionPropertiesDoNotSplitQueues(t *testing.T) {
	route := map[string]bool{"OSFamily": true, "Pool": true}
	platform := func(kv ...string) *repb.Platform {
		p := &repb.Platform{}
		for i := 0; i < len(kv); i += 2 {
			p.Properties = append(p.Properties, &repb.Platform_Property{Name: kv[i], Value: kv[i+1]})
		}
		return p
	}
	a, routing := routingOf("main", platform("OSFamily", "linux", "container-image", "docker://a", "dockerNetwork", "standard"), route)
	b, _ := routingOf("main", platform("EstimatedCPU", "4", "OSFamily", "linux", "container-image", "docker://b"), route)
	if a != b || len(routing) != 1 || routing[0].Name != "OSFamily" {
		t.Fatalf("queue keys %q vs %q (routing %v): execution properties split the queue", a, b, routing)
	}
	c, _ := routingOf("main", platform("OSFamily", "linux", "Pool", "big"), route)
	d, _ := routingOf("other", platform("OSFamily", "linux"), route)
	if c == a || d == a {
		t.Fatal("a routing property or another instance shares a queue")
	}
}

// TestBadCommandsNeverReachAWorker: everything a worker would refuse is
// refused at Execute, with INVALID_ARGUMENT naming the field, and nothing of
// it is queued; so is every execution property value that no runner takes
// (rev2.Execution's rules). A good action afterwards proves the worker was there all
// along, and it is the only assignment the worker ever saw.
func TestBadCommandsNeverReachAWorker(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	w := startTestWorker(t, f.addr, "w1", 2, okRun("w1"))
	ctx := ctxTimeout(t)
	cmd := func(mod func(c *repb.Command)) func(*repb.Action, *repb.Command) {
		return func(a *repb.Action, c *repb.Command) { mod(c) }
	}
	// plat gives the Action a platform of name, value pairs, as given.
	plat := func(kv ...string) func(*repb.Action, *repb.Command) {
		return func(a *repb.Action, c *repb.Command) {
			a.Platform = &repb.Platform{}
			for i := 0; i < len(kv); i += 2 {
				a.Platform.Properties = append(a.Platform.Properties, &repb.Platform_Property{Name: kv[i], Value: kv[i+1]})
			}
		}
	}
	cases := []struct {
		name  string
		mod   func(*repb.Action, *repb.Command)
		field string
	}{
		{"working directory pkg/", cmd(func(c *repb.Command) { c.WorkingDirectory = "pkg/" }), "command.working_directory"},
		{"working directory /abs", cmd(func(c *repb.Command) { c.WorkingDirectory = "/abs" }), "command.working_directory"},
		{"working directory ../x", cmd(func(c *repb.Command) { c.WorkingDirectory = "../x" }), "command.working_directory"},
		{"output paths unsorted", cmd(func(c *repb.Command) { c.OutputPaths = []string{"b", "a"} }), "command.output_paths[1]"},
		{"output paths duplicated", cmd(func(c *repb.Command) { c.OutputPaths = []string{"a", "a"} }), "command.output_paths[1]"},
		{"output path absolute", cmd(func(c *repb.Command) { c.OutputPaths = []string{"/a"} }), "command.output_paths[0]"},
		{"output path not clean", cmd(func(c *repb.Command) { c.OutputPaths = []string{"a/./b"} }), "command.output_paths[0]"},
		{"output files unsorted (2.0)", cmd(func(c *repb.Command) { c.OutputPaths, c.OutputFiles = nil, []string{"b", "a"} }), "command.output_files[1]"},
		{"output directories duplicated (2.0)", cmd(func(c *repb.Command) { c.OutputPaths, c.OutputDirectories = nil, []string{"d", "d"} }), "command.output_directories[1]"},
		{"output file parent of another output (2.0)", cmd(func(c *repb.Command) { c.OutputPaths, c.OutputFiles = nil, []string{"a", "a/b"} }), "command.output_files[0]"},
		{"unknown platform property", func(a *repb.Action, c *repb.Command) {
			a.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "gpu", Value: "yes"}}}
		}, "action.platform.properties[0]"},
		{"execution property twice", plat("dockerNetwork", "off", "dockerNetwork", "standard"), "action.platform.properties[1]"},
		{"dockerNetwork bridge", plat("dockerNetwork", "bridge"), "action.platform.properties[0]"},
		{"dockerRunAsRoot yes", plat("dockerRunAsRoot", "yes"), "action.platform.properties[0]"},
		{"dockerUser outside the sandbox's ids", plat("dockerUser", "70000"), "action.platform.properties[0]"},
		{"dockerRunAsRoot with dockerUser", plat("dockerRunAsRoot", "true", "dockerUser", "1000"), "action.platform"},
		{"container-image not docker://", plat("container-image", "ubuntu:22.04"), "action.platform.properties[0]"},
		{"unknown capability", plat("dockerAddCapabilities", "CAP_FLY"), "action.platform.properties[0]"},
		{"EstimatedCPU zero", plat("EstimatedCPU", "0"), "action.platform.properties[0]"},
		{"EstimatedMemory below 1MiB", plat("EstimatedMemory", "1k"), "action.platform.properties[0]"},
		{"dockerShmSize not a size", plat("dockerShmSize", "lots"), "action.platform.properties[0]"},
		{"InputRootAbsolutePath under /proc", plat("InputRootAbsolutePath", "/proc/x"), "action.platform.properties[0]"},
		// The runner's /etc/hosts in an image: a directory made there in
		// the image's shared tree took it from every later action.
		{"InputRootAbsolutePath /etc/hosts", plat("InputRootAbsolutePath", "/etc/hosts"), "action.platform.properties[0]"},
		{"InputRootAbsolutePath under /etc/hosts", plat("InputRootAbsolutePath", "/etc/hosts/x"), "action.platform.properties[0]"},
		{"Command's platform (2.0)", func(a *repb.Action, c *repb.Command) {
			c.Platform = &repb.Platform{Properties: []*repb.Platform_Property{{Name: "dockerNetwork", Value: "bridge"}}}
		}, "command.platform.properties[0]"},
		{"arguments over ARG_MAX", cmd(func(c *repb.Command) {
			c.Arguments = []string{"echo", strings.Repeat("x", 100<<10), strings.Repeat("y", 8<<20)}
		}), "command.arguments"},
		// What the worker creates for outputs before the command runs is
		// bounded (rev2.MaxOutputPath*, rev2.MaxOutputDirs): past a bound,
		// not one directory is made.
		{"output path name past NAME_MAX", cmd(func(c *repb.Command) { c.OutputPaths = []string{strings.Repeat("x", 5000)} }), "command.output_paths[0]"},
		{"output file name past NAME_MAX (2.0)", cmd(func(c *repb.Command) {
			c.OutputPaths, c.OutputFiles = nil, []string{"d/" + strings.Repeat("x", 256)}
		}), "command.output_files[0]"},
		{"output path past rev2.MaxOutputPathBytes", cmd(func(c *repb.Command) {
			c.OutputPaths = []string{strings.Repeat(strings.Repeat("n", 99)+"/", rev2.MaxOutputPathBytes/100+1) + "x"}
		}), "command.output_paths[0]"},
		{"output path 600 levels deep", cmd(func(c *repb.Command) { c.OutputPaths = []string{deepPath(600)} }), "command.output_paths[0]"},
		{"output path 3000 levels deep", cmd(func(c *repb.Command) { c.OutputPaths = []string{deepPath(3000)} }), "command.output_paths[0]"},
		{"output path past rev2.MaxOutputPathLevels through the working directory", cmd(func(c *repb.Command) {
			c.WorkingDirectory, c.OutputPaths = deepPath(200), []string{deepPath(rev2.MaxOutputPathLevels - 199), "ok"}
		}), "command.output_paths[0]"},
		{"working directory past rev2.MaxOutputPathLevels", cmd(func(c *repb.Command) { c.WorkingDirectory = deepPath(rev2.MaxOutputPathLevels + 1) }), "command.working_directory"},
		// The attacker's Command: 50 paths of 2041 levels, 102,000
		// directories had the worker made them.
		{"50 output paths 2041 levels deep", cmd(func(c *repb.Command) { c.OutputPaths = manyDeepPaths(50, 2041) }), "command.output_paths[0]"},
		{"output parents past rev2.MaxOutputDirs", cmd(func(c *repb.Command) {
			c.OutputPaths = manyDeepPaths(rev2.MaxOutputDirs/(rev2.MaxOutputPathLevels-1)+1, rev2.MaxOutputPathLevels)
		}), fmt.Sprintf("command.output_paths[%d]", rev2.MaxOutputDirs/(rev2.MaxOutputPathLevels-1))},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := f.action(t, fmt.Sprint("bad", i), tc.mod)
			_, err := collect(must(f.exec.Execute(ctx, executeRequest(d))))
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field) {
				t.Fatalf("got %v %q, want INVALID_ARGUMENT starting with %s", st.Code(), st.Message(), tc.field)
			}
			if len(st.Message()) > 1000 {
				t.Errorf("message is %d bytes; messages are bounded", len(st.Message()))
			}
		})
	}
	if _, err := collect(must(f.exec.Execute(ctx, executeRequest(f.action(t, "good", nil))))); err != nil {
		t.Fatalf("good action: %v", err)
	}
	if n := w.assignedCount(); n != 1 {
		t.Fatalf("the worker got %d assignments, want only the good action's", n)
	}
}

// abandonConfig is testConfig for tests of abandonment on a fake clock:
// a grace of a minute, and only the test ticks; the clock's jumps must
// not expire the worker's lease.
func abandonConfig() Config {
	cfg := testConfig()
	cfg.AbandonedGrace = time.Minute
	cfg.TickInterval = time.Hour
	cfg.LeaseDuration = 1000 * time.Hour
	cfg.HeartbeatInterval = 100 * time.Hour
	return cfg
}

// TestAbandonedOperationIsCancelled: an operation no client follows for
// abandoned_grace is cancelled on its worker, with a status that says so;
// one that a second client picks up with WaitExecution within the grace
// runs on.
func TestAbandonedOperationIsCancelled(t *testing.T) {
	clock := newFakeClock()
	cfg := abandonConfig()
	f := startFarm(t, cfg, "", nil, nil, clock)
	w := startTestWorker(t, f.addr, "w1", 2, blockRun)
	ctx := ctxTimeout(t)
	followed := func(name string) int {
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		if _, idle := f.s.followers.idle[name]; idle {
			return 0
		}
		return f.s.followers.n[name]
	}
	start := func(salt string) string {
		sctx, cancel := context.WithCancel(ctx)
		stream := must(f.exec.Execute(sctx, executeRequest(f.action(t, salt, nil))))
		op, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		w.waitFor(t, salt+" assigned", func() bool {
			return slices.ContainsFunc(w.assigned, func(a *workerpb.Assignment) bool { return a.OperationName == op.Name })
		})
		cancel() // the client goes away
		w.waitFor(t, salt+" unfollowed", func() bool { return followed(op.Name) == 0 })
		return op.Name
	}
	abandoned := start("abandoned")
	kept := start("kept")
	waiter := must(f.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: kept}))
	if _, err := waiter.Recv(); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "kept followed again", func() bool { return followed(kept) == 1 })

	done := func(name string) bool { // not GetOperation: a poll counts as following
		f.s.mu.Lock()
		defer f.s.mu.Unlock()
		v, _ := f.s.core.Operation(name)
		return v.done
	}
	clock.Advance(cfg.AbandonedGrace - time.Second)
	f.s.Tick()
	if done(abandoned) {
		t.Fatal("cancelled before the grace period ended")
	}
	clock.Advance(2 * time.Second)
	f.s.Tick()
	w.waitFor(t, "the abandoned operation cancelled on its worker", func() bool {
		return slices.Contains(w.cancelled, abandoned)
	})
	op, err := f.ops.GetOperation(ctx, &longrunningpb.GetOperationRequest{Name: abandoned})
	if err != nil {
		t.Fatal(err)
	}
	resp := &repb.ExecuteResponse{}
	// NOT_FOUND, not CANCELLED: REv2 keeps CANCELLED for a CancelOperation
	// the client called, and has a client that finds NOT_FOUND call
	// Execute again.
	if !op.Done || op.GetResponse().UnmarshalTo(resp) != nil || resp.Status.GetCode() != int32(codes.NotFound) || !strings.Contains(resp.Status.GetMessage(), "abandoned") {
		t.Fatalf("the abandoned operation is %v, want done and NOT_FOUND as abandoned", op)
	}
	clock.Advance(10 * cfg.AbandonedGrace)
	f.s.Tick()
	if done(kept) {
		t.Fatal("the operation a client waits on was cancelled")
	}
}
