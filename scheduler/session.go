package scheduler

import (
	"context"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/workerpb"
)

// session is one connection of a worker: an unbounded outbox the scheduler
// pushes to under its lock (never blocking), drained by the connection's
// sender. A newer session of the same worker process ends the older one;
// one of another process is refused while the older one is live
// (replaceSession).
type session struct {
	s        *Scheduler
	workerID string
	gen      uint64
	// incarnation is Register.incarnation, the worker process's token
	// ("" from older workers); peer is the connection's address, for logs.
	incarnation string
	peer        string
	// stream is the stream's context, done as soon as the stream ends,
	// before close has run.
	stream context.Context

	mu      sync.Mutex
	pending []*workerpb.SchedulerMessage
	wake    chan struct{} // capacity 1
	done    chan struct{} // closed by end
	endOnce sync.Once
	why     string // why the session ended, set by end before done closes
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

// end ends the session; the worker is told why (the first reason given).
func (sess *session) end(why string) {
	sess.endOnce.Do(func() {
		sess.why = why
		close(sess.done)
	})
}

// open reports whether neither the scheduler nor the stream has ended the
// session.
func (sess *session) open() bool {
	select {
	case <-sess.done:
		return false
	default:
		return sess.stream.Err() == nil
	}
}

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
			return nil, status.Error(codes.Aborted, "worker session ended: "+sess.why)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// connectWorker starts a session for a Register message received on the
// stream whose context is ctx. The Registered answer and any
// reconciliation are already in the session's outbox.
func (s *Scheduler) connectWorker(ctx context.Context, reg *workerpb.Register) (*session, error) {
	if err := workerpb.CheckRegister(reg); err != nil {
		return nil, err
	}
	sess := &session{s: s, workerID: reg.WorkerId, incarnation: reg.Incarnation, peer: peerAddr(ctx), stream: ctx,
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.sessions[reg.WorkerId]; old != nil {
		if err := s.replaceSession(s.clock.Now(), old, sess); err != nil {
			return nil, err
		}
	}
	s.sessions[reg.WorkerId] = sess
	sess.gen = s.core.Connect(s.clock.Now(), registration{
		id:          reg.WorkerId,
		platform:    reg.Platform,
		capacity:    int(reg.Concurrency),
		instances:   reg.InstanceNames,
		labels:      reg.Labels,
		running:     reg.Running,
		paused:      reg.Paused,
		pauseReason: pauseReason(reg.PauseReason),
	})
	// Registered goes first, naming what the reconciliation kept; the
	// Cancels and assignments of Connect, still in the core's effects,
	// follow it (apply).
	kept := s.core.Kept(reg.WorkerId, sess.gen, reg.Running)
	sess.push(&workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Registered{Registered: &workerpb.Registered{
		LeaseDuration:     durationOrNil(s.cfg.LeaseDuration),
		HeartbeatInterval: durationOrNil(s.cfg.HeartbeatInterval),
		Kept:              kept,
	}}})
	s.log.Info("scheduler: worker connected", "worker", reg.WorkerId, "generation", sess.gen,
		"concurrency", reg.Concurrency, "in_hand", len(reg.Running), "kept", len(kept), "peer", sess.peer, "paused", reg.Paused)
	s.apply()
	return sess, nil
}

// replaceSession ends old, the session of a worker that registers again
// on sess's stream. Two processes given the same worker id used to end
// each other's session at every reconnect, each time failing the actions
// the other held ("reconnected without it"), and nothing said why. So
// while old is live (its stream open, its lease running), a Register from
// another process (another incarnation) is refused with ALREADY_EXISTS,
// naming both peers in the log; the worker retries, and gets in once old
// has gone. A reconnect of the same process replaces old at once (its
// stream broke where the scheduler had not seen it yet), and so does any
// Register once old is dead or closing: a restarted worker is never kept
// out. Without incarnations (older workers) old is replaced, with a
// warning if it was live.
func (s *Scheduler) replaceSession(now time.Time, old, sess *session) error {
	live := old.open() && s.core.Live(now, old.workerID, old.gen)
	switch {
	case !live:
	case old.incarnation != "" && sess.incarnation != "" && old.incarnation != sess.incarnation:
		s.log.Warn("scheduler: refused a second worker process with the id of a connected one; give each worker its own id",
			"worker", sess.workerID, "connected_peer", old.peer, "refused_peer", sess.peer)
		return status.Errorf(codes.AlreadyExists, "worker id %q is in use by another worker process, connected from %s: give each worker its own id (paddock worker --id); retry once that one has gone",
			sess.workerID, old.peer)
	case old.incarnation == "" || sess.incarnation == "":
		s.log.Warn("scheduler: a live worker session was replaced by a new connection; unless the worker reconnected, two workers share this id",
			"worker", sess.workerID, "old_peer", old.peer, "new_peer", sess.peer)
	default:
		s.log.Info("scheduler: worker reconnected before its previous stream was seen to end", "worker", sess.workerID,
			"old_peer", old.peer, "new_peer", sess.peer)
	}
	old.end("this worker id connected again on another stream")
	return nil
}

// peerAddr is the address of the stream's client, or "" if unknown.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
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
		s.core.Pause(now, sess.workerID, sess.gen, k.Heartbeat.Paused, pauseReason(k.Heartbeat.PauseReason))
	case *workerpb.WorkerMessage_Result:
		// Logged before the core takes it, which may requeue the
		// execution and dispatch its next attempt.
		if e := s.core.Reported(sess.workerID, sess.gen, k.Result.OperationName, k.Result.Attempt); e == nil {
			s.logStaleResult(sess.workerID, k.Result, resp)
		} else if !e.cancelled {
			if bad := checkWorkerResult(sess.workerID, e, resp); bad != nil {
				resp = bad
			}
			s.logResult(sess.workerID, e, resp)
		}
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
	sess.end("the stream ended")
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
		Paused:      w.paused,
		PauseReason: w.pauseReason,
	}
}
