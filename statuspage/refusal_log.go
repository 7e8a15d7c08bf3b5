package statuspage

import (
	"log/slog"
	"sync"
	"time"
)

// refusalLog logs refused sign-ins at most once a minute at Info, with how
// many it passed over since, and every one at Debug: a client sending bad
// tokens wrote an Info line for each (3,000 a second on one connection),
// flooding the log without any credentials.
type refusalLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// refusalLogInterval is how often a refused sign-in is logged at Info.
const refusalLogInterval = time.Minute

func (l *refusalLog) refused(logger *slog.Logger, now time.Time, remote, reason string) {
	l.mu.Lock()
	if now.Sub(l.last) < refusalLogInterval {
		l.suppressed++
		l.mu.Unlock()
		logger.Debug("status page: sign-in refused", "remote", remote, "reason", reason)
		return
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	l.mu.Unlock()
	logger.Info("status page: sign-in refused", "remote", remote, "reason", reason, "refused_since_last_logged", n)
}
