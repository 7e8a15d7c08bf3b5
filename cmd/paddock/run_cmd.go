package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/remoterun"
)

const runUsage = `usage: paddock run [--endpoint HOST:PORT] [--instance NAME] [--platform K=V]...
                   [--container-image REF] [--input PATH]... [--output PATH]... -- CMD ARGS...

Runs one command on an REv2 farm, as recc does. The input root is --root
(default: the current directory) holding the --input paths; for a C or C++
compile (gcc, g++, cc, c++, clang, clang++ with -c) the files the compiler
reports with -M are added too, and its -o file is the output. What the
server lacks is uploaded, the command runs (or the action cache answers),
its stdout and stderr are printed, its outputs are written into place, and
paddock run exits with the command's exit code.

`

// listFlag collects a repeated flag's values, in order.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// runRun runs `paddock run` and returns the process's exit code: the
// command's own, or 1 with a message when the run could not happen, or 2
// for bad flags.
func runRun(ctx context.Context, args []string) int {
	opts, conn, err := parseRunFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "paddock run: %v\n", err)
		return 2
	}
	defer conn.close()
	c := client.New(conn.cc, client.Options{Instance: conn.instance, Headers: conn.headers, Retry: &conn.retry})
	res, err := remoterun.Run(ctx, c, opts)
	if err != nil {
		// The message may carry the server's words (a status message,
		// a path): escaped, so that they cannot drive the terminal.
		fmt.Fprintf(os.Stderr, "paddock run: %s\n", printable(err.Error()))
		return 1
	}
	code, ok := exitStatus(res.ExitCode)
	if !ok {
		fmt.Fprintf(os.Stderr, "paddock run: the server reported exit code %d, which no process can have; exiting with %d\n", res.ExitCode, code)
	}
	return code
}

// exitStatus maps the exit code a server reports to this process's: a
// process exits with 0 to 255, and os.Exit keeps only the low 8 bits, so
// a reported 256 would turn a failure into success. Anything outside
// 0..255 becomes 255, and ok is false.
func exitStatus(code int) (status int, ok bool) {
	if code < 0 || code > 255 {
		return 255, false
	}
	return code, true
}

// printable escapes control characters (and invalid UTF-8) in s as Go
// does in quoted strings, leaving everything else as is.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) || r == ' ' {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRune(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

// runConn is the connection parseRunFlags opens.
type runConn struct {
	cc       *grpc.ClientConn
	instance string
	headers  map[string]string
	retry    client.RetryPolicy // cc's, for Execute too
}

func (c runConn) close() { c.cc.Close() }

