package runner

import (
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/images"
)

// An image sandbox gets an /etc/hosts of the runner's, as Docker and
// containerd give their containers one: images built by Docker seldom
// ship it, and without it `localhost` resolved nowhere (an outside probe's
// wget of localhost:PORT was a bad address), nor the sandbox's hostname
// (sandbox.DefaultSpec: localhost). A host-root sandbox sees the host's
// own.
const hostsContent = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

// hostsPath is where the runner keeps the file under its state directory.
const hostsPath = "hosts"

// writeHostsFile writes the file into stateDir, readable by every
// sandbox uid, and returns its path.
func writeHostsFile(stateDir string) (string, error) {
	p := filepath.Join(stateDir, hostsPath)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(hostsContent), 0o644); err != nil {
		return "", fmt.Errorf("runner: hosts file: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // whatever the umask
		return "", fmt.Errorf("runner: hosts file: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("runner: hosts file: %w", err)
	}
	return p, nil
}

// imageHostsBind is the read-only bind of the runner's hosts file over the
// image's /etc/hosts, made in the image's tree if it lacks it; none if
// the image has something else there (a symlink, a directory), which the
// sandbox then sees as the image made it, or an /etc that the sandbox's
// users cannot search: the image's files are the runner's, "other" to
// them, and the sandbox's setup could not reach /etc/hosts through a
// 0700 /etc, which failed every action on such an image INTERNAL
// (outside probe).
func imageHostsBind(rf *images.Rootfs, hostsFile string) []specs.Mount {
	if rf.MkfileMountPoint("/etc/hosts") != nil {
		return nil
	}
	if st, err := os.Lstat(filepath.Join(rf.Path, "etc")); err != nil || !st.IsDir() || st.Mode().Perm()&0o001 == 0 {
		return nil
	}
	return []specs.Mount{{Destination: "/etc/hosts", Type: "bind", Source: hostsFile,
		Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}}}
}
