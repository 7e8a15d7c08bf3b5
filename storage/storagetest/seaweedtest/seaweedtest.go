// Package seaweedtest starts a real S3-compatible object store for tests:
// SeaweedFS's `weed server` with its S3 gateway, on free loopback ports,
// with its data in a temporary directory and one access key.
//
// The binary is built once per machine by scripts/build-seaweedfs.sh (run
// by `make test` and CI through scripts/install-test-deps.sh) into
// /opt/paddock-test/seaweedfs-<Version>/weed. If it is missing, Start
// fails the test and says how to build it: the S3 tests never skip
// silently and never fall back to a fake.
package seaweedtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the SeaweedFS module version the tests run; keep it equal to
// the one in scripts/build-seaweedfs.sh.
const Version = "v0.0.0-20261109003541-7506e5f91cd6"

// The access key Start configures.
const (
	AccessKey = "paddock-test"
	SecretKey = "paddock-test-secret-key"
)

// SecretKeyFile writes SecretKey, as a role's secret_access_key_file holds
// it, to a file (mode 0600) at path, and returns path.
func SecretKeyFile(t testing.TB, path string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Binary is the path of the weed binary: $PADDOCK_SEAWEEDFS_BIN if set,
// else weed under $PADDOCK_TEST_CACHE (default /opt/paddock-test).
func Binary() string {
	if p := os.Getenv("PADDOCK_SEAWEEDFS_BIN"); p != "" {
		return p
	}
	cache := os.Getenv("PADDOCK_TEST_CACHE")
	if cache == "" {
		cache = "/opt/paddock-test"
	}
	return filepath.Join(cache, "seaweedfs-"+Version, "weed")
}

// Server is a running (or stopped) SeaweedFS server. Stop and Start may be
// called again to take it down and back up on the same ports and data,
// as fault tests do.
type Server struct {
	// Endpoint is the S3 API's host:port on loopback.
	Endpoint string

	bin, dir, log string
	args          []string
	grpcPorts     map[string]int // service name → gRPC port
	mu            sync.Mutex
	cmd           *exec.Cmd
	exited        chan struct{}
}

// Start runs a SeaweedFS server until the test ends and waits until its S3
// API answers signed requests.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("SeaweedFS binary %s is missing (%v): build it with scripts/build-seaweedfs.sh "+
			"(`make test` and CI do, through scripts/install-test-deps.sh)", bin, err)
	}
	// A short directory of its own: the UNIX socket paths under it must fit
	// in 108 bytes, which a t.TempDir named after a long test may not.
	dir, err := os.MkdirTemp("", "weed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{bin: bin, dir: dir, log: filepath.Join(dir, "weed.log")}
	ports := freePorts(t, 8)
	s.Endpoint = "127.0.0.1:" + strconv.Itoa(ports[6])
	s.grpcPorts = map[string]int{"master": ports[1], "volume": ports[3], "filer": ports[5], "s3": ports[7]}
	config := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(config, []byte(identities), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.args = []string{"-logtostderr", "server",
		"-dir=" + filepath.Join(dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-master.port=" + strconv.Itoa(ports[0]), "-master.port.grpc=" + strconv.Itoa(ports[1]),
		"-volume.port=" + strconv.Itoa(ports[2]), "-volume.port.grpc=" + strconv.Itoa(ports[3]),
		"-filer", "-filer.port=" + strconv.Itoa(ports[4]), "-filer.port.grpc=" + strconv.Itoa(ports[5]),
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"),
		"-s3", "-s3.port=" + strconv.Itoa(ports[6]), "-s3.port.grpc=" + strconv.Itoa(ports[7]),
		"-s3.localSocket=" + filepath.Join(dir, "s3.sock"), "-s3.config=" + config,
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-master.telemetry=false", "-master.resumeState=false", "-master.volumeSizeLimitMB=1024", "-volume.max=0",
	}
	t.Cleanup(s.Stop)
	s.StartAgain(t)
	return s
}

// identities is the S3 gateway's config: one admin key.
var identities = fmt.Sprintf(`{"identities": [{"name": "paddock", "credentials": [{"accessKey": %q, "secretKey": %q}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}`, AccessKey, SecretKey)

// StartAgain starts the server after Stop, on the same ports and data,
// and waits until S3 answers. The master does not resume its raft state
// (-master.resumeState=false): alone, it would otherwise wait out an
// election timeout first; what it needs it learns again from the volume
// server.
func (s *Server) StartAgain(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("seaweedtest: server already running")
	}
	// On a busy machine weed now and then stalls at start (its master
	// waits on a volume growth that never comes); a new process does not.
	const attempts = 3
	for i := 1; ; i++ {
		exited := s.launchLocked(t)
		err := s.waitReady(exited)
		if err == nil {
			return
		}
		if i == attempts {
			t.Fatalf("SeaweedFS did not come up in %d attempts: %v\n%s", attempts, err, s.logTail())
		}
		t.Logf("SeaweedFS did not come up (%v); starting it again", err)
		s.stopLocked()
	}
}

// launchLocked starts weed; its channel is closed when the process exits.
func (s *Server) launchLocked(t testing.TB) chan struct{} {
	t.Helper()
	logFile, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start SeaweedFS: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // killed at stop: its status says nothing
	s.cmd, s.exited = cmd, exited
	return exited
}

// waitReady polls the S3 API with a signed ListBuckets until it answers.
// The filer and volume server come up after the gateway, so it then also
// creates and removes a probe bucket: only then can objects be written.
func (s *Server) waitReady(exited chan struct{}) error {
	c := s.newClient()
	deadline := time.Now().Add(90 * time.Second) // the machine may be very busy
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("weed exited")
		default:
		}
		// A short deadline: until the volume server has registered with
		// the master, a PUT hangs rather than fails.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		lastErr = probe(ctx, c)
		cancel()

		if lastErr == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no answer within 90 s: %v", lastErr)
}

func probe(ctx context.Context, c *minio.Client) error {
	if _, err := c.ListBuckets(ctx); err != nil {
		return err
	}
	const b = "paddock-probe"
	if err := c.MakeBucket(ctx, b, minio.MakeBucketOptions{}); err != nil {
		if exists, _ := c.BucketExists(ctx, b); !exists {
			return err
		}
	}
	if _, err := c.PutObject(ctx, b, "probe", strings.NewReader("ok"), 2, minio.PutObjectOptions{}); err != nil {
		return err
	}
	return nil
}

// Stop kills the server (its whole process group), as a crash would, and
// waits for it. weed puts a UNIX socket per service in /tmp whatever its
// flags say (/tmp/seaweedfs-<service>-grpc-<port>.sock); they are removed
// here, since a killed server cannot.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // fails only if the group is gone; exited says when
	<-s.exited
	s.cmd, s.exited = nil, nil
	for name, port := range s.grpcPorts {
		os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", name, port))
	}
}

func (s *Server) newClient() *minio.Client {
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: "us-east-1", MaxRetries: 1,
	})
	if err != nil {
		panic(err) // only a malformed endpoint fails, and ours is host:port
	}
	return c
}

// Client returns an S3 client with the server's access key, for tests that
// reach behind a store's back (to corrupt an object, say).
func (s *Server) Client() *minio.Client { return s.newClient() }

// CreateBucket creates a bucket and returns its name.
func (s *Server) CreateBucket(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.newClient().MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// logTail is the end of the server's log, for failure messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freePorts returns n distinct free loopback ports. They are found by
// listening and closing, so another process could take one before weed
// does; weed then exits and Start says so.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
