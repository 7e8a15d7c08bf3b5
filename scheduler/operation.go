package scheduler

import (
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

// operation is what one client's Execute created. Several operations may
// wait for one execution. Owned by core.
type operation struct {
	name        string
	instance    string
	owner       string // the tenant that created it; only it may see it
	action      digest.Digest
	exec        *execution // nil once done or deleted
	queuedAt    time.Time
	done        bool
	response    *repb.ExecuteResponse // set when done; shared, read-only
	completedAt time.Time
	respBytes   int64      // response's encoded size, counted in core.completedBytes; 0 if an earlier sharer counts it
	released    bool       // retained, then forgotten or deleted: its bytes are no longer counted (core_retention.go)
	nextSharer  *operation // the next retained operation of its tenant sharing its response
	worker      string     // last worker, for metadata
	startedAt   time.Time  // when that worker got it
}

// opView is a consistent copy of an operation's state, taken under the
// scheduler's lock, that the services turn into a longrunning Operation.
type opView struct {
	name      string
	instance  string
	owner     string
	action    digest.Digest
	stage     repb.ExecutionStage_Value
	done      bool
	response  *repb.ExecuteResponse
	worker    string
	queuedAt  time.Time
	startedAt time.Time
}

func (op *operation) view() opView {
	v := opView{
		name:      op.name,
		instance:  op.instance,
		owner:     op.owner,
		action:    op.action,
		done:      op.done,
		response:  op.response,
		worker:    op.worker,
		queuedAt:  op.queuedAt,
		startedAt: op.startedAt,
		stage:     repb.ExecutionStage_COMPLETED,
	}
	if e := op.exec; e != nil && !op.done {
		v.stage = e.stage
		if e.worker != nil {
			v.worker = e.worker.id
			v.startedAt = e.startedAt
		}
	}
	return v
}
