package runner

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images"
	"github.com/paddock-build/paddock/sandbox"
)

// pullImage returns a hold on the action's image, pulled by deadline
// (zero: none). The action's timeout covers its pull: a stalled registry
// held a worker for the timeout and the scheduler's grace, or up to the
// cache's 30-minute PullTimeout, and the failure did not name the image.
func (s *Service) pullImage(ctx context.Context, req *runnerpb.RunRequest, plat platform, deadline time.Time) (*images.Rootfs, error) {
	if s.images == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "platform property %s: this runner has no image cache", propImage)
	}
	pullCtx, cancel := ctx, context.CancelFunc(func() {})
	if !deadline.IsZero() {
		pullCtx, cancel = context.WithDeadline(ctx, deadline)
	}
	defer cancel()
	rf, err := s.images.RootfsFor(pullCtx, *plat.ImageRef, req.GetTenant())
	switch {
	case err == nil:
		return rf, nil
	case ctx.Err() != nil:
		return nil, status.Errorf(codes.Canceled, "pull %s: %v", plat.Image, ctx.Err())
	case pullCtx.Err() != nil:
		return nil, pullTimedOut(plat.Image)
	}
	s.logger.Warn("image pull failed", "action", req.GetActionId(), "image", plat.Image, "error", cutMessage(err.Error(), maxLoggedPullError))
	return nil, pullFailure(plat.Image, err)
}

// checkImageMountPoints makes sure the sandbox can mount its filesystems
// on the image's tree: the input root path irp, /proc, /dev, /tmp, /sys
// and the paths masked under /sys (sandbox.MaskedPaths) must be
// directories, or absent (then they are made). Otherwise it is the
// image's fault, FAILED_PRECONDITION naming the path, rather than an
// INTERNAL failure to set up the sandbox (an image whose /sys/firmware
// was a symlink got INTERNAL).
func checkImageMountPoints(rf *images.Rootfs, image, irp string) error {
	points := append(ownMountPoints(irp), "/sys")
	for _, p := range sandbox.MaskedPaths {
		if strings.HasPrefix(p, "/sys/") {
			points = append(points, p)
		}
	}
	for _, p := range points {
		if err := rf.MkdirMountPoint(p); err != nil {
			if isDiskFull(err) {
				return diskFull("setting up the image's root for the sandbox", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, p) { // it mostly names the mount point itself
				msg = "mount point " + p + ": " + msg
			}
			return status.Errorf(codes.FailedPrecondition, "image %s: %s", image, msg)
		}
	}
	return nil
}
