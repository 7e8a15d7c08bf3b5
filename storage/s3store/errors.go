package s3store

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"syscall"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// statusError turns an error from the S3 client into a gRPC status whose
// message starts with what (e.g. "get blob abc/3"). Stores return gRPC
// statuses where the meaning is known (storage.BlobStore's contract), so
// callers and the services above them see NOT_FOUND, UNAVAILABLE and
// PERMISSION_DENIED rather than an S3 error code. Errors that already are
// statuses pass through unchanged. The endpoint's URL is left out of the
// message: clients see the reason, not the farm's addresses.
func statusError(what string, err error) error {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return err
	}
	return status.Errorf(codeOf(err), "%s: %s", what, reasonOf(err))
}

// isContextDeadline reports whether err is the caller's context running
// out: the context.DeadlineExceeded value itself in err's chain. The
// HTTP client's own timeouts ("timeout awaiting response headers") also
// say errors.Is(err, context.DeadlineExceeded), and were reported as
// DEADLINE_EXCEEDED, where an endpoint that stopped answering is
// UNAVAILABLE (docs/storage.md), which clients retry.
func isContextDeadline(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if err == context.DeadlineExceeded { // the value itself, not an error that says it is one
			return true
		}
	}
	return false
}

// codeOf classifies an S3 client error.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case isContextDeadline(err):
		return codes.DeadlineExceeded
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return codes.Unavailable
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return codes.Unavailable
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NoSuchUpload":
		return codes.NotFound
	case "NoSuchBucket":
		return codes.FailedPrecondition
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		return codes.PermissionDenied
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "MissingSecurityHeader":
		return codes.Unauthenticated
	case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed",
		"XMinioServerNotInitialized", "OperationAborted":
		return codes.Unavailable
	case "InvalidRange":
		return codes.OutOfRange
	case "EntityTooLarge", "QuotaExceeded", "XMinioStorageFull":
		return codes.ResourceExhausted
	}
	switch {
	case resp.StatusCode == 404:
		return codes.NotFound
	case resp.StatusCode == 401:
		return codes.Unauthenticated
	case resp.StatusCode == 403:
		return codes.PermissionDenied
	case resp.StatusCode == 429 || resp.StatusCode >= 500:
		return codes.Unavailable
	}
	return codes.Internal
}

// reasonOf is the message of err without the request URL that Go's HTTP
// client puts in front of transport errors.
func reasonOf(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return "S3 endpoint unreachable: " + opErr.Op + ": " + opErr.Err.Error()
	}
	if resp := minio.ToErrorResponse(err); resp.Code != "" {
		return "S3 " + resp.Code + ": " + resp.Message
	}
	return err.Error()
}

// isNotFound reports whether err says the object does not exist.
func isNotFound(err error) bool { return codeOf(err) == codes.NotFound }
