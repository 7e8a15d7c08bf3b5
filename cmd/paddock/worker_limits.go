package main

import (
	"flag"
	"fmt"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/worker"
)

// limitFlags are the worker's bounds on an action's input root and
// outputs, shared by `paddock worker` and `paddock up`. Zero keeps the
// worker's default (worker.InputLimits, worker.OutputLimits).
type limitFlags struct {
	maxOutputBytes, maxInputBytes string
	maxOutputFiles, maxInputFiles int64
	maxOutputDepth, maxInputDepth int
}

func (l *limitFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.maxOutputBytes, "max-output-bytes", "", "bound on an action's output files, by apparent size (default 4GiB)")
	fs.Int64Var(&l.maxOutputFiles, "max-output-files", 0, "bound on an action's output entries (default 1000000)")
	fs.IntVar(&l.maxOutputDepth, "max-output-depth", 0, "bound on the depth of an output directory (default 256)")
	fs.StringVar(&l.maxInputBytes, "max-input-bytes", "", "bound on an input root's files, expanded (default 64GiB)")
	fs.Int64Var(&l.maxInputFiles, "max-input-files", 0, "bound on an input root's entries, expanded (default 2000000)")
	fs.IntVar(&l.maxInputDepth, "max-input-depth", 0, "bound on an input root's depth (default 256)")
}

func (l *limitFlags) limits() (worker.InputLimits, worker.OutputLimits, error) {
	in := worker.InputLimits{MaxFiles: l.maxInputFiles, MaxDepth: l.maxInputDepth}
	out := worker.OutputLimits{MaxFiles: l.maxOutputFiles, MaxDepth: l.maxOutputDepth}
	for _, s := range []struct {
		flag, value string
		dst         *int64
	}{{"max-input-bytes", l.maxInputBytes, &in.MaxBytes}, {"max-output-bytes", l.maxOutputBytes, &out.MaxBytes}} {
		if s.value == "" {
			continue
		}
		n, err := configs.ParseByteSize(s.value)
		if err != nil {
			return in, out, fmt.Errorf("--%s: %w", s.flag, err)
		}
		*s.dst = int64(n)
	}
	return in, out, nil
}
