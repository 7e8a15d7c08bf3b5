package scheduler

import (
	"fmt"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// This file holds the pure checks Execute runs before queuing an action.
// Every error is INVALID_ARGUMENT and starts with the offending field.

func invalid(field, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
}

// checkAction validates an Action and returns its command and input root
// digests and the timeout to give the worker.
func checkAction(fn digest.Function, a *repb.Action, maxTimeout, defTimeout time.Duration) (cmd, root digest.Digest, timeout time.Duration, err error) {
	if cmd, err = digest.FromProto(fn, a.CommandDigest, "action.command_digest"); err != nil {
		return
	}
	if root, err = digest.FromProto(fn, a.InputRootDigest, "action.input_root_digest"); err != nil {
		return
	}
	timeout = defTimeout
	if a.Timeout != nil {
		if err = a.Timeout.CheckValid(); err != nil {
			err = invalid("action.timeout", "%v", err)
			return
		}
		t := a.Timeout.AsDuration()
		switch {
		case t < 0:
			err = invalid("action.timeout", "%s is negative", t)
			return
		case t > maxTimeout:
			err = invalid("action.timeout", "%s is above the maximum of %s", t, maxTimeout)
			return
		case t > 0:
			timeout = t
		}
	}
	return
}

// checkCommand validates a Command: arguments, working directory and every
// output path (both the REv2 2.1 output_paths and the 2.0 output_files and
// output_directories), which must stay inside the input root.
func checkCommand(c *repb.Command) error {
	if len(c.Arguments) == 0 {
		return invalid("command.arguments", "empty; the first argument is the program to run")
	}
	if c.Arguments[0] == "" {
		return invalid("command.arguments[0]", "the program to run is empty")
	}
	wd := c.WorkingDirectory
	if wd != "" {
		if err := checkRelative(wd, "", "command.working_directory"); err != nil {
			return err
		}
	}
	for i, p := range c.OutputPaths {
		if err := checkRelative(p, wd, fmt.Sprintf("command.output_paths[%d]", i)); err != nil {
			return err
		}
	}
	for i, p := range c.OutputFiles {
		if err := checkRelative(p, wd, fmt.Sprintf("command.output_files[%d]", i)); err != nil {
			return err
		}
	}
	for i, p := range c.OutputDirectories {
		if err := checkRelative(p, wd, fmt.Sprintf("command.output_directories[%d]", i)); err != nil {
			return err
		}
	}
	for i, v := range c.EnvironmentVariables {
		if v.Name == "" {
			return invalid(fmt.Sprintf("command.environment_variables[%d]", i), "name is empty")
		}
	}
	return nil
}

// checkRelative checks that path p, relative to directory base (itself
// relative to the input root), is a non-empty relative path that stays
// inside the input root.
func checkRelative(p, base, field string) error {
	if p == "" {
		return invalid(field, "path is empty")
	}
	if strings.HasPrefix(p, "/") {
		return invalid(field, "%q is absolute; paths are relative to the input root", p)
	}
	if strings.ContainsRune(p, 0) {
		return invalid(field, "%q contains a NUL byte", p)
	}
	depth := 0
	for _, part := range strings.Split(base+"/"+p, "/") {
		switch part {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return invalid(field, "%q escapes the input root", p)
			}
		default:
			depth++
		}
	}
	return nil
}

// effectivePlatform is the action's platform, or its command's for REv2 2.0
// clients, which put it there; field names it for error messages.
func effectivePlatform(a *repb.Action, c *repb.Command) (*repb.Platform, string) {
	if len(a.GetPlatform().GetProperties()) > 0 {
		return a.Platform, "action.platform"
	}
	return c.GetPlatform(), "command.platform"
}

// checkPlatform checks that properties are sorted by name then value (as
// REv2 requires, so equal platforms have equal digests) and that every name
// is known.
func checkPlatform(p *repb.Platform, field string, known map[string]bool) error {
	props := p.GetProperties()
	for i, pr := range props {
		f := fmt.Sprintf("%s.properties[%d]", field, i)
		if pr.Name == "" {
			return invalid(f, "name is empty")
		}
		if !known[pr.Name] {
			return invalid(f, "unknown platform property %q; the operator can declare it in routing_properties or execution_properties", pr.Name)
		}
		if i > 0 {
			prev := props[i-1]
			if prev.Name > pr.Name || prev.Name == pr.Name && prev.Value > pr.Value {
				return invalid(f, "%q=%q comes after %q=%q; properties must be sorted by name, then value", pr.Name, pr.Value, prev.Name, prev.Value)
			}
		}
	}
	return nil
}

// routingOf returns the queue key and routing properties of a platform in
// an instance: routing properties select a queue, the others do not.
func routingOf(instance string, p *repb.Platform, route map[string]bool) (string, []*workerpb.Property) {
	var b strings.Builder
	b.WriteString(instance)
	var routing []*workerpb.Property
	for _, pr := range p.GetProperties() {
		if route[pr.Name] {
			routing = append(routing, &workerpb.Property{Name: pr.Name, Value: pr.Value})
			b.WriteString("\x00")
			b.WriteString(pr.Name)
			b.WriteString("=")
			b.WriteString(pr.Value)
		}
	}
	return b.String(), routing
}

func workerProperties(p *repb.Platform) []*workerpb.Property {
	props := p.GetProperties()
	if len(props) == 0 {
		return nil
	}
	out := make([]*workerpb.Property, len(props))
	for i, pr := range props {
		out[i] = &workerpb.Property{Name: pr.Name, Value: pr.Value}
	}
	return out
}