func parseRunFlags(args []string) (remoterun.Options, runConn, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, runUsage); fs.PrintDefaults() }
	endpoint := fs.String("endpoint", "127.0.0.1:8980", "REv2 endpoint (host:port)")
	instance := fs.String("instance", "", "REv2 instance name")
	image := fs.String("container-image", "", "container image to run in (docker://REGISTRY/REPO[:TAG][@sha256:…]; docker:// may be left out)")
	root := fs.String("root", ".", "local directory that becomes the input root; the current directory must be inside it")
	apiVersion := fs.String("api-version", "2.1", "REv2 fields to send: 2.0 (output_files/output_directories, Command.platform), 2.1 (output_paths, platform in Command and Action), 2.2 (platform in the Action only)")
	skipCache := fs.Bool("skip-cache", false, "run even if the action cache has a result")
	noDeps := fs.Bool("no-compiler-deps", false, "do not ask a C/C++ compiler for its dependencies")
	timeout := fs.Duration("timeout", 0, "execution timeout (0: the server's default); when set, paddock run also gives up waiting "+remoterun.DefaultWaitGrace.String()+" after it")
	retries := fs.Int("retries", client.DefaultRetries, "how many times a call that failed for a passing reason (the farm unreachable, restarting or busy) is tried again, after pauses from 250 ms doubling to 10 s; also how many breaks in a row of the Execute stream are resumed")
	verbose := fs.Bool("v", false, "print a summary line: the action's digest, cache hit or not, what was uploaded")
	var platform, env, headers pairFlags
	var inputs, outputs, outputDirs, nodeProps listFlag
	fs.Var(&platform, "platform", "platform property K=V (repeatable)")
	fs.Var(&env, "env", "environment variable NAME=VALUE for the command (repeatable; default PATH=/usr/local/bin:/usr/bin:/bin)")
	fs.Var(&headers, "header", "gRPC header NAME=VALUE on every call (repeatable)")
	fs.Var(&inputs, "input", "file or directory to put in the input root (repeatable)")
	fs.Var(&outputs, "output", "output file, relative to the current directory (repeatable)")
	fs.Var(&outputDirs, "output-dir", "output directory, relative to the current directory (repeatable)")
	fs.Var(&nodeProps, "output-node-property", "node property to ask of the server for outputs (REv2 2.1+, repeatable)")
	var dial dialSecurity
	dial.registerAs(fs, "", "the farm")
	if err := fs.Parse(args); err != nil {
		return remoterun.Options{}, runConn{}, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return remoterun.Options{}, runConn{}, errors.New("no command: usage is paddock run [flags] -- CMD ARGS")
	}
	if *retries < 0 {
		return remoterun.Options{}, runConn{}, fmt.Errorf("--retries must be 0 or more, not %d", *retries)
	}
	api, err := client.ParseAPIVersion(*apiVersion)
	if err != nil {
		return remoterun.Options{}, runConn{}, fmt.Errorf("--api-version: %w", err)
	}
	if api == client.V2_0 && len(nodeProps) > 0 {
		return remoterun.Options{}, runConn{}, fmt.Errorf("--output-node-property needs --api-version 2.1 or later")
	}
	cwd, err := os.Getwd()
	if err != nil {
		return remoterun.Options{}, runConn{}, err
	}
	props := platform.toMap()
	if *image != "" {
		ref := *image
		if !strings.HasPrefix(ref, "docker://") {
			ref = "docker://" + ref
		}
		props["container-image"] = ref
	}
	environment := env.toMap()
	if len(environment) == 0 {
		environment = map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin"}
	}
	opts := remoterun.Options{
		Args: fs.Args(), Root: *root, Dir: cwd,
		Inputs: inputs, Outputs: outputs, OutputDirs: outputDirs, OutputNodeProperties: nodeProps,
		NoCompilerDeps: *noDeps, Environment: environment, Platform: props, API: api,
		SkipCache: *skipCache, Timeout: *timeout, Stdout: os.Stdout, Stderr: os.Stderr,
	}
	if *verbose {
		opts.Log = os.Stderr
	}
	dialOpts, err := dial.dialOptions(slog.Default())
	if err != nil {
		return remoterun.Options{}, runConn{}, err
	}
	retry := client.DefaultRetryPolicy()
	retry.Retries = *retries
	dialOpts = append(dialOpts, retry.DialOptions()...)
	cc, err := dialRunEndpoint(*endpoint, dialOpts, storageKeepalive())
	if err != nil {
		return remoterun.Options{}, runConn{}, fmt.Errorf("--endpoint: %w", err)
	}
	return opts, runConn{cc: cc, instance: *instance, headers: headers.toMap(), retry: retry}, nil
}

// dialRunEndpoint dials the farm for `paddock run`, with keepalive kp (the
// roles' own: storageKeepalive): a connection cut without being closed (a
// partition, a machine gone) left the Execute stream waiting for good,
// the action finished meanwhile, and `paddock run` printed nothing for
// minutes. A ping unanswered fails the stream UNAVAILABLE, and the run
// resumes with WaitExecution on a new connection, as Bazel does with its
// keepalive.
func dialRunEndpoint(endpoint string, dialOpts []grpc.DialOption, kp keepalive.ClientParameters) (*grpc.ClientConn, error) {
	return grpc.NewClient(endpoint, append(dialOpts, grpc.WithKeepaliveParams(kp), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))...)
}
