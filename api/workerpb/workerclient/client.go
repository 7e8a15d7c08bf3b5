// Package workerclient is the worker's side of the worker protocol
// (api/workerpb, docs/worker-protocol.md): it registers, heartbeats, runs
// each assignment through a Handler, reports results, obeys Cancel, and
// reconnects on its own, listing the actions it still holds so the
// scheduler can keep or cancel them. A worker supplies the Handler (fetch
// inputs, run, upload outputs, write the action cache) and calls Run.
package workerclient

import (
	"context"
	"errors"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
)

// streamWindow is the flow-control window of a connection that carries
// only the worker protocol, per stream and per connection. Set explicitly,
// it turns off gRPC's bandwidth-delay estimation, which pings the peer
// whenever a message arrives and no ping is outstanding: a ping and its
// answer for every assignment. The protocol's messages are small.
const streamWindow = 1 << 20

// DialOptions are gRPC options for a connection to the scheduler that
// carries only the worker protocol (not storage traffic), besides the
// caller's transport credentials.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStaticStreamWindowSize(streamWindow), grpc.WithStaticConnWindowSize(streamWindow)}
}

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
}

// Client runs the worker protocol. Create with New, run with Run.
type Client struct {
	opts   Options
	client workerpb.WorkerServiceClient

	mu       sync.Mutex
	stream   workerpb.WorkerService_ConnectClient // nil while disconnected
	held     map[string]*heldAction
	draining bool
	leaving  bool // this session sent Leaving
	handlers sync.WaitGroup
	hctx     context.Context // parent of every handler's context; ends after Run
}

// heldAction is an action the worker holds: running, or finished with a
// result not yet delivered.
type heldAction struct {
	attempt int32
	cancel  context.CancelFunc
	result  *workerpb.Result
}

// New returns a client; it does nothing until Run.
func New(opts Options) (*Client, error) {
	if opts.Conn == nil || opts.Register == nil || opts.Handler == nil {
		return nil, errors.New("workerclient: Conn, Register and Handler are required")
	}
	if opts.Register.WorkerId == "" || opts.Register.Concurrency < 1 {
		return nil, errors.New("workerclient: Register needs a worker_id and a concurrency of at least 1")
	}
	if opts.ReconnectDelay <= 0 {
		opts.ReconnectDelay = time.Second
	}
	return &Client{opts: opts, client: workerpb.NewWorkerServiceClient(opts.Conn), held: map[string]*heldAction{}}, nil
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
	for ctx.Err() == nil {
		c.session(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(c.opts.ReconnectDelay):
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

// giveBackLocked returns every held action to the scheduler and forgets it;
// the handlers' eventual results are then dropped.
func (c *Client) giveBackLocked(reason string) {
	for name, h := range c.held {
		if h.result != nil {
			c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: h.result}})
		} else {
			c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_GiveBack{GiveBack: &workerpb.GiveBack{
				OperationName: name, Attempt: h.attempt, Reason: reason}}})
		}
		if h.cancel != nil {
			h.cancel()
		}
		delete(c.held, name)
	}
}

// Holding reports whether the worker holds the named action.
func (c *Client) Holding(operationName string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[operationName] != nil
}

// Held lists the actions the worker holds (running, or finished with the
// result not yet delivered).
func (c *Client) Held() []*workerpb.InHand {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*workerpb.InHand, 0, len(c.held))
	for name, h := range c.held {
		out = append(out, &workerpb.InHand{OperationName: name, Attempt: h.attempt})
	}
	return out
}

// Connected reports whether a session is established.
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

// sessionKey keys, in a handler's context, the channel closed when the
// session that assigned the action ended (SessionEnded).
type sessionKey struct{}

// SessionEnded reports whether the scheduler session that assigned the
// action of ctx (a Handler's context) has ended: the stream broke, or the
// scheduler ended it, as it does when the worker's lease ran out and the
// action went to another worker. The action's result still goes to the
// scheduler, which takes it only if the action is still this worker's;
// what the handler does outside the protocol on the strength of holding
// the action, writing the action cache, it should then leave undone. A
// context from elsewhere has no session: false.
func SessionEnded(ctx context.Context) bool {
	ended, ok := ctx.Value(sessionKey{}).(<-chan struct{})
	if !ok {
		return false
	}
	select {
	case <-ended:
		return true
	default:
		return false
	}
}

// receive handles the scheduler's messages on stream until it ends:
// assignments start handlers, cancellations cancel them, a drain stops new
// work (or, while leaving, gives everything back), an undrain resumes it.
// ended is closed when this session has ended.
func (c *Client) receive(stream workerpb.WorkerService_ConnectClient, ended <-chan struct{}) {
	for {
		m, err := stream.Recv()
		if err != nil {
			return
		}
		c.mu.Lock()
		switch k := m.Kind.(type) {
		case *workerpb.SchedulerMessage_Assignment:
			a := k.Assignment
			actx, acancel := context.WithCancel(context.WithValue(c.hctx, sessionKey{}, ended))
			c.held[a.OperationName] = &heldAction{attempt: a.Attempt, cancel: acancel}
			c.handlers.Add(1)
			go c.execute(actx, acancel, a)
		case *workerpb.SchedulerMessage_Cancel:
			if h := c.held[k.Cancel.OperationName]; h != nil && h.cancel != nil {
				h.cancel()
			}
		case *workerpb.SchedulerMessage_Drain:
			if c.leaving {
				c.giveBackLocked("worker shutting down")
				c.stream.CloseSend()
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
// held actions have been given back.
func (c *Client) session(ctx context.Context) {
	// The stream outlives ctx by the time it takes to give actions back.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	established := make(chan struct{}) // closed once Registered arrived
	ended := make(chan struct{})
	defer close(ended)
	go func() {
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
		// Leaving; the scheduler answers Drain once no assignment can
		// follow, and the receive loop then gives everything back.
		c.mu.Lock()
		c.leaving = true
		c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Leaving{Leaving: &workerpb.Leaving{}}})
		c.mu.Unlock()
		select { // the scheduler ends the stream once it read everything
		case <-ended:
		case <-time.After(5 * time.Second):
			cancel()
		}
	}()
	stream, err := c.client.Connect(sctx, grpc.WaitForReady(true))
	if err != nil {
		return
	}
	reg := proto.Clone(c.opts.Register).(*workerpb.Register)
	reg.Running = nil
	reg.Running = c.Held()
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Register{Register: reg}}); err != nil {
		return
	}
	first, err := stream.Recv()
	if err != nil || first.GetRegistered() == nil {
		return
	}
	c.mu.Lock()
	c.stream = stream
	// The drain state is the scheduler's, per session: a drained worker
	// hears Drain again right after Registered.
	c.draining = false
	// Results finished while disconnected go out now.
	for _, h := range c.held {
		if h.result != nil {
			c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: h.result}})
		}
	}
	c.mu.Unlock()
	close(established)
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
	c.receive(stream, ended)
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
			c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Heartbeat{Heartbeat: &workerpb.Heartbeat{}}})
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
