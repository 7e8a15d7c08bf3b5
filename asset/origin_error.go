package asset

import (
	"compress/flate"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpcerr"
)

// originError is a download that failed outside the server's control:
// the status the client gets (a code FetchBlobResponse.status documents,
// and a message the server wrote), and the cause, for the server's log
// only. The cause may quote what the origin sent, and an allowed host
// may run other services than the mirror (the farm's own metrics, a gRPC
// port, a token service on loopback): quoting their first bytes to the
// client ("malformed HTTP response \"internal-token=…\"") would let any
// client read them, checksum or not.
type originError struct {
	st    *status.Status
	cause error // nil when the status says it all
}

func (e *originError) Error() string {
	if e.cause == nil {
		return e.st.Message()
	}
	return e.st.Message() + ": " + e.cause.Error()
}

// GRPCStatus is what status.FromError, and gRPC, take from the error:
// the status without the cause.
func (e *originError) GRPCStatus() *status.Status { return e.st }

func (e *originError) Unwrap() error { return e.cause }

// logDetail is what the server's log says of a failed download: the
// status's message and, for an originError, its cause, with any URL's
// password hidden (redact.go).
func logDetail(err error) string {
	var oe *originError
	if errors.As(err, &oe) {
		return redactText(oe.Error())
	}
	return redactText(grpcerr.Convert(err).Message())
}

// transportError maps a failed request or body read from host (the host
// of the URL the client asked for): the timeout is DEADLINE_EXCEEDED, a
// refused redirect keeps its own status, the rest is UNAVAILABLE (worth a
// retry), named by the kind of failure, never by the error's own text.
func transportError(ctx context.Context, host string, err error, timeout time.Duration, reading bool) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &originError{status.Newf(codes.DeadlineExceeded, "no complete answer from %s within %s", host, timeout), err}
	}
	var refused *originError
	if errors.As(err, &refused) {
		return &originError{refused.st, err}
	}
	return &originError{status.Newf(codes.Unavailable, "fetch from %s failed: %s (the server's log has the details)", host, failureKind(err, reading)), err}
}

// failureKind names what went wrong, from the error's types alone.
func failureKind(err error, reading bool) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	var alert tls.AlertError
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &dnsErr):
		return "its host name did not resolve"
	case errors.As(err, &certErr), errors.As(err, &recordErr), errors.As(err, &alert):
		return "the TLS handshake failed"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return "could not connect"
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, &corrupt):
		return "the content's gzip Content-Encoding is corrupt"
	case reading:
		return "the connection broke while the content was read"
	}
	return "no valid HTTP answer"
}

// refusedRedirect is the error CheckRedirect returns for a redirect to a
// URL the server may not fetch. The client is told the kind of refusal,
// not the target: that is the origin's to choose, and the log has it.
func refusedRedirect(refusal error) error {
	msg := "redirected to a host not on this server's allow-list for fetches (the server's log names it)"
	if status.Code(refusal) != codes.PermissionDenied {
		msg = "redirected to a URL that is not http(s)"
	}
	return &originError{status.New(status.Code(refusal), msg), refusal}
}

// tooManyRedirects bounds redirect chains.
func tooManyRedirects(n int) error {
	return &originError{status.New(codes.Unavailable, fmt.Sprintf("more than %d redirects", n)), nil}
}
