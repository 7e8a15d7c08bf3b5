package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/smallfile"
)

// exposureUsage is what the storage and scheduler usages say of their
// listeners: the rule of auth.CheckExposure (serverOptions), whose
// choice the container images' default arguments (--help) leave to the
// operator.
const exposureUsage = `Any address but loopback (and so any a container is reached on) needs
TLS and an auth policy (--tls-cert, --tls-key, --auth; docs/security.md),
or --insecure on a network you trust.
`

// serverSecurity is what a role that serves gRPC needs to serve it safely:
// TLS files, the auth policy, and the explicit --insecure for a
// non-loopback address without them.
type serverSecurity struct {
	tls      auth.TLSFiles
	policy   string
	insecure bool
}

// newServerSecurity registers the flags on fs.
func newServerSecurity(fs *flag.FlagSet) *serverSecurity {
	s := &serverSecurity{}
	s.register(fs)
	return s
}

func (s *serverSecurity) register(fs *flag.FlagSet) {
	fs.StringVar(&s.tls.Cert, "tls-cert", "", "PEM certificate to serve TLS with (reloaded when the file changes)")
	fs.StringVar(&s.tls.Key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&s.tls.CA, "tls-client-ca", "", "PEM CA that client certificates must chain to (mTLS identities); clients without one may still send a bearer token")
	fs.StringVar(&s.policy, "auth", "", "auth policy file (see configs/auth.yaml and docs/security.md); without it every call is allowed")
	fs.BoolVar(&s.insecure, "insecure", false, "allow serving a non-loopback address without TLS and an auth policy (logs a warning)")
}

// serverOptions loads the policy and the TLS files, refuses an exposed
// address without them (unless --insecure), and returns the gRPC server
// options that enforce them.
// The policy is returned too (nil without --auth): storage partitions
// the CAS by it.
func (s *serverSecurity) serverOptions(addr string, logger *slog.Logger) ([]grpc.ServerOption, *auth.Policy, error) {
	var policy *auth.Policy
	if s.policy != "" {
		var err error
		if policy, err = auth.LoadPolicy(s.policy); err != nil {
			return nil, nil, err
		}
	}
	useTLS := s.tls.Cert != "" || s.tls.Key != "" || s.tls.CA != ""
	if err := auth.CheckExposure(addr, useTLS, policy != nil, s.insecure, logger); err != nil {
		return nil, nil, err
	}
	// A tenant may hold half of a server's bound on calls (grpclimit).
	ic := auth.NewInterceptors(policy, logger).LimitTenantCalls(grpclimit.DefaultMax() / 2)
	// The server's one tap (grpclimit) authenticates each call from its
	// headers, and takes its tenant's share, before its request is read.
	opts := append(ic.ServerOptions(), grpclimit.WithAdmission(ic.Admit))
	if useTLS {
		cfg, err := auth.ServerTLS(s.tls, logger)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	return opts, policy, nil
}

// statusPageTLS applies serverOptions' rule to the HTTP listener that
// serves the status page (addr), which shows every tenant's work and
// drains workers: a non-loopback address needs TLS and a policy, or
// --insecure. It returns the TLS config to serve HTTPS with when the role
// has a certificate (the gRPC listener's, reloaded the same way; its
// client CA admits certificate identities), nil for plain HTTP. A UNIX
// socket (mode 0600) is local by nature.
func (s *serverSecurity) statusPageTLS(addr string, hasPolicy bool, logger *slog.Logger) (*tls.Config, error) {
	var cfg *tls.Config
	if s.tls.Cert != "" || s.tls.Key != "" {
		var err error
		if cfg, err = auth.ServerTLS(s.tls, logger); err != nil {
			return nil, fmt.Errorf("--http-listen: %w", err)
		}
	}
	if strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, "/") {
		return cfg, nil
	}
	if err := auth.CheckExposure(addr, cfg != nil, hasPolicy, s.insecure, logger); err != nil {
		return nil, fmt.Errorf("--http-listen (the status page): %w", err)
	}
	return cfg, nil
}

