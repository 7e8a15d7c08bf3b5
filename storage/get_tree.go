package storage

import (
	"context"
	"encoding/base64"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/rev2"
)

// defaultTreePageSize is how many directories one GetTree response carries
// when the client sets no page_size; responses also stop short of
// streamChunkBytes.
const defaultTreePageSize = 10000

// maxTreeWalk bounds the directories one GetTree call walks, those before
// its page token included. A page resumes by walking again from the root,
// and the walk remembers every directory it has seen, so a small request
// for the last page of a tree of many distinct directories costs the
// server the whole tree: ten such calls at once on a tree of 200,000
// directories took `paddock up` from 26 MB to 2.1 GB, and more would have
// had the kernel kill the farm. At the bound a walk holds about 30 MB and
// takes a few seconds of one core; a larger tree is RESOURCE_EXHAUSTED.
const maxTreeWalk = 200_000

// TreeWalkSlots is how many walks of a whole tree run at once (GetTree
// here, the asset API's tree checks); more wait for a slot. Half the
// cores, so that walks never take the whole machine.
func TreeWalkSlots() int {
	return max(1, runtime.GOMAXPROCS(0)/2)
}

// treeCallSlots is how many GetTree calls are in progress at once, each
// walking (holding one of TreeWalkSlots) or sending a page to its client
// (holding none: a client that reads its pages slowly, or not at all, held
// the walk slot while its Send waited, and every other GetTree waited
// behind it). It bounds the memory of the walks (their seen sets, up to
// about 30 MB each at maxTreeWalk); more calls wait. A tenant of the
// policy, or without one a connection (shareOf), holds at most half of
// them (TenantSlots): a call holds its slot while its page waits for the
// client, and one tenant's eight calls it never read held every slot, and
// every other tenant's GetTree waited out its deadline for as long as
// that tenant liked.
func treeCallSlots() int {
	return 4 * max(TreeWalkSlots(), 2)
}

// maxTreePageWait bounds how long a GetTree page waits for its client to
// take it (gRPC takes a page once the client has read most of the one
// before); past it the call ends with RESOURCE_EXHAUSTED and frees its
// slot. A page is at most streamChunkBytes, so a client that reads gets
// each well within it, even at 200 kbit/s. Unbounded, a client that
// stopped reading held its slot as long as it kept its connection, which
// any call on it kept alive (grpclimit's stall reaper counts every write
// on the connection as progress).
const maxTreePageWait = time.Minute

