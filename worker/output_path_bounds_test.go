package worker_test

import (
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/rev2"
)

// The worker checks a Command's output paths against the bounds on what it
// creates for them before it builds anything, as the scheduler does at
// Execute: an assignment it must not trust is refused with
// INVALID_ARGUMENT naming the field, and never reaches the runner. Before,
// a 600-level output path had its 599 parents made and the action run.
func TestWorkerRefusesOutputPathsPastTheBounds(t *testing.T) {
	h := newHarness(t)
	deep := strings.Repeat("a/", 599) + "x"
	for _, tc := range []struct {
		name  string
		cmd   *repb.Command
		field string
	}{
		{"600 levels", sh("true", deep), "command.output_paths[0]"},
		{"a name of 5000 bytes", sh("true", "ok", strings.Repeat("x", 5000)), "command.output_paths[1]"},
		{"past MaxOutputPathBytes", sh("true", strings.Repeat(strings.Repeat("n", 99)+"/", rev2.MaxOutputPathBytes/100+1)+"x"), "command.output_paths[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := h.runner.Calls()
			resp := h.w.Execute(context.Background(), h.action(tc.cmd, &repb.Directory{}, false))
			st := status.FromProto(resp.Status)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), tc.field+": ") {
				t.Fatalf("status %v %s, want INVALID_ARGUMENT starting with %s", st.Code(), rev2.Quote(st.Message()), tc.field)
			}
			if n := h.runner.Calls() - before; n != 0 {
				t.Errorf("the runner was called %d times", n)
			}
		})
	}
}
