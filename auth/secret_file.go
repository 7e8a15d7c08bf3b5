package auth

import (
	"log/slog"
	"os"
)

// WarnIfReadableByAll logs a warning when the secret file path (a TLS
// private key, registry credentials, an S3 secret key: what says which) is
// readable by every user. Sandboxed actions that run on the host's root
// see the host's files read-only, except the runner's hidden paths, and
// run as unprivileged users: a file's mode is then all that keeps them
// from reading it. The farm still starts; the operator is told the fix.
func WarnIfReadableByAll(log *slog.Logger, what, path string) {
	if path == "" || log == nil {
		return
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o004 == 0 {
		return
	}
	log.Warn("a secret file is readable by every user, so by actions on the host's root unless the runner hides it: chmod o-r it, or list it (or its directory) in the runner's host_hidden_paths",
		"file", path, "what", what, "mode", fi.Mode().Perm().String())
}
