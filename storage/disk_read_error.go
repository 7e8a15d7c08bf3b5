package storage

import (
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unreadableFile reports a read or open error that the file itself
// causes, and that trying again will not mend: its permissions (an
// operator's chmod), or the disk failing under it (EIO). A store drops
// such a file as it drops a corrupt one, and answers as if it had never
// held it, so that clients upload it again. Before, every read of it was
// UNKNOWN quoting the host path, and the blob stayed present for
// FindMissingBlobs and the action cache's completeness check for good.
// Other errors (out of file descriptors, say) pass and leave it alone.
func unreadableFile(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EIO) ||
		errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ELOOP)
}

// diskReadError is the status of a read of what (a blob, an action
// result) that failed for a reason other than unreadableFile's: UNAVAILABLE,
// naming the error but no host path (the caller logs the path).
func diskReadError(what string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return status.Errorf(codes.Unavailable, "%s could not be read now (%v); try again", what, errno)
	}
	return status.Errorf(codes.Unavailable, "%s could not be read now; try again", what)
}
