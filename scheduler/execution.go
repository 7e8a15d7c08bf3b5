package scheduler

import (
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// dedupKey identifies executions that may be shared: same instance, same
// action digest (the digest covers the command, inputs, platform and
// salt), same tenant. Tenants that list the same scope share its names
// and its action cache, but not executions in flight: an execution runs
// in its image with the registry credentials of the tenant that queued
// it, so a tenant the registry refuses made the other's identical
// Execute fail PERMISSION_DENIED, and the other way round one got the
// uncached result (a failed test's output) of an action in an image
// only the other may pull (outside probe).
type dedupKey struct {
	instance string
	owner    string // the tenant that queued it ("" without a policy)
	action   digest.Digest
}

// execution is one run of an action, shared by every operation waiting for
// it (deduplication). Owned by core; never touched outside its lock.
type execution struct {
	id        string // name of the first operation; the worker protocol's operation_name
	key       dedupKey
	cacheable bool
	// private marks a cacheable execution that later Executes do not
	// join: it was queued for a skip_cache_lookup request while an
	// identical one was already past QUEUED, which stays the one others
	// join (core.inflight). Its result still goes to the action cache.
	private    bool
	spec       actionSpec
	invocation string
	priority   int32
	queue      *queue

	// Queue membership: bucket is non-nil while queued; qgen invalidates
	// stale queue entries.
	bucket *bucket
	qgen   uint32

	stage     repb.ExecutionStage_Value
	worker    *worker // while EXECUTING
	attempt   int32   // dispatches so far
	retries   int     // requeues after a lost worker
	cancelled bool    // nobody waits any more; being killed on its worker
	// adoptable: queued when the scheduler recovered from its journal, and
	// not dispatched since. Only such an execution may be adopted (adopt):
	// its dispatch record may have died with the old process. Not
	// journalled; set again at each recovery.
	adoptable bool
	// avoid is the worker whose failure or loss requeued this execution:
	// its next attempt goes elsewhere if it can, until avoidUntil
	// (core_requeue.go). Empty otherwise; not journalled.
	avoid      string
	avoidUntil time.Time
	waiters    []*operation
	queuedAt   time.Time
	startedAt  time.Time
}

// actionSpec is what a worker needs to run an action, beyond its digest.
// Kept compact (no protos) because every queued execution holds one; the
// Assignment message is built at dispatch.
type actionSpec struct {
	command         digest.Digest
	inputRoot       digest.Digest
	platform        []*workerpb.Property // effective platform, sorted; read-only
	timeout         time.Duration
	doNotCache      bool
	requestMetadata []byte
	// workingDir is the Command's working directory, which a worker's
	// result is checked against (checkWorkerResult); journalled since
	// record version 3 and snapshot version 4. Of an execution from an
	// older journal it is not known (workingDirKnown false).
	workingDir      string
	workingDirKnown bool
}

func protoDigest(d digest.Digest) *workerpb.Digest {
	return &workerpb.Digest{Hash: d.Hash(), SizeBytes: d.SizeBytes()}
}

// joins reports whether submission s may join e, an identical cacheable
// execution in flight. Any may while e is queued. Past that, a worker may
// already have written e's result to the action cache (it does so before
// reporting it), and REv2 requires that the result of an Execute with
// skip_cache_lookup was not visible before it was sent: such a request
// gets an execution of its own.
func (e *execution) joins(s submission) bool {
	return e.stage == repb.ExecutionStage_QUEUED || !s.skipCacheLookup
}

func (e *execution) detach(op *operation) {
	for i, w := range e.waiters {
		if w == op {
			e.waiters = append(e.waiters[:i], e.waiters[i+1:]...)
			break
		}
	}
	op.exec = nil
}
