package rev2

import (
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

// ActionDigests are the digests an Action refers to.
type ActionDigests struct {
	Command, InputRoot digest.Digest
}

// CheckAction validates an Action: its command and input root digests
// (under fn), and its timeout against the server's maximum. It returns the
// digests and the timeout to run with: the action's, or defTimeout when it
// gives none (the spec asks servers to impose one).
func CheckAction(fn digest.Function, a *repb.Action, maxTimeout, defTimeout time.Duration) (ActionDigests, time.Duration, error) {
	var ds ActionDigests
	var err error
	if ds.Command, err = digest.FromProto(fn, a.CommandDigest, "action.command_digest"); err != nil {
		return ds, 0, err
	}
	if ds.InputRoot, err = digest.FromProto(fn, a.InputRootDigest, "action.input_root_digest"); err != nil {
		return ds, 0, err
	}
	if a.Timeout == nil {
		return ds, defTimeout, nil
	}
	// Said in the client's own figures: protobuf's text has a
	// non-breaking space, and AsDuration saturates at 292 years.
	given := fmt.Sprintf("{seconds: %d, nanos: %d}", a.Timeout.GetSeconds(), a.Timeout.GetNanos())
	if err := a.Timeout.CheckValid(); err != nil {
		return ds, 0, Invalid("action.timeout", "%s is not a valid duration: seconds and nanos must have one sign, nanos below 1e9 and the whole within 10,000 years", given)
	}
	switch t := a.Timeout.AsDuration(); {
	case t < 0:
		return ds, 0, Invalid("action.timeout", "%s is negative", given)
	case t > maxTimeout:
		// The spec: a timeout above the server's maximum MUST be rejected.
		return ds, 0, Invalid("action.timeout", "%s is above the maximum of %s", given, maxTimeout)
	case t > 0:
		return ds, t, nil
	}
	return ds, defTimeout, nil
}

// EffectivePlatform is the action's platform, or its command's for REv2
// 2.0 clients, which put it there; field names it for error messages.
func EffectivePlatform(a *repb.Action, c *repb.Command) (*repb.Platform, string) {
	if len(a.GetPlatform().GetProperties()) > 0 {
		return a.Platform, "action.platform"
	}
	return c.GetPlatform(), "command.platform"
}

// MaxPlatformBytes bounds a platform's property names and values together.
// RBE platforms take a few hundred bytes; every queued action keeps its
// platform, so one of megabytes (a Command may be 16 MiB) would make each
// queued action cost the scheduler that much.
const MaxPlatformBytes = 64 << 10

// CheckPlatform checks that properties are sorted by name then value (as
// REv2 requires, so that equal platforms have equal digests), that every
// name is one the server knows, and that the built-in execution
// properties are ones every runner takes (CheckExecution).
func CheckPlatform(p *repb.Platform, field string, known func(name string) bool) error {
	props := p.GetProperties()
	size := 0
	for _, pr := range props {
		size += len(pr.Name) + len(pr.Value)
	}
	if size > MaxPlatformBytes {
		return Invalid(field, "properties take %d bytes; at most %d are accepted", size, MaxPlatformBytes)
	}
	for i, pr := range props {
		f := fmt.Sprintf("%s.properties[%d]", field, i)
		if pr.Name == "" {
			return Invalid(f, "name is empty")
		}
		if !known(pr.Name) {
			return Invalid(f, "unknown platform property %s; the operator can declare it in routing_properties or execution_properties", Quote(pr.Name))
		}
		if i > 0 {
			prev := props[i-1]
			if prev.Name > pr.Name || prev.Name == pr.Name && prev.Value > pr.Value {
				return Invalid(f, "%s=%s comes after %s=%s; properties must be sorted by name, then value",
					Quote(pr.Name), Quote(pr.Value), Quote(prev.Name), Quote(prev.Value))
			}
		}
	}
	return CheckExecution(p, field)
}
