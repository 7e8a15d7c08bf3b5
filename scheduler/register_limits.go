package scheduler

import (
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// Bounds on what a worker registers with. The scheduler keeps each of
// these for as long as the worker is known, and writes them into logs,
// the status page and metrics: a 3.9 MiB worker_id was accepted, and
// every log line and page about the worker carried it whole.
const (
	maxWorkerIDBytes     = 256
	maxWorkerProperties  = 1000
	maxWorkerLabels      = 64
	maxWorkerInstances   = 1000
	maxWorkerStringBytes = 1024 // a property, label or instance name
	maxPauseReasonBytes  = 512
)

// checkRegister refuses a Register past the bounds above, naming the
// field. A worker_id of "." or ".." is refused too: the status page's
// links name the worker in a path, where those would be resolved away.
func checkRegister(reg *workerpb.Register) error {
	id := reg.GetWorkerId()
	switch {
	case id == "":
		return status.Error(codes.InvalidArgument, "register.worker_id: must not be empty")
	case len(id) > maxWorkerIDBytes:
		return status.Errorf(codes.InvalidArgument, "register.worker_id: %d bytes, at most %d", len(id), maxWorkerIDBytes)
	case id == "." || id == "..":
		return status.Errorf(codes.InvalidArgument, "register.worker_id: %q is not a name", id)
	case strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return status.Error(codes.InvalidArgument, "register.worker_id: contains control characters")
	case reg.Concurrency < 1:
		return status.Errorf(codes.InvalidArgument, "register.concurrency: %d, must be at least 1", reg.Concurrency)
	case len(reg.Platform) > maxWorkerProperties:
		return status.Errorf(codes.InvalidArgument, "register.platform: %d properties, at most %d", len(reg.Platform), maxWorkerProperties)
	case len(reg.Labels) > maxWorkerLabels:
		return status.Errorf(codes.InvalidArgument, "register.labels: %d labels, at most %d", len(reg.Labels), maxWorkerLabels)
	case len(reg.InstanceNames) > maxWorkerInstances:
		return status.Errorf(codes.InvalidArgument, "register.instance_names: %d names, at most %d", len(reg.InstanceNames), maxWorkerInstances)
	}
	for i, p := range reg.Platform {
		if p.GetName() == "" {
			return status.Errorf(codes.InvalidArgument, "register.platform[%d]: name is empty", i)
		}
		if len(p.GetName())+len(p.GetValue()) > maxWorkerStringBytes {
			return status.Errorf(codes.InvalidArgument, "register.platform[%d]: name and value take over %d bytes", i, maxWorkerStringBytes)
		}
	}
	for k, v := range reg.Labels {
		if len(k)+len(v) > maxWorkerStringBytes {
			return status.Errorf(codes.InvalidArgument, "register.labels: a label takes over %d bytes", maxWorkerStringBytes)
		}
	}
	for i, n := range reg.InstanceNames {
		if len(n) > maxWorkerStringBytes {
			return status.Errorf(codes.InvalidArgument, "register.instance_names[%d]: over %d bytes", i, maxWorkerStringBytes)
		}
	}
	return nil
}

// pauseReason is a worker's pause reason as the scheduler keeps it: at
// most maxPauseReasonBytes (cut at a character boundary).
func pauseReason(why string) string {
	if len(why) <= maxPauseReasonBytes {
		return why
	}
	cut := maxPauseReasonBytes
	for cut > 0 && !utf8.RuneStart(why[cut]) {
		cut--
	}
	return why[:cut] + "…"
}
