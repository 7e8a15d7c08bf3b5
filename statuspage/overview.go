package statuspage

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/scheduler"
)

// stages are the values of the overview's stage filter.
var stages = map[string]repb.ExecutionStage_Value{
	"":          repb.ExecutionStage_UNKNOWN,
	"queued":    repb.ExecutionStage_QUEUED,
	"executing": repb.ExecutionStage_EXECUTING,
	"completed": repb.ExecutionStage_COMPLETED,
}

type overviewBody struct {
	Queues     []queueRow
	MoreQueues moreQueues // those past maxQueueRows, summed
	Workers    []workerRow
	Operations []operationRow
	Stage      string
	Total      int
	Page, Last int
	PrevURL    string
	NextURL    string
}

// maxQueueRows bounds the queues the overview lists, the largest first:
// queues are keyed by instance names and platforms that clients choose,
// and 20,000 of them made a 22 MB page that an open tab rendered again
// every few seconds.
const maxQueueRows = 100

// moreQueues sums the queues the overview does not list.
type moreQueues struct {
	Count, Queued, Running int
}

// largestQueues returns the n queues with the most actions (queued and
// running; then by instance name and platform, as listed) and sums the
// rest.
func largestQueues(all []scheduler.QueueStatus, n int) ([]scheduler.QueueStatus, moreQueues) {
	var more moreQueues
	if len(all) <= n {
		return all, more
	}
	sort.SliceStable(all, func(i, j int) bool {
		return all[i].Queued+all[i].Running > all[j].Queued+all[j].Running
	})
	for _, q := range all[n:] {
		more.Count++
		more.Queued += q.Queued
		more.Running += q.Running
	}
	return all[:n], more
}

type queueRow struct {
	Instance, Platform string
	Queued, Running    int
	OldestWait         string
}

type workerRow struct {
	ID, Platform, State string
	Slots               int
	Running             []string
	LastSeen            string
	// Draining picks the button: Undrain for a drained worker, else Drain.
	Draining             bool
	DrainURL, UndrainURL string
	// Paused: the worker said it cannot run actions now and is given no
	// new work; shown beside State (a paused worker may be busy), with
	// PauseReason.
	Paused      bool
	PauseReason string
}

type operationRow struct {
	Name, Instance, Stage, Worker string
	ActionURL, ActionDigest       string
	Args, Platform                string
	Timings                       string
	ExitCode                      string
	Status                        string
	StdoutURL, StderrURL          string
}

// overview is the page at /: queues, workers, and a page of operations.
func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	stageName := q.Get("stage")
	stage, ok := stages[stageName]
	if !ok {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("stage %q: want queued, executing or completed", stageName))
		return
	}
	pageNo := 1
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		// A page past any list is empty; one whose offset would overflow
		// wrapped round to page 1.
		if err != nil || n < 1 || n-1 > math.MaxInt32/h.opts.PageSize {
			h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("page %q: want a number from 1 to %d", p, math.MaxInt32/h.opts.PageSize+1))
			return
		}
		pageNo = n
	}
	now := h.opts.Now()
	s := h.opts.Scheduler
	ops, total := s.Operations(scheduler.OperationFilter{Stage: stage, Offset: (pageNo - 1) * h.opts.PageSize, Limit: h.opts.PageSize})
	body := overviewBody{Stage: stageName, Total: total, Page: pageNo, Last: max(1, (total+h.opts.PageSize-1)/h.opts.PageSize)}
	queues, more := largestQueues(s.Queues(), maxQueueRows)
	body.MoreQueues = more
	for _, qs := range queues {
		row := queueRow{Instance: qs.Instance, Platform: properties(qs.Platform), Queued: qs.Queued, Running: qs.Running}
		if !qs.OldestQueued.IsZero() {
			row.OldestWait = age(now, qs.OldestQueued)
		}
		body.Queues = append(body.Queues, row)
	}
	for _, ws := range s.Workers() {
		body.Workers = append(body.Workers, workerRow{
			ID: ws.ID, Platform: properties(ws.Platform), State: ws.State, Slots: ws.Slots,
			Running: ws.Running, LastSeen: age(now, ws.LastSeen) + " ago",
			Draining: ws.Draining, DrainURL: workerURL(ws.ID, "drain"), UndrainURL: workerURL(ws.ID, "undrain"),
			Paused: ws.Paused, PauseReason: ws.PauseReason,
		})
	}
	h.summaries.prefetch(r.Context(), ops)
	for _, op := range ops {
		body.Operations = append(body.Operations, h.operationRow(r, now, op))
	}
	if pageNo > 1 {
		body.PrevURL = pageURL(stageName, pageNo-1)
	}
	if pageNo < body.Last {
		body.NextURL = pageURL(stageName, pageNo+1)
	}
	h.render(w, r, http.StatusOK, "overview.html", page{Title: "Paddock", Refresh: int(h.opts.Refresh / time.Second), Body: body})
}

func (h *Handler) operationRow(r *http.Request, now time.Time, op scheduler.OperationStatus) operationRow {
	sum := h.summaries.get(r.Context(), op.Instance, op.Action)
	row := operationRow{
		Name: op.Name, Instance: op.Instance, Stage: strings.ToLower(op.Stage.String()), Worker: op.Worker,
		ActionURL: actionURL(op.Instance, op.Action), ActionDigest: op.Action.String(),
		Args: sum.Args, Platform: sum.Platform,
	}
	switch {
	case op.Done:
		row.Timings = timings(op.Response.GetResult().GetExecutionMetadata(), op.QueuedAt, op.StartedAt, op.CompletedAt)
	case !op.StartedAt.IsZero():
		row.Timings = "queued " + op.StartedAt.Sub(op.QueuedAt).Round(time.Millisecond).String() + ", running " + age(now, op.StartedAt)
	default:
		row.Timings = "queued " + age(now, op.QueuedAt)
	}
	if resp := op.Response; resp != nil {
		if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
			row.Status = c.String() + ": " + resp.GetStatus().GetMessage()
		}
		if res := resp.Result; res != nil {
			row.ExitCode = strconv.Itoa(int(res.ExitCode))
			if resp.CachedResult {
				row.Status = strings.TrimPrefix(row.Status+"; cached", "; ")
			}
			row.StdoutURL = blobURL(op.Instance, res.StdoutDigest, op.Action.Function(), "stdout")
			row.StderrURL = blobURL(op.Instance, res.StderrDigest, op.Action.Function(), "stderr")
		}
	}
	return row
}

func pageURL(stage string, n int) string {
	v := url.Values{}
	if stage != "" {
		v.Set("stage", stage)
	}
	v.Set("page", strconv.Itoa(n))
	return "/?" + v.Encode()
}

func properties(ps []*workerpb.Property) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Name + "=" + p.Value
	}
	return strings.Join(parts, ", ")
}

// age is how long ago t was, rounded for reading.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
