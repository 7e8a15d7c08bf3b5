// Package workerclient is the worker's side of the worker protocol
// (api/workerpb, docs/worker-protocol.md): it registers, heartbeats, runs
// each assignment through a Handler, reports results, obeys Cancel, and
// reconnects on its own, listing the actions it still holds so the
// scheduler can keep or cancel them; a handler asks StillAssigned whether
// its action is still this worker's before it writes the action cache. A
// worker supplies the Handler (fetch inputs, run, upload outputs, write
// the action cache) and calls Run.
//
// Each process registers with a random incarnation token, so that the
// scheduler tells its reconnects from another process given the same
// worker id. Attempts that fail (no connection, a TLS handshake that
// fails, a server that is not a scheduler, a refusal) are logged,
// rate-limited (failureLog), and retried: at once while the scheduler is
// away, ever more slowly while it refuses. SetPaused tells the scheduler
// to send no work while the worker cannot run any.
package workerclient

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/gopool"
)

// Handler runs one assignment and returns its ExecuteResponse (errors during
// the run go in its status). It must return promptly once ctx is cancelled
// (the scheduler sent Cancel, or Run is ending); a nil response then reports
// CANCELLED. Handlers run concurrently, up to Register.concurrency.
type Handler func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse

// Options configure a Client.
type Options struct {
	// Conn reaches the scheduler. Required.
	Conn grpc.ClientConnInterface
	// Register describes the worker: worker_id, platform, concurrency,
	// labels, instance_names. Required; the client fills in running.
	Register *workerpb.Register
	// Handler runs assignments. Required.
	Handler Handler
	// ReconnectDelay is the pause between a broken stream and the next
	// attempt. Default 1s.
	ReconnectDelay time.Duration
	// OnMessage, if set, sees every message from the scheduler after the
	// client acted on it (for logs, metrics and tests). It must not block.
	OnMessage func(*workerpb.SchedulerMessage)
	// Logger gets each failed attempt to register with the scheduler and
	// each end of a session, rate-limited (failureLog). Default: none.
	Logger *slog.Logger
}

// Client runs the worker protocol. Create with New, run with Run.
type Client struct {
	opts   Options
	client workerpb.WorkerServiceClient

	// incarnation is this client's Register.incarnation: random, so a
	// second process with the same worker id is told from a reconnect.
	incarnation string
	failures    *failureLog // used by Run's goroutine only

	mu          sync.Mutex
	paused      bool // SetPaused
	pauseReason string
	stream      workerpb.WorkerService_ConnectClient // nil while disconnected
	held        map[string]*heldAction
	draining    bool
	leaving     bool // this session sent Leaving
	// reconciled is closed, and replaced, each time a session has
	// registered and said which held actions it keeps (keepLocked), for
	// StillAssigned calls waiting between sessions.
	reconciled chan struct{}
	handlers   sync.WaitGroup
	hctx       context.Context // parent of every handler's context; ends after Run
	// handlerPool runs the handlers on goroutines kept for the next
	// assignment, whose stacks have already grown to the handler's depth.
	handlerPool *gopool.Pool
}

// handlerIdle is how long a handler's goroutine waits for the next
// assignment before it exits.
const handlerIdle = time.Minute

// New returns a client; it does nothing until Run.
func New(opts Options) (*Client, error) {
	if opts.Conn == nil || opts.Register == nil || opts.Handler == nil {
		return nil, errors.New("workerclient: Conn, Register and Handler are required")
	}
	if err := workerpb.CheckRegister(opts.Register); err != nil {
		return nil, fmt.Errorf("workerclient: %s", status.Convert(err).Message())
	}
	if opts.ReconnectDelay <= 0 {
		opts.ReconnectDelay = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return nil, fmt.Errorf("workerclient: incarnation token: %w", err)
	}
	return &Client{opts: opts, client: workerpb.NewWorkerServiceClient(opts.Conn), held: map[string]*heldAction{},
		reconciled: make(chan struct{}), handlerPool: gopool.New(handlerIdle),
		incarnation: hex.EncodeToString(token), failures: newFailureLog(opts.Logger, opts.Register.WorkerId)}, nil
}

