package runner

import (
	"testing"

	"github.com/paddock-build/paddock/api/runnerpb"
)

func TestEndOf(t *testing.T) {
	for _, c := range []struct {
		resp *runnerpb.RunResponse
		want string
	}{
		{&runnerpb.RunResponse{}, "exited"},
		{&runnerpb.RunResponse{ExitCode: 1}, "exited"},
		{&runnerpb.RunResponse{TimedOut: true, StatusCode: 4}, "timeout"},
		{&runnerpb.RunResponse{OomKilled: true, ExitCode: 137}, "oom_killed"},
		{&runnerpb.RunResponse{OomKilled: true, TimedOut: true}, "oom_killed"},
		{&runnerpb.RunResponse{PidsLimitHit: true}, "pids_limit"},
		{&runnerpb.RunResponse{Cancelled: true, StatusCode: 1}, "cancelled"},
		{&runnerpb.RunResponse{StatusCode: 9}, "error"},
	} {
		if got := endOf(c.resp); got != c.want {
			t.Errorf("endOf(%v) = %q, want %q", c.resp, got, c.want)
		}
	}
}
