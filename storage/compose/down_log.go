package compose

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// downLogInterval is how often one side's failures are logged at most.
const downLogInterval = 10 * time.Second

// downLog reports a mirror side's failures at most once per interval per
// side, with the number of failures since the last line: while a side is
// down every call fails over to the other, and a line per call would
// drown the log. Safe for concurrent use.
type downLog struct {
	log    *slog.Logger
	names  [2]string
	last   [2]atomic.Int64 // time of the last line, Unix nanoseconds
	silent [2]atomic.Int64 // failures not logged since
}

func newDownLog(logger *slog.Logger, a, b string) *downLog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &downLog{log: logger, names: [2]string{a, b}}
}

// warn logs msg for side unless it logged one less than an interval ago.
func (l *downLog) warn(side int, msg, what string, err error) {
	now := time.Now().UnixNano()
	last := l.last[side].Load()
	if now-last < int64(downLogInterval) || !l.last[side].CompareAndSwap(last, now) {
		l.silent[side].Add(1)
		return
	}
	l.log.Warn(msg, "what", what, "backend", l.names[side], "error", err, "failures_not_logged", l.silent[side].Swap(0))
}
