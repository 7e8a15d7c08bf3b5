package statuspage

import (
	"context"
	"strings"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sync/errgroup"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
)

// maxMessageBytes bounds the Action, Command and Directory protos read.
const maxMessageBytes = 16 << 20

// summary is what an operation row shows of its action: the start of its
// command line and its platform, read from the CAS.
type summary struct {
	Args     string // the first arguments, shortened
	Platform string
}

// summaries caches each action's summary, so a page that refreshes every
// few seconds reads each Action and Command from the CAS once. It holds at
// most max entries and starts afresh when full (actions are immutable, so
// the only cost of forgetting is a re-read).
type summaries struct {
	cas storage.BlobStore
	max int

	mu sync.Mutex
	m  map[digest.Digest]summary
}

func newSummaries(cas storage.BlobStore, max int) *summaries {
	return &summaries{cas: cas, max: max, m: map[digest.Digest]summary{}}
}

// get returns the summary of action d of instance (read from the
// instance's partition of the CAS).
func (s *summaries) get(ctx context.Context, instance string, d digest.Digest) summary {
	s.mu.Lock()
	sum, ok := s.m[d]
	s.mu.Unlock()
	if ok {
		return sum
	}
	sum, err := s.load(storage.WithInstance(ctx, instance), d)
	if err != nil {
		return summary{Args: "(action not readable: " + err.Error() + ")"}
	}
	s.mu.Lock()
	if len(s.m) >= s.max {
		s.m = map[digest.Digest]summary{}
	}
	s.m[d] = sum
	s.mu.Unlock()
	return sum
}

// prefetch loads the summaries of ds not cached yet, a few at a time, so
// a page of rows over a remote CAS costs a few round trips, not one each.
func (s *summaries) prefetch(ctx context.Context, ops []scheduler.OperationStatus) {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, op := range ops {
		g.Go(func() error { s.get(ctx, op.Instance, op.Action); return nil })
	}
	_ = g.Wait() // every task returns nil: a summary that fails to load is shown as missing
}

func (s *summaries) load(ctx context.Context, d digest.Digest) (summary, error) {
	action := &repb.Action{}
	if err := storage.GetProto(ctx, s.cas, d, action, maxMessageBytes); err != nil {
		return summary{}, err
	}
	cd, err := digest.FromProto(d.Function(), action.CommandDigest, "command_digest")
	if err != nil {
		return summary{}, err
	}
	cmd := &repb.Command{}
	if err := storage.GetProto(ctx, s.cas, cd, cmd, maxMessageBytes); err != nil {
		return summary{}, err
	}
	return summary{Args: shortArgs(cmd.Arguments, 6, 200), Platform: platformOf(action, cmd)}, nil
}

// shortArgs joins the first n arguments and cuts the result at max bytes.
func shortArgs(args []string, n, max int) string {
	more := len(args) > n
	s := strings.Join(visibleAll(args[:min(n, len(args))]), " ")
	if len(s) > max {
		s, more = s[:max], true
	}
	if more {
		s += " …"
	}
	return s
}

// platformOf is the action's platform (Command.platform for REv2 2.0
// clients) as NAME=VALUE pairs.
func platformOf(a *repb.Action, c *repb.Command) string {
	p := a.GetPlatform()
	if len(p.GetProperties()) == 0 {
		p = c.GetPlatform()
	}
	parts := make([]string, 0, len(p.GetProperties()))
	for _, pr := range p.GetProperties() {
		parts = append(parts, pr.Name+"="+pr.Value)
	}
	return strings.Join(parts, ", ")
}