// dialSecurity is how a role dials another one (worker to scheduler and
// storage, scheduler to storage, storage to a remote CAS): TLS with the
// server verified against a CA, a client certificate for mTLS, and a
// bearer token.
type dialSecurity struct {
	tls        auth.TLSFiles
	useTLS     bool
	tokenFile  string
	serverName string
	prefix     string // the flags' prefix: "dial-" for the roles, "" for the clients
}

func (d *dialSecurity) register(fs *flag.FlagSet) {
	d.registerAs(fs, "dial-", "the other roles")
}

// registerAs adds the flags with prefix (--PREFIXtls, --PREFIXtls-ca, ...)
// for dialing peer: the roles dial each other with --dial-*, and the
// clients (paddock run, paddock bench) dial the farm with --tls-* and
// --token-file.
func (d *dialSecurity) registerAs(fs *flag.FlagSet, prefix, peer string) {
	d.prefix = prefix
	fs.BoolVar(&d.useTLS, prefix+"tls", false, "dial "+peer+" over TLS, verified against the system's roots (implied by --"+prefix+"tls-ca, --"+prefix+"tls-cert and --"+prefix+"tls-server-name)")
	fs.StringVar(&d.tls.CA, prefix+"tls-ca", "", "PEM CA the server certificates of "+peer+" must chain to")
	fs.StringVar(&d.tls.Cert, prefix+"tls-cert", "", "PEM client certificate presented to "+peer+" (mTLS)")
	fs.StringVar(&d.tls.Key, prefix+"tls-key", "", "PEM private key of --"+prefix+"tls-cert")
	fs.StringVar(&d.tokenFile, prefix+"token-file", "", "file holding a bearer token sent to "+peer+" (without TLS, only to a loopback address)")
	fs.StringVar(&d.serverName, prefix+"tls-server-name", "", "name expected in the servers' certificates (default: the dialed host)")
}

// dialOptions returns the transport and per-call credentials; plaintext
// without any of the flags.
func (d *dialSecurity) dialOptions(logger *slog.Logger) ([]grpc.DialOption, error) {
	useTLS := d.useTLS || d.tls.CA != "" || d.tls.Cert != "" || d.tls.Key != "" || d.serverName != ""
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if useTLS {
		creds, err := auth.ClientCredentials(d.tls, d.serverName, logger)
		if err != nil {
			return nil, err
		}
		opts = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	}
	if d.tokenFile == "" {
		return opts, nil
	}
	flag := "--" + d.prefix + "token-file"
	b, err := smallfile.Read(d.tokenFile, flag)
	if err != nil {
		return nil, err
	}
	if d.prefix == "dial-" {
		// A role's token is a worker's or a scheduler's identity, which
		// reaches every tenant's data: one left readable by all was
		// read by a tenant's action on the host's root.
		auth.WarnIfReadableByAll(logger, flag, d.tokenFile)
	}
	if !useTLS {
		// As `paddock up --auth` takes tokens without TLS on loopback.
		return append(opts, grpc.WithPerRPCCredentials(auth.NewLoopbackTokenCredentials(string(b), flag))), nil
	}
	return append(opts, grpc.WithPerRPCCredentials(auth.NewTokenCredentials(string(b)))), nil
}

// servingRole is what a role that both serves and dials (storage, the
// scheduler) holds once its flags are parsed: its logger, its server
// options and policy, its dial options, and the lock on its directory.
type servingRole struct {
	logger    *slog.Logger
	serveOpts []grpc.ServerOption
	policy    *auth.Policy
	dialOpts  []grpc.DialOption
	unlock    func()
}

// startServingRole sets up rf's logging, the security for serving listen
// and for dialing, and locks dir (see lockRoleDir; what names it in
// errors), in that order, so that a bad flag is said before any directory
// is made or locked. The caller defers unlock.
func startServingRole(rf *roleFlags, sec serverSecurity, dial dialSecurity, listen, dir, what string) (servingRole, error) {
	var r servingRole
	var err error
	if r.logger, err = rf.setup(); err != nil {
		return r, err
	}
	if r.dialOpts, err = dial.dialOptions(r.logger); err != nil {
		return r, err
	}
	if r.serveOpts, r.policy, err = sec.serverOptions(listen, r.logger); err != nil {
		return r, err
	}
	r.unlock, err = lockRoleDir(dir, what)
	return r, err
}
