package scheduler

import (
	"context"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/workerpb"
)

// session is one connection of a worker: an unbounded outbox the scheduler
// pushes to under its lock (never blocking), drained by the connection's
// sender. A newer session of the same worker ends the older one.
type session struct {
	s        *Scheduler
	workerID string
	gen      uint64

	mu      sync.Mutex
	pending []*workerpb.SchedulerMessage
	wake    chan struct{} // capacity 1
	done    chan struct{} // closed by end
	endOnce sync.Once
}

func (sess *session) push(m *workerpb.SchedulerMessage) {
	sess.mu.Lock()
	sess.pending = append(sess.pending, m)
	sess.mu.Unlock()
	select {
	case sess.wake <- struct{}{}:
	default:
	}
}

func (sess *session) end() { sess.endOnce.Do(func() { close(sess.done) }) }

// next returns the messages pushed since the last call, waiting for at
// least one. It fails when ctx ends or the session is ended.
func (sess *session) next(ctx context.Context) ([]*workerpb.SchedulerMessage, error) {
	for {
		sess.mu.Lock()
		ms := sess.pending
		sess.pending = nil
		sess.mu.Unlock()
		if len(ms) > 0 {
			return ms, nil
		}
		select {
		case <-sess.wake:
		case <-sess.done:
			return nil, status.Error(codes.Aborted, "worker session replaced by a newer connection or scheduler stopping")
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// connectWorker starts a session for a Register message. The Registered
// answer and any reconciliation are already in the session's outbox.
func (s *Scheduler) connectWorker(reg *workerpb.Register) (*session, error) {
	if reg.GetWorkerId() == "" {
		return nil, status.Error(codes.InvalidArgument, "register.worker_id: must not be empty")
	}
	if reg.Concurrency < 1 {
		return nil, status.Errorf(codes.InvalidArgument, "register.concurrency: %d, must be at least 1", reg.Concurrency)
	}
	for i, p := range reg.Platform {
		if p.GetName() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "register.platform[%d]: name is empty", i)
		}
	}
	sess := &session{s: s, workerID: reg.WorkerId, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.sessions[reg.WorkerId]; old != nil {
		old.end()
	}
	s.sessions[reg.WorkerId] = sess
	sess.push(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{
		LeaseDuration:     durationOrNil(s.cfg.LeaseDuration),
		HeartbeatInterval: durationOrNil(s.cfg.HeartbeatInterval),
	}}})
	sess.gen = s.core.Connect(s.clock.Now(), registration{
		id:        reg.WorkerId,
		platform:  reg.Platform,
		capacity:  int(reg.Concurrency),
		instances: reg.InstanceNames,
		labels:    reg.Labels,
		running:   reg.Running,
	})
	s.log.Info("scheduler: worker connected", "worker", reg.WorkerId, "generation", sess.gen,
		"concurrency", reg.Concurrency, "in_hand", len(reg.Running))
	s.apply()
	return sess, nil
}

// handle applies one message of a session (other than Register).
func (sess *session) handle(m *workerpb.WorkerMessage) error {
	s := sess.s
	var resp *repb.ExecuteResponse
	if r := m.GetResult(); r != nil {
		resp = &repb.ExecuteResponse{}
		if err := proto.Unmarshal(r.ExecuteResponse, resp); err != nil {
			return status.Errorf(codes.InvalidArgument, "result.execute_response of %q: %v", r.OperationName, err)
		}
		resp.CachedResult = false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	switch k := m.Kind.(type) {
	case *workerpb.WorkerMessage_Heartbeat:
		s.core.Heartbeat(now, sess.workerID, sess.gen)
	case *workerpb.WorkerMessage_Result:
		s.logResult(sess.workerID, k.Result.OperationName, resp)
		s.core.Result(now, sess.workerID, sess.gen, k.Result.OperationName, k.Result.Attempt, resp)
	case *workerpb.WorkerMessage_GiveBack:
		s.core.GiveBack(now, sess.workerID, sess.gen, k.GiveBack.OperationName, k.GiveBack.Attempt)
	case *workerpb.WorkerMessage_Leaving:
		s.core.Leave(now, sess.workerID, sess.gen)
	case *workerpb.WorkerMessage_Register:
		return status.Error(codes.InvalidArgument, "register: only the first message of a stream may be a register")
	default:
		return status.Error(codes.InvalidArgument, "empty worker message")
	}
	s.apply()
	return nil
}

// close ends the session; the worker's lease runs on.
func (sess *session) close() {
	s := sess.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.core.Disconnect(s.clock.Now(), sess.workerID, sess.gen)
	s.log.Info("scheduler: worker stream ended", "worker", sess.workerID, "generation", sess.gen)
	if s.sessions[sess.workerID] == sess {
		delete(s.sessions, sess.workerID)
	}
	sess.end()
	s.apply()
}

func workerInfo(w *worker) *workerpb.WorkerInfo {
	return &workerpb.WorkerInfo{
		WorkerId:    w.id,
		Platform:    w.platform,
		Concurrency: int32(w.capacity),
		Running:     int32(len(w.running)),
		Connected:   w.connected,
		Draining:    w.draining,
		Labels:      w.labels,
		LastSeen:    timestamppb.New(w.lastSeen),
	}
}
