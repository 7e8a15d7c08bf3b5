package client

import (
	"fmt"
	"sort"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/digest"
)

// APIVersion is the REv2 version whose fields an Action is built with.
type APIVersion int

const (
	// V2_0 (Bazel 2.x–4.x): output_files and output_directories, the
	// platform in the Command only.
	V2_0 APIVersion = iota
	// V2_1: output_paths; the platform in both the Command and the Action,
	// so that servers of either generation see it.
	V2_1
	// V2_2 and later: output_paths, the platform in the Action only
	// (Command.platform is deprecated).
	V2_2
)

// ParseAPIVersion reads "2.0", "2.1" or "2.2" (later versions build the
// same messages as 2.2).
func ParseAPIVersion(s string) (APIVersion, error) {
	switch s {
	case "2.0":
		return V2_0, nil
	case "2.1":
		return V2_1, nil
	case "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "2.13":
		return V2_2, nil
	}
	return 0, fmt.Errorf("REv2 version %q: want 2.0, 2.1 or 2.2 (or later)", s)
}

func (v APIVersion) String() string {
	return [...]string{"2.0", "2.1", "2.2"}[v]
}

// ActionSpec describes a command to run remotely. Build turns it into the
// Command and Action messages of an API version.
type ActionSpec struct {
	Arguments   []string
	Environment map[string]string
	// WorkingDirectory is relative to the input root; empty for the root.
	WorkingDirectory string
	// OutputFiles and OutputDirectories are relative to the working
	// directory. From 2.1 on both become output_paths.
	OutputFiles, OutputDirectories []string
	// OutputNodeProperties are the node properties the client asks for
	// on outputs (2.1+; a server refuses names it does not know).
	OutputNodeProperties []string
	Platform             map[string]string
	InputRoot            digest.Digest
	DoNotCache           bool
	// Timeout, if not zero, bounds the execution.
	Timeout time.Duration
}

// Build returns the Action's blob (its digest is the action's digest) and
// the Command's.
func (s ActionSpec) Build(v APIVersion) (action, command Blob) {
	cmd := &repb.Command{
		Arguments:        s.Arguments,
		WorkingDirectory: s.WorkingDirectory,
	}
	for _, name := range sortedKeys(s.Environment) {
		cmd.EnvironmentVariables = append(cmd.EnvironmentVariables, &repb.Command_EnvironmentVariable{Name: name, Value: s.Environment[name]})
	}
	platform := platformOf(s.Platform)
	if v == V2_0 {
		cmd.OutputFiles = sortedCopy(s.OutputFiles)
		cmd.OutputDirectories = sortedCopy(s.OutputDirectories)
	} else {
		cmd.OutputPaths = sortedCopy(append(append([]string(nil), s.OutputFiles...), s.OutputDirectories...))
		cmd.OutputNodeProperties = sortedCopy(s.OutputNodeProperties)
	}
	if v <= V2_1 {
		cmd.Platform = platform
	}
	command = ProtoBlob(cmd)
	a := &repb.Action{
		CommandDigest:   command.Digest.Proto(),
		InputRootDigest: s.InputRoot.Proto(),
		DoNotCache:      s.DoNotCache,
	}
	if v >= V2_1 {
		a.Platform = platform
	}
	if s.Timeout > 0 {
		a.Timeout = durationpb.New(s.Timeout)
	}
	return ProtoBlob(a), command
}

// platformOf returns the properties sorted by name (REv2 requires it, so
// that equal platforms have equal digests); nil when there are none.
func platformOf(props map[string]string) *repb.Platform {
	if len(props) == 0 {
		return nil
	}
	p := &repb.Platform{}
	for _, name := range sortedKeys(props) {
		p.Properties = append(p.Properties, &repb.Platform_Property{Name: name, Value: props[name]})
	}
	return p
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
