package runner

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"unicode/utf8"

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
	switch {
	case errors.Is(err, images.ErrAccessDenied) || errors.Is(err, images.ErrRegistryNotAllowed):
		code = codes.PermissionDenied
	case transientPull(err):
		code = codes.Unavailable
	}
	return status.Errorf(code, "image %s: %s", image, cutMessage(pullErrorMessage(err), maxPullErrorMessage))
}

// transientPull reports whether a pull failed for what may pass: the
// registry could not be reached, answered 5xx, 429 or 408, stalled, or
// its connection broke while a layer was read. Such a failure is
// UNAVAILABLE, which the scheduler retries on another worker and clients
// retry (Bazel's --remote_retries); it had been FAILED_PRECONDITION,
// which neither retries, and a registry restarting failed every action
// waiting on its pull. Content that is not what the manifest gives, a
// refusal by policy and what the registry says is missing stay as they
// are: asking again cannot help.
func transientPull(err error) bool {
	var terr *transport.Error
	if errors.As(err, &terr) {
		c := terr.StatusCode
		return c >= 500 || c == http.StatusTooManyRequests || c == http.StatusRequestTimeout
	}
	for _, permanent := range []error{images.ErrRegistryNotAllowed, images.ErrAddressRefused, images.ErrPlainHTTPRefused, images.ErrAccessDenied} {
		if errors.Is(err, permanent) {
			return false
		}
	}
	var uerr *url.Error
	if errors.Is(err, images.ErrRegistryStalled) || errors.As(err, &uerr) || isNetError(err) {
		return true
	}
	// A layer's stream that ended early broke on the way; the tar inside
	// a whole stream that ends early is the image's fault.
	var lre *images.LayerReadError
	return errors.As(err, &lre) && (errors.Is(lre, io.ErrUnexpectedEOF) || errors.Is(lre, syscall.ECONNRESET))
}

// isNetError reports whether err is the network's: a net.Error that is
// not a bare errno. An errno is one too for Go (it has Timeout and
// Temporary), and a layer's own fault met while unpacking it (ENOENT for
// a hard link to a name it lacks, ENOTDIR, ENAMETOOLONG) was UNAVAILABLE:
// each action pulled the image four times over, and the client retried
// that (outside probe).
func isNetError(err error) bool {
	var nerr net.Error
	if !errors.As(err, &nerr) {
		return false
	}
	_, errno := nerr.(syscall.Errno)
	return !errno
}

// maxPullErrorMessage bounds what a client hears of a failed pull, and
// maxLoggedPullError what the runner's log keeps of its error. The
// images package cuts what it quotes of an image or a registry, but an
// error can still quote several such strings, or come from
// go-containerregistry, which quotes error bodies of up to 64 KiB: a 7 MB
// config "os" once made a reply larger than gRPC's 4 MiB, which the
// worker took for a runner failure, retrying the action four times.
const (
	maxPullErrorMessage = 4 << 10
	maxLoggedPullError  = 64 << 10
)

// maxRegistryCodes is how many of a registry's error codes a message
// lists.
const maxRegistryCodes = 4

// cutMessage cuts msg to at most limit bytes (at a character boundary),
// saying how much was left out.
func cutMessage(msg string, limit int) string {
	if len(msg) <= limit {
		return msg
	}
	keep := max(limit-40, 0) // room for the note
	for keep > 0 && !utf8.RuneStart(msg[keep]) {
		keep--
	}
	return fmt.Sprintf("%s... (%d more bytes)", msg[:keep], len(msg)-keep)
}

// pullTimedOut is the status of an action whose timeout ran out while
// its image was being pulled: a timeout, as when the command runs too
// long (Run sets timed_out), naming the image.
func pullTimedOut(image string) error {
	return status.Errorf(codes.DeadlineExceeded, "image %s: the action's timeout ran out while the image was being pulled", image)
}

func pullErrorMessage(err error) string {
	var terr *transport.Error
	if errors.As(err, &terr) {
		msg := fmt.Sprintf("the registry answered %d %s", terr.StatusCode, http.StatusText(terr.StatusCode))
		var errCodes []string
		for _, d := range terr.Errors[:min(len(terr.Errors), maxRegistryCodes)] {
			errCodes = append(errCodes, images.QuoteShort(string(d.Code)))
		}
		if more := len(terr.Errors) - len(errCodes); more > 0 {
			errCodes = append(errCodes, fmt.Sprintf("and %d more", more))
		}
		if len(errCodes) > 0 {
			msg += " (" + strings.Join(errCodes, ", ") + ")"
		}
		return msg
	}
	if errors.Is(err, images.ErrRegistryStalled) {
		return images.ErrRegistryStalled.Error() + ": nothing arrived for longer than the runner waits"
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
	var lre *images.LayerReadError
	if errors.As(err, &lre) && transientPull(err) {
		return "a layer or the config of the image could not be read whole from the registry: the connection broke before its end"
	}
	if lre != nil {
		// Never its text: it may quote what answered (LayerReadError).
		return "a layer or the config of the image could not be read whole from the registry: its bytes stopped short, or are not what its manifest gives (size, digest, a config in JSON)"
	}
	// The images package's own errors: a platform the image lacks, a layer
	// over the cache's bound, content that does not match its digest.
	return err.Error()
}
