package main

import (
	"fmt"
	"io"
	"log/slog"
)

// logFormatUsage is the help of --log-format, shared by the roles.
const logFormatUsage = "log format on stderr: text (key=value) or json (one object per line, for log collectors)"

// newLogger returns the role's logger writing to w in format.
func newLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
