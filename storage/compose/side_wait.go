package compose

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// secondSideWait is how long a mirror waits for one side once the other
// has answered a lookup or stored a write. A side that is down fails at
// once and the other's answer stands; a side that hangs (its process
// stopped, its disk stuck, its connections still open) would instead hold
// every lookup and write until the client's deadline, and "losing one
// side is invisible" would not hold. Past this wait the side is treated as
// down for that call: logged, and what it missed is repaired when the
// blob is next looked up or read (as after a side that was down). A
// healthy side answers within milliseconds of the other, so it is cut
// off only when it is seconds behind.
const secondSideWait = 5 * time.Second

// answer is one call's outcome, for awaitWithin.
type answer struct {
	i  int
	ok bool
}

// awaitWithin collects one answer from each call i marked out[i], and
// returns which succeeded. Once one has succeeded, the others have wait
// more (if wait > 0), after which cut(i) is called, from this goroutine,
// for each still out; cut must make it answer soon (cancel its context,
// close its pipe), and its answer is still collected.
func awaitWithin(answers <-chan answer, out []bool, wait time.Duration, cut func(i int)) []bool {
	out = slices.Clone(out)
	ok := make([]bool, len(out))
	left := 0
	for _, o := range out {
		if o {
			left++
		}
	}
	var late <-chan time.Time
	timing := false
	for left > 0 {
		select {
		case a := <-answers:
			left--
			out[a.i], ok[a.i] = false, a.ok
			if a.ok && wait > 0 && !timing {
				timing = true
				t := time.NewTimer(wait)
				defer t.Stop()
				late = t.C
			}
		case <-late:
			late = nil
			for i, o := range out {
				if o {
					cut(i)
				}
			}
		}
	}
	return ok
}

// bothWithin runs call for both sides of a mirror at once, each under its
// own context, and returns their errors. Once one side succeeded, the
// other has wait more; past it, its context is cancelled and, unless it
// succeeded after all, its error is lateError.
func bothWithin(ctx context.Context, wait time.Duration, call func(ctx context.Context, side int) error) [2]error {
	var errs [2]error
	var cancels [2]context.CancelFunc
	answers := make(chan answer, 2)
	for i := range 2 {
		sctx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		go func() {
			errs[i] = call(sctx, i)
			answers <- answer{i, errs[i] == nil}
		}()
	}
	var late [2]bool
	awaitWithin(answers, []bool{true, true}, wait, func(i int) {
		late[i] = true
		cancels[i]()
	})
	for i := range errs {
		cancels[i]()
		if late[i] && errs[i] != nil {
			errs[i] = lateError(wait)
		}
	}
	return errs
}

// lateError is the error of a side cut off for answering too late: it
// counts as down (UNAVAILABLE), so the other side's answer stands.
func lateError(wait time.Duration) error {
	return status.Errorf(codes.Unavailable, "no answer within %s of the other side", wait)
}
