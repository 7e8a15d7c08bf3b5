package scheduler

import (
	"fmt"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// An action whose platform no worker offers (OSFamily=Windows on a Linux
// farm, a misspelt pool) was queued until every client gave up on it: its
// Execute stream only repeated QUEUED. REv2 lists "no worker being
// available" among Execute's FAILED_PRECONDITION errors, which a client
// reports and may fix; other farms fail such actions after a while too.

// failUnserved completes, with FAILED_PRECONDITION, the executions of each
// queue that has had no worker serving it for NoWorkerTimeout. A Tick
// starts the wait when it first finds a queue with executions and no
// worker, so it may end up to one tick late.
func (c *core) failUnserved(now time.Time) {
	if c.cfg.NoWorkerTimeout <= 0 {
		return
	}
	for _, q := range sortedValues(c.queues) {
		if q.size == 0 || servedByOneStaying(q) {
			q.unservedSince = time.Time{}
			continue
		}
		if q.unservedSince.IsZero() {
			q.unservedSince = now
			continue
		}
		if now.Sub(q.unservedSince) < c.cfg.NoWorkerTimeout {
			continue
		}
		why := fmt.Sprintf("no worker serving instance %q with platform {%s} has been connected for %s (no_worker_timeout); check the Action's platform properties",
			q.instance, routingText(q.routing), c.cfg.NoWorkerTimeout)
		for e := q.pop(); e != nil; e = q.pop() {
			c.countQueued(q, -e.weight())
			c.note("action %s (%s): %s; completed with FAILED_PRECONDITION", e.key.action, e.id, why)
			c.finish(now, e, &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_FAILED_PRECONDITION), Message: why}})
		}
		q.unservedSince = time.Time{}
	}
}

// servedByOneStaying reports whether a worker that has not said it is
// leaving serves q. A worker that sent Leaving is shutting down: during
// its reconnect_grace it still counted, and no_worker_timeout fired that
// much late after the last workers of a platform left cleanly. A worker
// that lost its connection without saying so still counts: it may be
// back within its grace.
func servedByOneStaying(q *queue) bool {
	for _, w := range q.workers {
		if !w.leaving {
			return true
		}
	}
	return false
}

// routingText shows routing properties as name=value, comma-separated.
func routingText(routing []*workerpb.Property) string {
	parts := make([]string, len(routing))
	for i, p := range routing {
		parts[i] = p.Name + "=" + p.Value
	}
	return strings.Join(parts, ", ")
}
