// Package fdlimit shares out the process's open-file limit. A client can
// make a server hold files open, a connection each and a blob for each
// ByteStream stream; bounding each of those to a share of the limit keeps
// the rest for the farm's own work (input roots, outputs, the scheduler's
// journal), which in `paddock up` runs in the same process.
package fdlimit

import "golang.org/x/sys/unix"

// Share returns 1/divisor of the process's soft open-file limit (Go raises
// it to the hard limit at start-up), and at least least.
func Share(divisor, least int) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return max(least, 4096)
	}
	return max(least, int(min(lim.Cur/uint64(divisor), 1<<20)))
}
