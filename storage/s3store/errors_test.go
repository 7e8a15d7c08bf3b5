package s3store

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatusError(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://10.1.2.3:9000/bucket/key", Err: &net.OpError{
		Op: "dial", Net: "tcp", Err: fmt.Errorf("connect: %w", syscall.ECONNREFUSED)}}
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, codes.NotFound},
		{minio.ErrorResponse{StatusCode: 404}, codes.NotFound}, // a HEAD has no body
		{minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, codes.FailedPrecondition},
		{minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, codes.PermissionDenied},
		{minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, codes.Unauthenticated},
		{minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, codes.Unavailable},
		{minio.ErrorResponse{StatusCode: 502}, codes.Unavailable},
		{minio.ErrorResponse{Code: "InvalidRange", StatusCode: 416}, codes.OutOfRange},
		{minio.ErrorResponse{Code: "Weird", StatusCode: 400}, codes.Internal},
		{refused, codes.Unavailable},
		{fmt.Errorf("put: %w", context.Canceled), codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
	} {
		err := statusError("get blob x", tc.err)
		if status.Code(err) != tc.code {
			t.Errorf("%v: code %s, want %s", tc.err, status.Code(err), tc.code)
		}
		if !strings.HasPrefix(status.Convert(err).Message(), "get blob x: ") {
			t.Errorf("%v: message %q lacks the context", tc.err, status.Convert(err).Message())
		}
	}
	if msg := status.Convert(statusError("get", refused)).Message(); strings.Contains(msg, "10.1.2.3") {
		t.Errorf("message %q names the endpoint", msg)
	}
	already := status.Error(codes.DataLoss, "corrupt")
	if got := statusError("get", already); got != already {
		t.Errorf("a status error was rewrapped: %v", got)
	}
	if statusError("get", nil) != nil {
		t.Error("nil error became non-nil")
	}
}

// An endpoint that stops answering is UNAVAILABLE, which clients retry:
// the HTTP client's own timeout says errors.Is(err,
// context.DeadlineExceeded), and was reported as DEADLINE_EXCEEDED, the
// caller's deadline, which it was not. The caller's deadline running out
// stays DEADLINE_EXCEEDED.
func TestEndpointTimeoutIsUnavailable(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() { // accepts, reads nothing, answers nothing
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 50 * time.Millisecond}}
	_, err = client.Get("http://" + lis.Addr().String() + "/bucket/key")
	if err == nil {
		t.Fatal("a GET from an endpoint that never answers succeeded")
	}
	if got := status.Code(statusError("get blob x", err)); got != codes.Unavailable {
		t.Errorf("%v: code %s, want UNAVAILABLE", err, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lis.Addr().String()+"/bucket/key", nil)
	_, err = http.DefaultClient.Do(req)
	if got := status.Code(statusError("get blob x", err)); got != codes.DeadlineExceeded {
		t.Errorf("the caller's deadline: %v: code %s, want DEADLINE_EXCEEDED", err, got)
	}
}
