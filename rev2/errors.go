package rev2

import (
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxQuoted bounds how much of a client's string goes into an error
// message: a 1 MiB path must not become a 1 MiB status (gRPC trailers have
// limits of their own, and logs should stay readable).
const maxQuoted = 200

// Invalid returns an INVALID_ARGUMENT status whose message starts with the
// offending field, as every check in this package does.
func Invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// Quote quotes a client-supplied string for an error message, cut short
// with its length when it is long.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:maxQuoted]), len(s))
}
