package images

import (
	"sync"
	"sync/atomic"
)

// ImageConfig is the part of an image's config the runner merges into an
// action's process: the action's own environment and working directory
// win. Entrypoint and Cmd are ignored — an action names its full argv.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Rootfs is one action's hold on a cached image. Path is a flattened tree
// shared by every action using the image: the sandbox must bind-mount it
// read-only. Its files belong to the runner's user, with the image's
// permission bits less group/other write (and setuid/setgid unless
// configured), so a sandbox uid sees them as "other" and can read what the
// image made world-readable but change nothing.
//
// While any Rootfs of an image is held the image is not evicted. Release
// must be called when the action ends; it is idempotent and cheap.
type Rootfs struct {
	Path   string      // directory to use as the OCI rootfs, read-only
	Digest string      // manifest digest of the image
	Config ImageConfig // for the runner to merge

	once    sync.Once
	release func()
	// mountDirs counts the directories MkdirMountPoint made in the
	// image's tree, for every hold on it (maxMountPointDirs).
	mountDirs *atomic.Int64
}

// MkdirMountPoint makes an empty directory at p (an absolute path inside
// the rootfs) if the image lacks it, for an action-specific mount such as
// its input root. The directory stays in the shared tree, where an empty
// directory is harmless to other actions, though they see its name; at
// most maxMountPointDirs are made in one image's tree. It refuses paths
// through symlinks or non-directories. Safe for concurrent use.
func (r *Rootfs) MkdirMountPoint(p string) error {
	return mkdirMountPoint(r.Path, p, r.mountDirs)
}

// Release ends this hold on the image.
func (r *Rootfs) Release() { r.once.Do(r.release) }

// MkfileMountPoint makes an empty regular file at p (an absolute path
// inside the rootfs) if the image lacks it, for a file the sandbox mounts
// over (the runner's /etc/hosts), with its parent directories, counted as
// MkdirMountPoint counts them. It refuses paths through symlinks or
// non-directories, and a p that is not a regular file. Safe for
// concurrent use.
func (r *Rootfs) MkfileMountPoint(p string) error {
	return mkfileMountPoint(r.Path, p, r.mountDirs)
}
