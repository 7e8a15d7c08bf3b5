package workerclient

import (
	"log/slog"
	"time"
)

// failureLogEvery is how often the same failure is logged again while it
// lasts.
const failureLogEvery = 30 * time.Second

// failureLog logs the client's failed attempts to hold a session with the
// scheduler. They used to go unsaid: a worker pointed at a server that is
// not a scheduler, or with TLS settings the scheduler does not accept,
// logged nothing while it retried every second, forever. Each attempt is
// logged now, but not every second: a failure when its error differs from
// the last one logged, the same one again failureLogEvery later (with the
// number of attempts between), and, after failures were logged, the next
// registration. Used by Run's goroutine only.
type failureLog struct {
	logger   *slog.Logger
	workerID string
	now      func() time.Time

	last     string    // the error last logged
	lastAt   time.Time // when
	repeats  int       // attempts failed with last since, not logged
	reported bool      // a failure was logged since the last registration
}

func newFailureLog(logger *slog.Logger, workerID string) *failureLog {
	return &failureLog{logger: logger, workerID: workerID, now: time.Now}
}

// failed notes a failed attempt (err says which step, with its gRPC
// status), logging it unless the same error was logged less than
// failureLogEvery ago.
func (f *failureLog) failed(err error) {
	msg, now := err.Error(), f.now()
	if msg == f.last && now.Sub(f.lastAt) < failureLogEvery {
		f.repeats++
		return
	}
	attrs := []any{"worker", f.workerID, "error", msg}
	if msg == f.last && f.repeats > 0 {
		attrs = append(attrs, "attempts_since_last_logged", f.repeats)
	}
	f.logger.Warn("workerclient: no session with the scheduler; retrying", attrs...)
	f.last, f.lastAt, f.repeats, f.reported = msg, now, 0, true
}

// registered notes a registration; it is logged if failures were.
func (f *failureLog) registered() {
	if f.reported {
		f.logger.Info("workerclient: registered with the scheduler", "worker", f.workerID)
		f.reported = false
	}
}
