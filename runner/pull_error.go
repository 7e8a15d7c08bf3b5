package runner

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/images"
)

// pullFailure is the status an action's client gets for a failed pull of
// image: what went wrong, in words of our own, while the full error goes
// to the runner's log. The registry is whatever host the action named,
// perhaps one inside the farm's network that only the worker can reach,
// and a registry's token realm may be any URL it likes. Passed on as it
// was, the error carried the body of whatever answered there ("unexpected
// status code 418: ...") and the network's detail (refused, timed out),
// which made the runner a probe into that network for any client.
func pullFailure(image string, err error) error {
	if isDiskFull(err) {
		// Unpacking it filled the worker's disk: the client may retry
		// once space is back (the message, like every image error,
		// names no host path).
		return status.Errorf(codes.ResourceExhausted, "image %s: %s", image, diskFullMessage("pulling the image"))
	}
	code := codes.FailedPrecondition
	if errors.Is(err, images.ErrAccessDenied) || errors.Is(err, images.ErrRegistryNotAllowed) {
		code = codes.PermissionDenied
	}
	return status.Errorf(code, "image %s: %s", image, pullErrorMessage(err))
}

func pullErrorMessage(err error) string {
	var terr *transport.Error
	if errors.As(err, &terr) {
		msg := fmt.Sprintf("the registry answered %d %s", terr.StatusCode, http.StatusText(terr.StatusCode))
		var errCodes []string
		for _, d := range terr.Errors {
			errCodes = append(errCodes, string(d.Code))
		}
		if len(errCodes) > 0 {
			msg += " (" + strings.Join(errCodes, ", ") + ")"
		}
		return msg
	}
	if errors.Is(err, images.ErrRegistryNotAllowed) {
		return "the registry is " + images.ErrRegistryNotAllowed.Error()
	}
	if errors.Is(err, images.ErrAddressRefused) {
		return "the registry, or where it redirected, is at " + images.ErrAddressRefused.Error()
	}
	if errors.Is(err, images.ErrPlainHTTPRefused) {
		return "the registry could not be reached over HTTPS, and is not one of images.insecure (plain HTTP)"
	}
	// An HTTP client wraps every error of the connection in a url.Error.
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return "the registry could not be reached"
	}
	if errors.Is(err, images.ErrAccessDenied) {
		return "the registry did not let this tenant read it"
	}
	// The images package's own errors: a platform the image lacks, a layer
	// over the cache's bound, content that does not match its digest.
	return err.Error()
}
