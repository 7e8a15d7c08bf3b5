package worker

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/rev2"
)

// checkSymlinkTarget enforces the symlink_absolute_path_strategy DISALLOWED
// that storage advertises. A relative target that climbs out of the input
// root is reported as it is: it is only a string, never followed here.
// A target that is not UTF-8 has no REv2 form (protobuf strings are UTF-8).
func checkSymlinkTarget(p, target string) error {
	if !utf8.ValidString(target) {
		return status.Errorf(codes.FailedPrecondition, "output symlink %s has a target that is not valid UTF-8 (%s): REv2 cannot carry it", rev2.Quote(p), rev2.Quote(strings.ToValidUTF8(target, "\ufffd")))
	}
	if target == "" || strings.HasPrefix(target, "/") {
		return status.Errorf(codes.FailedPrecondition, "output symlink %q has target %q: absolute symlink targets are not allowed (symlink_absolute_path_strategy DISALLOWED)", p, target)
	}
	return nil
}

// checkLegacyTarget applies REv2 2.0's rule for a declared output that is
// a symlink: one listed in output_files whose target is not a regular
// file, or in output_directories whose target is not a directory, is
// FAILED_PRECONDITION. The target is resolved inside the input root only;
// one that is missing or outside it is left to be reported as a symlink.
func (c *outputCollector) checkLegacyTarget(declared, rel string, kind outputKind) error {
	fd, err := c.openBeneath(rel, unix.O_PATH)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("output %q: %w", declared, err)
	}
	switch t := st.Mode & unix.S_IFMT; {
	case kind == kindFile && t != unix.S_IFREG:
		return status.Errorf(codes.FailedPrecondition, "output file %q is a symlink to something that is not a regular file", declared)
	case kind == kindDir && t != unix.S_IFDIR:
		return status.Errorf(codes.FailedPrecondition, "output directory %q is a symlink to something that is not a directory", declared)
	}
	return nil
}
