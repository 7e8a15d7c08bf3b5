package workerpb

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds on what a worker registers with. The scheduler keeps each of
// these for as long as the worker is known, and writes them into logs,
// the status page and metrics: a 3.9 MiB worker_id was accepted, and
// every log line and page about the worker carried it whole. They are
// the protocol's, so a worker checks its own Register before it dials
// (a refused one would be refused at every reconnect).
const (
	MaxWorkerIDBytes       = 256
	MaxRegisterProperties  = 1000
	MaxRegisterLabels      = 64
	MaxRegisterInstances   = 1000
	MaxRegisterStringBytes = 1024 // a property, label or instance name
)

// CheckRegister refuses a Register past the bounds above, naming the
// field. A worker_id of "." or ".." is refused too: the status page's
// links name the worker in a path, where those would be resolved away.
func CheckRegister(reg *Register) error {
	id := reg.GetWorkerId()
	switch {
	case id == "":
		return status.Error(codes.InvalidArgument, "register.worker_id: must not be empty")
	case len(id) > MaxWorkerIDBytes:
		return status.Errorf(codes.InvalidArgument, "register.worker_id: %d bytes, at most %d", len(id), MaxWorkerIDBytes)
	case id == "." || id == "..":
		return status.Errorf(codes.InvalidArgument, "register.worker_id: %q is not a name", id)
	case strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return status.Error(codes.InvalidArgument, "register.worker_id: contains control characters")
	case reg.Concurrency < 1:
		return status.Errorf(codes.InvalidArgument, "register.concurrency: %d, must be at least 1", reg.Concurrency)
	case len(reg.Platform) > MaxRegisterProperties:
		return status.Errorf(codes.InvalidArgument, "register.platform: %d properties, at most %d", len(reg.Platform), MaxRegisterProperties)
	case len(reg.Labels) > MaxRegisterLabels:
		return status.Errorf(codes.InvalidArgument, "register.labels: %d labels, at most %d", len(reg.Labels), MaxRegisterLabels)
	case len(reg.InstanceNames) > MaxRegisterInstances:
		return status.Errorf(codes.InvalidArgument, "register.instance_names: %d names, at most %d", len(reg.InstanceNames), MaxRegisterInstances)
	}
	for i, p := range reg.Platform {
		if p.GetName() == "" {
			return status.Errorf(codes.InvalidArgument, "register.platform[%d]: name is empty", i)
		}
		if len(p.GetName())+len(p.GetValue()) > MaxRegisterStringBytes {
			return status.Errorf(codes.InvalidArgument, "register.platform[%d]: name and value take over %d bytes", i, MaxRegisterStringBytes)
		}
	}
	for k, v := range reg.Labels {
		if len(k)+len(v) > MaxRegisterStringBytes {
			return status.Errorf(codes.InvalidArgument, "register.labels: a label takes over %d bytes", MaxRegisterStringBytes)
		}
	}
	for i, n := range reg.InstanceNames {
		if len(n) > MaxRegisterStringBytes {
			return status.Errorf(codes.InvalidArgument, "register.instance_names[%d]: over %d bytes", i, MaxRegisterStringBytes)
		}
	}
	return nil
}
