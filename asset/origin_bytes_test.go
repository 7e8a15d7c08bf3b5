package asset_test

import (
	"bufio"
	"log/slog"
	"net"
	"strings"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/nettest"
	"github.com/paddock-build/paddock/internal/testlog"
)

// serveBytes answers every request to a loopback port with data and
// closes the connection, as a service that does not speak HTTP would; it
// returns the address. It reads the request's head first: bytes written
// before the request was sent are an "unsolicited response" to Go's HTTP
// client, which then fails without quoting them (under load, the test
// failed that way now and then).
func serveBytes(t *testing.T, data string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nettest.AcceptEach(t, lis, func(c net.Conn) {
		head := bufio.NewReader(c)
		for {
			line, err := head.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		_, _ = c.Write([]byte(data)) // the client may have gone
		c.Close()
	})
	return lis.Addr().String()
}

// TestTransportErrorsDoNotQuoteTheOrigin: an allow-list entry without a
// port allows every port of the host, services other than mirrors among
// them. Even with a checksum required, the status of a failed fetch must
// not carry what such a service sent (Go's error quotes the first bytes
// of an answer that is not HTTP: a token, or a gRPC server's SETTINGS
// frame): it names the host and the kind of failure, and only the
// server's log has the rest.
func TestTransportErrorsDoNotQuoteTheOrigin(t *testing.T) {
	const secret = "internal-token=hunter2"
	notHTTP := serveBytes(t, secret+"\r\n\r\n")
	grpcPort := grpctest.Listen(t, func(*grpc.Server) {})
	var logs testlog.Buffer
	h := start(t, func(opts *asset.Options) {
		opts.AllowedHosts = []string{"127.0.0.1"} // every port
		opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for name, addr := range map[string]string{"not HTTP": notHTTP, "gRPC": grpcPort} {
		resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{Uris: []string{"http://" + addr + "/metrics"},
			Qualifiers: q("checksum.sri", sri([]byte("anything")))})
		if err != nil {
			t.Fatal(err)
		}
		st := status.FromProto(resp.Status)
		want := "fetch from " + addr + " failed: no valid HTTP answer (the server's log has the details)"
		if st.Code() != codes.Unavailable || st.Message() != want {
			t.Errorf("%s: status %v; want UNAVAILABLE %q", name, st, want)
		}
	}
	if !strings.Contains(logs.String(), secret) {
		t.Errorf("the log does not tell the operator what the origin answered:\n%s", logs.String())
	}
}
