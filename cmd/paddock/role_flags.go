package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
)

// roleFlags are the flags every serving role (storage, scheduler, worker,
// runner) takes: --config and --print-config, --http-listen and
// --log-format. They are registered and read here once, so that they
// mean the same in each role. (`up` registers its own --http-listen, with
// a default.)
type roleFlags struct {
	configFlags
	httpAddr  string
	logFormat string
}

// newRoleFlagSet is role's flag set with roleFlags registered; example is
// the config file the --config help points to. With usage, -h prints it
// before the flags.
func newRoleFlagSet(role, usage, example string) (*flag.FlagSet, *roleFlags) {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	if usage != "" {
		fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	}
	rf := &roleFlags{}
	rf.configFlags.register(fs, example)
	fs.StringVar(&rf.httpAddr, "http-listen", "", httpListenUsage)
	fs.StringVar(&rf.logFormat, "log-format", "text", logFormatUsage)
	return fs, rf
}

// logger is the role's logger on stderr, in --log-format.
func (rf *roleFlags) logger() (*slog.Logger, error) { return newLogger(os.Stderr, rf.logFormat) }

// startHTTP serves obs's HTTP side on --http-listen, if given (see
// observability.startHTTP), and prints the address it listens on.
func (rf *roleFlags) startHTTP(ctx context.Context, role string, obs *observability, tlsCfg *tls.Config, routes func(*http.ServeMux)) error {
	if rf.httpAddr == "" {
		return nil
	}
	got, err := obs.startHTTP(ctx, rf.httpAddr, tlsCfg, routes)
	if err != nil {
		return err
	}
	// Tests and scripts read the address from this line on stdout.
	fmt.Printf("paddock %s http listening on %s\n", role, got)
	return nil
}
