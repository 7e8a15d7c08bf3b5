package scheduler

import (
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
)

// The checks Execute runs before queuing an action are in package rev2,
// shared with the worker; this file holds what only the scheduler decides:
// which properties select a queue.

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