// take takes a token of slots, waiting for one as long as ctx lasts.
func take(ctx context.Context, slots chan struct{}) error {
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// GetTree walks the tree breadth first, skipping directories already seen
// and ones missing from the CAS (as the spec asks). A page token names the
// directory the next page starts with, and its position in that walk,
// which is deterministic for a given root and CAS: a client can resume
// from any response's next_page_token. The walk resumes at that directory
// wherever it now stands: counted by position alone, a directory evicted
// from an earlier page moved every later one a place back, and the page
// after the token left out one that was present. A token whose directory
// the walk no longer reaches resumes with the whole present tree. The walk
// queues digests, not directories: each is read when its turn comes and
// dropped once sent.
func (s *casServer) GetTree(req *repb.GetTreeRequest, stream repb.ContentAddressableStorage_GetTreeServer) error {
	ctx, fn, err := requestScope(stream.Context(), req.InstanceName, req.DigestFunction)
	if err != nil {
		return err
	}
	root, err := digest.FromProto(fn, req.RootDigest, "root_digest")
	if err != nil {
		return err
	}
	// Unset, the function is the root's (inferred from its hash length, as
	// REv2 says), and every directory below is held to it (walkTree): a
	// tree is hashed with one function, not one guess per child.
	pageSize, tok, err := treePaging(req)
	if err != nil {
		return err
	}
	release, err := s.treeCalls.take(ctx, shareOf(ctx))
	if err != nil {
		return err
	}
	defer release()
	if err := take(ctx, s.treeWalks); err != nil {
		return err
	}
	p := treePager{stream: stream, pageSize: pageSize, ctx: ctx, walks: s.treeWalks, holding: true, wait: s.treePageWait()}
	defer p.letGo()
	reached, err := s.walkTree(ctx, &p, root, tok)
	if err == nil && !reached && tok.next != "" {
		// The token's directory is no longer in the walk: an ancestor of it
		// was evicted (or the token is another root's). Where the client
		// stopped cannot be told, so the rest is the whole present tree
		// again; a directory may come twice, but none present is left out.
		_, err = s.walkTree(ctx, &p, root, treeToken{})
	}
	if err != nil {
		return err
	}
	return p.finish()
}

// walkTree walks root's tree breadth first and adds to p each directory
// from where tok resumes; it reports whether that place was reached (a
// token's directory may no longer be in the tree).
func (s *casServer) walkTree(ctx context.Context, p *treePager, root digest.Digest, tok treeToken) (reached bool, err error) {
	fn := root.Function()
	seen := map[digest.Digest]bool{root: true}
	queue := []digest.Digest{root}
	started := tok == treeToken{}
	for pos := 0; len(queue) > 0; {
		if err := ctx.Err(); err != nil {
			return started, status.FromContextError(err).Err()
		}
		d := queue[0]
		queue = queue[1:]
		started = started || d.String() == tok.next
		dir := &repb.Directory{}
		if err := GetProto(ctx, s.opts.CAS, d, dir, s.maxTreeDirectoryBytes()); err != nil {
			// Found corrupt (and removed by the store) is missing too.
			if !rev2.Gone(err) {
				return started, err
			}
			if d == root {
				return started, status.Errorf(codes.NotFound, "root_digest %s: directory not found", root)
			}
			continue // missing below the root: left out, as the spec allows
		}
		if pos == maxTreeWalk {
			return started, status.Errorf(codes.InvalidArgument, "tree %s has more than %d directories, more than this server walks for one GetTree call", root, maxTreeWalk)
		}
		if queue, err = appendNewChildren(queue, fn, root, dir, seen); err != nil {
			return started, err
		}
		started = started || (tok.next == "" && pos >= tok.pos)
		if started {
			if err := p.add(dir, d, pos); err != nil {
				return started, err
			}
		}
		if pos++; pos%treeWalkTurn == 0 {
			if err := p.yield(); err != nil {
				return started, err
			}
		}
	}
	return started, nil
}

// treePager gathers the directories of a GetTree walk into responses.
type treePager struct {
	stream    repb.ContentAddressableStorage_GetTreeServer
	pageSize  int
	page      []*repb.Directory
	pageBytes int
	// ctx is the call's; walks the walk slots, one of which the pager
	// holds (walking) unless it is sending.
	ctx     context.Context
	walks   chan struct{}
	holding bool
	// wait bounds how long a page waits for the client (maxTreePageWait).
	wait time.Duration
}

// send sends resp with the walk slot let go, so that another walk runs
// while the client takes its time, and takes the slot again to go on.
func (p *treePager) send(resp *repb.GetTreeResponse) error {
	if err := p.sendPage(resp); err != nil {
		return err
	}
	if err := take(p.ctx, p.walks); err != nil {
		return err
	}
	p.holding = true
	return nil
}

// sendPage sends resp, holding no walk slot, once the connection's send
// backlog has room for it (grpclimit.WaitToSend), waiting at most p.wait
// for both. gRPC's Send takes no deadline and waits for as long as the
// client does not read, so it runs in a goroutine of its own; when the
// wait runs out, the handler returns, and gRPC then cancels the stream's
// context, which ends that Send.
func (p *treePager) sendPage(resp *repb.GetTreeResponse) error {
	p.letGo()
	ctx, cancel := context.WithTimeout(p.ctx, p.wait)
	defer cancel()
	if err := grpclimit.WaitToSend(ctx, int64(proto.Size(resp))); err != nil {
		return p.waitedOut("for room among the responses queued to its connection and to the server's")
	}
	sent := make(chan error, 1)
	go func() { sent <- p.stream.Send(resp) }()
	select {
	case err := <-sent:
		return err
	case <-ctx.Done():
		return p.waitedOut("for the client to read the pages before it")
	}
}

// waitedOut is the error of a page that waited for what past p.wait, or
// the call's own when it ended meanwhile. It is RESOURCE_EXHAUSTED, not
// DEADLINE_EXCEEDED: the stream is not reset, so the pages gRPC holds
// stay queued for the client, and grpclimit takes a call that ends
// DEADLINE_EXCEEDED to have had its queued bytes dropped, and would stop
// counting them in the connection's send backlog.
func (p *treePager) waitedOut(what string) error {
	if err := p.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.ResourceExhausted, "a GetTree page waited %v, the longest one may, %s; the call is ended (resume it from the last next_page_token received)", p.wait, what)
}