// Run works until ctx ends, reconnecting whenever the stream breaks. On
// return, every handler has been cancelled and has returned.
//
// When ctx ends while connected, the client gives back every action it
// holds (GiveBack, which the scheduler requeues without counting a retry)
// and closes the stream before it cancels the handlers, so stopping a
// worker never fails or delays a client's action.
func (c *Client) Run(ctx context.Context) error {
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	c.mu.Lock()
	c.hctx = hctx
	c.mu.Unlock()
	refused := 0 // attempts refused in a row (retryDelay)
	for ctx.Err() == nil {
		registered, err := c.session(ctx)
		if registered {
			refused = 0
		}
		if err != nil && ctx.Err() == nil {
			c.failures.failed(err)
			if isRefusal(err) {
				refused++
			} else {
				refused = 0
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(retryDelay(c.opts.ReconnectDelay, refused)):
		}
	}
	c.mu.Lock()
	for name, h := range c.held {
		if h.cancel != nil {
			h.cancel()
		}
		delete(c.held, name)
	}
	c.mu.Unlock()
	hcancel()
	c.handlers.Wait()
	return ctx.Err()
}

// SetPaused says whether the worker can run actions now: a paused worker
// (its runner or storage is down) is assigned nothing new, so it does not
// fail every action it is given while a healthy worker could run them.
// The scheduler hears of a change at once (Heartbeat.paused), and of the
// state at every Register. Actions already held go on.
func (c *Client) SetPaused(paused bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !paused {
		reason = ""
	}
	if c.paused == paused && c.pauseReason == reason {
		return
	}
	c.paused, c.pauseReason = paused, reason
	c.sendLocked(c.heartbeatLocked())
}

// heartbeatLocked is a Heartbeat with the current pause state.
func (c *Client) heartbeatLocked() *workerpb.WorkerMessage {
	return &workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{
		Paused: c.paused, PauseReason: c.pauseReason}}}
}

// Connected reports whether a session is established: the scheduler
// accepted the worker's Register (a connection that is up is not enough:
// it may reach another server, or a scheduler that refuses the worker).
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream != nil
}

// Draining reports whether the scheduler said it will send no more work
// (Drain), and has not taken it back (Undrain).
func (c *Client) Draining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// receive handles the scheduler's messages on stream until it ends:
// assignments start handlers, cancellations cancel them (and make them
// stale: StillAssigned), a drain stops new work (or, while leaving, gives
// everything back), an undrain resumes it. ended is closed when this
// session has ended. It returns the stream's
// end: nil if the scheduler closed it without an error.
func (c *Client) receive(stream workerpb.WorkerService_ConnectClient, ended <-chan struct{}) error {
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		switch k := m.Kind.(type) {
		case *workerpb.SchedulerMessage_Assignment:
			a := k.Assignment
			ref := assignmentRef{c: c, name: a.OperationName, attempt: a.Attempt}
			actx, acancel := context.WithCancel(context.WithValue(c.hctx, assignmentKey{}, ref))
			c.held[a.OperationName] = &heldAction{attempt: a.Attempt, cancel: acancel, session: ended}
			c.handlers.Add(1)
			c.handlerPool.Go(func() { c.execute(actx, acancel, a) })
		case *workerpb.SchedulerMessage_Cancel:
			if h := c.held[k.Cancel.OperationName]; h != nil {
				h.stale = true // the scheduler no longer wants its result
				if h.cancel != nil {
					h.cancel()
				}
			}
		case *workerpb.SchedulerMessage_Drain:
			if c.leaving {
				c.giveBackLocked("worker shutting down")
				_ = c.stream.CloseSend() // only says the worker is done sending; the session ends either way
			} else {
				c.draining = true
			}
		case *workerpb.SchedulerMessage_Undrain:
			c.draining = false
		}
		c.mu.Unlock()
		if c.opts.OnMessage != nil {
			c.opts.OnMessage(m)
		}
	}
}

// session runs one stream until it breaks, or until ctx ends and the
// held actions have been given back. It reports whether the scheduler
// accepted the worker's Register, and why the stream failed or ended
// (what it returns once ctx has ended is of no interest).
func (c *Client) session(ctx context.Context) (registered bool, err error) {
	// The stream outlives ctx by the time it takes to give actions back.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	established := make(chan struct{}) // closed once Registered arrived
	ended := make(chan struct{})
	defer close(ended)
	go c.leaveWhenDone(ctx, cancel, established, ended)
	stream, first, reg, err := c.register(sctx)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	c.stream = stream
	c.keepLocked(first.GetRegistered().GetKept(), ended)
	// The drain state is the scheduler's, per session: a drained worker
	// hears Drain again right after Registered.
	c.draining = false
	// Results finished while disconnected go out now.
	for _, h := range c.held {
		if h.result != nil {
			c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: h.result}})
		}
	}
	if c.paused != reg.Paused || c.pauseReason != reg.PauseReason { // changed while registering
		c.sendLocked(c.heartbeatLocked())
	}
	c.mu.Unlock()
	close(established)
	c.failures.registered()
	if c.opts.OnMessage != nil {
		c.opts.OnMessage(first)
	}
	defer func() {
		c.mu.Lock()
		c.stream = nil
		c.leaving = false
		c.mu.Unlock()
	}()
	interval := first.GetRegistered().GetHeartbeatInterval().AsDuration()
	if interval <= 0 {
		interval = time.Second
	}
	go c.heartbeat(sctx, interval)
	if err := c.receive(stream, ended); err != nil {
		return true, fmt.Errorf("scheduler session ended: %w", err)
	}
	return true, nil
}

