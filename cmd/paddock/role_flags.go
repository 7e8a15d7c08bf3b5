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
// runner) takes: --config and --print-config, --http-listen,
// --pprof-listen, --log-format and --log-level. They are registered and
// read here once, so that they mean the same in each role. (`up`
// registers its own --http-listen, with a default, and --pprof-listen,
// which its runner child follows.)
type roleFlags struct {
	configFlags
	logFlags
	httpAddr  string
	pprofAddr string
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
	fs.StringVar(&rf.pprofAddr, "pprof-listen", "", pprofFlagUsage)
	rf.logFlags.register(fs)
	return fs, rf
}

// setup returns the role's logger on stderr (--log-format, --log-level)
// and, with --pprof-listen, serves Go profiles there (startPprof). Each
// role calls it once its flags are parsed and its config is checked,
// before it opens anything, so a profile covers its whole start.
func (rf *roleFlags) setup() (*slog.Logger, error) {
	logger, err := rf.newLogger(os.Stderr)
	if err != nil {
		return nil, err
	}
	if rf.pprofAddr != "" {
		if _, err := startPprof(rf.pprofAddr, logger); err != nil {
			return nil, err
		}
	}
	return logger, nil
}

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