// treeWalkTurn is how many directories a walk reads in one turn of its
// slot. Holding it for a whole walk (200,000 directories, or a resumed
// page's walk to its token, which sends nothing on the way), one tenant's
// few calls had every other tenant's GetTree wait, for 32 s in a test on
// two cores (one slot); now they take turns.
const treeWalkTurn = 256

// yield gives the walk slot to a call waiting for one, if any, and takes
// one back in turn (a channel's waiting senders are served in order).
func (p *treePager) yield() error {
	p.letGo()
	if err := take(p.ctx, p.walks); err != nil {
		return err
	}
	p.holding = true
	return nil
}

// letGo gives back the walk slot, if the pager holds it.
func (p *treePager) letGo() {
	if p.holding {
		<-p.walks
		p.holding = false
	}
}

// add adds directory d (dir) at walk position pos, first sending the page
// before it if dir would make that page too long.
func (p *treePager) add(dir *repb.Directory, d digest.Digest, pos int) error {
	size := proto.Size(dir)
	if len(p.page) > 0 && (len(p.page) >= p.pageSize || p.pageBytes+size > streamChunkBytes) {
		token := base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(pos) + " " + d.String()))
		if err := p.send(&repb.GetTreeResponse{Directories: p.page, NextPageToken: token}); err != nil {
			return err
		}
		p.page, p.pageBytes = nil, 0
	}
	p.page = append(p.page, dir)
	p.pageBytes += size
	return nil
}

// finish sends the last response, without a token; it is empty only when
// the page token pointed past the end of the walk.
func (p *treePager) finish() error {
	return p.sendPage(&repb.GetTreeResponse{Directories: p.page})
}

// treePageOverhead is what a page adds to its one Directory at the most:
// the field's tag and length, and the next page's token.
const treePageOverhead = 1 << 10

// maxTreeDirectoryBytes is the largest Directory GetTree reads: one that
// is sent, alone on its page, within the server's message limit. A larger
// one was read and decoded (a 32 MiB one took 25 s of CPU and 1.8 GB),
// only for gRPC to refuse to send it.
func (s *casServer) maxTreeDirectoryBytes() int64 {
	return min(MaxTreeBytes, s.opts.maxSendBytes()-treePageOverhead)
}

// treeToken is where a GetTree page resumes: the directory it starts
// with, and its position in the walk (alone in tokens of earlier
// versions).
type treeToken struct {
	pos  int
	next string // "hash/size"; "" in tokens of earlier versions
}

// treePaging reads a GetTree request's page size (0: the default) and
// where its page token resumes.
func treePaging(req *repb.GetTreeRequest) (pageSize int, tok treeToken, err error) {
	if req.PageSize < 0 {
		return 0, tok, status.Errorf(codes.InvalidArgument, "page_size %d is negative", req.PageSize)
	}
	pageSize = int(req.PageSize)
	if pageSize == 0 {
		pageSize = defaultTreePageSize
	}
	if req.PageToken == "" {
		return pageSize, tok, nil
	}
	bad := status.Errorf(codes.InvalidArgument, "page_token %q was not issued by this server", req.PageToken)
	b, err := base64.RawURLEncoding.DecodeString(req.PageToken)
	if err != nil {
		return 0, tok, bad
	}
	posText, next, hasNext := strings.Cut(string(b), " ")
	if tok.pos, err = strconv.Atoi(posText); err != nil || tok.pos < 0 {
		return 0, tok, bad
	}
	if hasNext {
		if next == "" {
			return 0, tok, bad
		}
		tok.next = next
	}
	return pageSize, tok, nil
}

// appendNewChildren appends to queue the subdirectories of dir not seen
// before in the walk of root, marking them seen.
func appendNewChildren(queue []digest.Digest, fn digest.Function, root digest.Digest, dir *repb.Directory, seen map[digest.Digest]bool) ([]digest.Digest, error) {
	for i, sub := range dir.Directories {
		d, err := digest.FromProto(fn, sub.Digest, fmt.Sprintf("directory %q subdirectory[%d]", sub.Name, i))
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "tree %s: %s", root, grpcerr.Convert(err).Message())
		}
		if !seen[d] {
			seen[d] = true
			queue = append(queue, d)
		}
	}
	return queue, nil
}
