package sandbox

import "time"

// awaitEnd waits for done (the sandbox has ended) while enforcing its
// timeout and the caller's cancellation: either calls term (SIGTERM to the
// whole sandbox) and, if done has not come grace later, kill (SIGKILL).
// killNow (a caller's cancellation with ErrKillNow) calls kill at once. It
// records in res why the sandbox was ended. Both launchers share it so that
// they end sandboxes by the same policy.
func awaitEnd(done <-chan struct{}, timeout, grace time.Duration, cancel, killNow <-chan struct{}, term, kill func(), res *Result) {
	var deadline, graceOver <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	terminate := func() {
		term()
		graceOver = time.After(grace)
		deadline, cancel = nil, nil
	}
	for {
		select {
		case <-done:
			return
		case <-deadline:
			res.TimedOut = true
			terminate()
		case <-cancel:
			res.Canceled = true
			terminate()
		case <-killNow:
			res.Canceled, res.Killed = true, true
			deadline, cancel, killNow, graceOver = nil, nil, nil, nil
			kill()
		case <-graceOver:
			res.Killed = true
			graceOver = nil
			kill()
		}
	}
}