// register opens a stream and registers the worker on it. Errors say
// which step failed, with the gRPC status: a connection that cannot be
// made (refused, a TLS handshake that fails), a server that is not a
// scheduler (UNIMPLEMENTED), a scheduler that refuses the worker
// (ALREADY_EXISTS for a worker id in use by another process).
func (c *Client) register(ctx context.Context) (workerpb.WorkerService_ConnectClient, *workerpb.SchedulerMessage, *workerpb.Register, error) {
	// Not WaitForReady: while the connection cannot be made, the call
	// fails with the reason, which Run logs, where it used to wait in
	// silence (a TLS mismatch showed only as CONNECTING).
	stream, err := c.client.Connect(ctx)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connect to the scheduler: %w", err)
	}
	reg := proto.Clone(c.opts.Register).(*workerpb.Register)
	reg.Running = c.Held()
	reg.Incarnation = c.incarnation
	c.mu.Lock()
	reg.Paused, reg.PauseReason = c.paused, c.pauseReason
	c.mu.Unlock()
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: reg}}); err != nil {
		if _, rerr := stream.Recv(); rerr != nil {
			err = rerr // Send says io.EOF; the stream's status says why
		}
		return nil, nil, nil, fmt.Errorf("register with the scheduler: %w", err)
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("register with the scheduler: %w", err)
	}
	if first.GetRegistered() == nil {
		return nil, nil, nil, fmt.Errorf("register with the scheduler: answered %T, not Registered", first.GetKind())
	}
	return stream, first, reg, nil
}

// leaveWhenDone, once ctx ends, says Leaving on an established session
// (the scheduler answers Drain once no assignment can follow, and the
// receive loop then gives everything back) and gives the scheduler 5 s to
// end the stream; a session not yet established is cancelled at once.
func (c *Client) leaveWhenDone(ctx context.Context, cancel context.CancelFunc, established, ended <-chan struct{}) {
	select {
	case <-ended:
		return
	case <-ctx.Done():
	}
	select {
	case <-established:
	default:
		cancel()
		return
	}
	c.mu.Lock()
	c.leaving = true
	c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Leaving{Leaving: &workerpb.Leaving{}}})
	c.mu.Unlock()
	select { // the scheduler ends the stream once it read everything
	case <-ended:
	case <-time.After(5 * time.Second):
		cancel()
	}
}

func (c *Client) heartbeat(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.mu.Lock()
			c.sendLocked(c.heartbeatLocked())
			c.mu.Unlock()
		}
	}
}

func (c *Client) execute(ctx context.Context, cancel context.CancelFunc, a *workerpb.Assignment) {
	defer c.handlers.Done()
	defer cancel()
	resp := c.opts.Handler(ctx, a)
	if resp == nil {
		resp = &repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_CANCELLED), Message: "action cancelled on the worker"}}
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		b, _ = proto.Marshal(&repb.ExecuteResponse{Status: &rpcstatus.Status{Code: int32(code.Code_INTERNAL), Message: "marshal ExecuteResponse: " + err.Error()}})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.held[a.OperationName]
	if h == nil || h.attempt != a.Attempt {
		return
	}
	h.cancel = nil
	h.result = &workerpb.Result{OperationName: a.OperationName, Attempt: a.Attempt, ExecuteResponse: b}
	c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: h.result}})
}

// sendLocked sends on the current stream, if any. A result is forgotten
// once sent; if there is no stream, it goes out after the next Register.
func (c *Client) sendLocked(m *workerpb.WorkerMessage) {
	if c.stream == nil || c.stream.Send(m) != nil {
		return
	}
	if r := m.GetResult(); r != nil {
		delete(c.held, r.OperationName)
	}
}
