package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFloodsLeaveTheFarmItsOpenFiles: a client that opens more TCP
// connections, and more ByteStream uploads, than `paddock up` may have
// open files takes only a share of them, so an action already running
// completes, and once the flood ends the farm serves as before. Without
// the bounds both floods took every open file, and the running action
// failed with "too many open files" while saving its outputs.
//
// The farm runs with an open-file limit of 1024 (prlimit), so the floods
// stay small: 1,200 connections, and 1,100 uploads on one connection.
func TestFloodsLeaveTheFarmItsOpenFiles(t *testing.T) {
	needPaddock(t)
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	// The test's own end of the connections needs files too.
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 4096 {
		had := lim.Cur
		lim.Cur, lim.Max = 4096, max(lim.Max, 4096)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Skipf("this test opens 1,200 connections, and its open-file limit is %d: %v", had, err)
		}
	}
	data := searchableTempDir(t) + "/data"
	p, addr, err := tryStartExecutable(t, "up", upReady, prlimit, "--nofile=1024:1024", "--", paddockBin,
		"up", "--data", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &farm{process: p, addr: addr, data: data}
	c := newClient(t, f.addr)
	ctx := t.Context()

	d := c.prepare(ctx, action{cmd: shell("sleep 4; echo survived > out.txt", "out.txt")})
	done := c.executeAsync(ctx, d)

	// Past the farm's bound (1024/8) connections wait in the kernel's
	// backlog; if that fills too (a small net.core.somaxconn), the flood is
	// as large as it can be.
	var conns []net.Conn
	for len(conns) < 1200 {
		conn, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
		if err != nil {
			break
		}
		conns = append(conns, conn)
	}
	if len(conns) <= 128 {
		t.Fatalf("only %d connections opened", len(conns))
	}
	uploads, cancel := floodUploads(t, c, 1100)

	r := <-done
	if r.err != nil {
		t.Fatalf("the action running through the floods: %v", r.err)
	}
	if st := status.FromProto(r.resp.Status); st.Code() != codes.OK || r.resp.Result.ExitCode != 0 || len(r.resp.Result.OutputFiles) != 1 {
		t.Fatalf("the action running through the floods: %v, %v", st, r.resp.Result)
	}
	// A quarter of the open-file limit: 256 uploads at most.
	if n := uploadsInProgress(t, c, uploads); n == 0 || n > 256 {
		t.Errorf("the farm holds %d of the %d uploads open; want some, and at most 256", n, len(uploads))
	}
	cancel()
	for _, conn := range conns {
		conn.Close()
	}
	if got := string(c.read(ctx, r.resp.Result.OutputFiles[0].Digest)); got != "survived\n" {
		t.Fatalf("output %q", got)
	}
	checkFarmWorks(t, c, "after the floods")
}

// floodUploads starts n uploads on c's connection, each sending its first
// byte, and keeps them open until the returned cancel. It returns their
// resource names.
func floodUploads(t *testing.T, c *client, n int) ([]string, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	var names []string
	for i := range n {
		data := fmt.Appendf(nil, "flood %d of %s", i, t.Name())
		h := sha256.Sum256(data)
		stream, err := c.bs.Write(ctx)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		name := fmt.Sprintf("uploads/flood-%d/blobs/%s/%d", i, hex.EncodeToString(h[:]), len(data))
		if err := stream.Send(&bytestream.WriteRequest{ResourceName: name, Data: data[:1]}); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		names = append(names, name)
	}
	return names, cancel
}

// uploadsInProgress counts the names the farm has an upload in progress
// for.
func uploadsInProgress(t *testing.T, c *client, names []string) int {
	n := 0
	for _, name := range names {
		_, err := c.bs.QueryWriteStatus(t.Context(), &bytestream.QueryWriteStatusRequest{ResourceName: name})
		switch status.Code(err) {
		case codes.OK:
			n++
		case codes.NotFound:
		default:
			t.Fatalf("QueryWriteStatus %s: %v", name, err)
		}
	}
	return n
}
