package compose

import (
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// backendError names the backend that returned err, by its configured
// name. An UNAVAILABLE backend's own message names its address and the
// transport's failure, which say nothing to a client and leak the farm's
// layout: it is replaced. Other errors keep their code and message.
func backendError(name string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	if isUnavailable(err) {
		return status.Errorf(codes.Unavailable, "storage backend %q is unavailable; retry later", name)
	}
	return fmt.Errorf("storage backend %q: %w", name, err)
}

// isUnavailable reports whether err says the backend could not be reached
// (as opposed to answering: NOT_FOUND, INVALID_ARGUMENT ...).
func isUnavailable(err error) bool {
	return status.Code(err) == codes.Unavailable
}

// namedReader names its backend in read errors: a backend that stops in
// the middle of a stream is reported like one that was down at the start.
type namedReader struct {
	io.ReadCloser
	name string
}

func (r namedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	return n, backendError(r.name, err)
}
