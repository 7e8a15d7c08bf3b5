package fdlimit

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestShareIsAFractionOfTheLimit(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur == unix.RLIM_INFINITY || lim.Cur/8 < 64 {
		t.Skipf("open-file limit %d", lim.Cur)
	}
	if got, want := Share(8, 64), int(lim.Cur/8); got != want {
		t.Fatalf("Share(8, 64) = %d with a limit of %d; want %d", got, lim.Cur, want)
	}
	if got := Share(int(lim.Cur), 64); got != 64 {
		t.Fatalf("Share(limit, 64) = %d; want the least, 64", got)
	}
}
