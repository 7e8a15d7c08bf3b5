package statuspage

import (
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// timings describes a completed execution's stages from its metadata:
// queued, fetch (input root), run, upload; or, without metadata (a cache
// hit, an error before running), the scheduler's own times.
func timings(md *repb.ExecutedActionMetadata, queued, started, completed time.Time) string {
	if md == nil {
		if started.IsZero() {
			return "completed without running"
		}
		return "queued " + round(started.Sub(queued)) + ", ran " + round(completed.Sub(started))
	}
	var parts []string
	add := func(name string, from, to *timestamppb.Timestamp) {
		if from != nil && to != nil {
			parts = append(parts, name+" "+round(to.AsTime().Sub(from.AsTime())))
		}
	}
	add("queued", md.QueuedTimestamp, md.WorkerStartTimestamp)
	add("fetch", md.InputFetchStartTimestamp, md.InputFetchCompletedTimestamp)
	add("run", md.ExecutionStartTimestamp, md.ExecutionCompletedTimestamp)
	add("upload", md.OutputUploadStartTimestamp, md.OutputUploadCompletedTimestamp)
	return strings.Join(parts, ", ")
}

func round(d time.Duration) string {
	if d < time.Second {
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}
