package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// logFlags are --log-format and --log-level, which every serving role and
// `paddock up` take, registered and read here once so they mean the same
// in each; up passes both to its runner child.
type logFlags struct {
	format string
	level  string
}

// newLogFlags registers the flags on fs.
func newLogFlags(fs *flag.FlagSet) *logFlags {
	l := &logFlags{}
	l.register(fs)
	return l
}

// register adds --log-format and --log-level to fs.
func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format on stderr: text (key=value) or json (one object per line, for log collectors)")
	fs.StringVar(&l.level, "log-level", "info", "least severe level logged: debug, info, warn or error (debug adds, e.g., every auth decision)")
}

// childArgs are the flags that give a child process the same logging.
func (l logFlags) childArgs() []string {
	return []string{"--log-format", l.format, "--log-level", l.level}
}

// newLogger returns the role's logger writing to w in l's format, at l's
// level and above.
func (l logFlags) newLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch l.level {
	case "debug":
		level = slog.LevelDebug
	case "", "info":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
}
