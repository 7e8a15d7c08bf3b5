package runner

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images"
)

// An action names the registry its image comes from, and a registry names
// the URL its tokens come from: either may be a service inside the farm's
// network that only the worker reaches. What answered there, its body and
// whether the port was open, stays in the runner's log; the client hears
// the status code and the registry's error codes at most.
func TestPullFailuresDoNotReflectWhatAnswered(t *testing.T) {
	requireRoot(t)
	const secret = "SECRET-INTERNAL-DATA"
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprintf(w, "%s at %s", secret, r.URL.Path)
	}))
	defer internal.Close()
	// A registry whose token realm is the internal service.
	realm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/admin/keys",service="registry"`, internal.URL))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer realm.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	lis.Close()
	hostOf := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	// 0.0.0.0 is refused as link-local and metadata addresses are; Linux
	// would connect it to this machine, here to the internal service.
	refused := "0.0.0.0:" + internal.URL[strings.LastIndexByte(internal.URL, ':')+1:]

	base := searchableTempDir(t)
	e := newTestEnvIn(t, base, func(c *Config) {
		c.Images.Dir = filepath.Join(base, "images")
		c.Images.Insecure = []string{hostOf(internal), hostOf(realm), closed, refused}
	})
	for name, tc := range map[string]struct {
		host, want string
		code       codes.Code
	}{
		"an internal service": {hostOf(internal), "the registry answered 418", codes.FailedPrecondition},
		// go-containerregistry refuses a realm at a private address itself.
		"a token realm inside": {hostOf(realm), "www-authenticate", codes.FailedPrecondition},
		// It may be back soon: clients and the scheduler retry.
		"a closed port":              {closed, "the registry could not be reached", codes.Unavailable},
		"plain HTTP, not configured": {"127.0.0.1:9", "not one of images.insecure", codes.FailedPrecondition},
		"a refused address":          {refused, "an address the runner never connects to", codes.FailedPrecondition},
	} {
		t.Run(name, func(t *testing.T) {
			ref := "docker://" + tc.host + "/x:1"
			a := e.newAction(t)
			req := a.request("/bin/true")
			req.Platform = []*runnerpb.Property{{Name: "container-image", Value: ref}}
			resp := e.run(t, req)
			msg := resp.StatusMessage
			if codes.Code(resp.StatusCode) != tc.code || !strings.Contains(msg, ref) || !strings.Contains(msg, tc.want) {
				t.Fatalf("got %v %q; want %v naming %s and saying %q", codes.Code(resp.StatusCode), msg, tc.code, ref, tc.want)
			}
			for _, leak := range []string{secret, "/admin/keys", "refused", "dial", "timeout"} {
				if strings.Contains(msg, leak) {
					t.Errorf("the message %q tells of %q", msg, leak)
				}
			}
		})
	}
}

// With images.allowed_registries set, an action naming another registry
// fails with PERMISSION_DENIED, and the runner sends that registry nothing.
func TestPullsOnlyFromAllowedRegistries(t *testing.T) {
	requireRoot(t)
	var requests atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer other.Close()
	host := strings.TrimPrefix(other.URL, "http://")
	base := searchableTempDir(t)
	e := newTestEnvIn(t, base, func(c *Config) {
		c.Images.Dir = filepath.Join(base, "images")
		c.Images.Insecure = []string{host}
		c.Images.AllowedRegistries = []string{"registry.example", "*.registry.example"}
	})
	ref := "docker://" + host + "/x:1"
	a := e.newAction(t)
	req := a.request("/bin/true")
	req.Platform = []*runnerpb.Property{{Name: "container-image", Value: ref}}
	resp := e.run(t, req)
	if codes.Code(resp.StatusCode) != codes.PermissionDenied || !strings.Contains(resp.StatusMessage, ref) ||
		!strings.Contains(resp.StatusMessage, "images.allowed_registries") {
		t.Fatalf("got %v %q; want PERMISSION_DENIED naming %s and images.allowed_registries", codes.Code(resp.StatusCode), resp.StatusMessage, ref)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the registry not on the list got %d requests", n)
	}
}

// A layer that could not be read whole is reported without the text of
// its error, which quotes what answered: the size and digest of the body
// of wherever the registry redirected the blob.
func TestLayerReadErrorsAreNotQuoted(t *testing.T) {
	for _, cause := range []string{
		"error verifying size; got 31, want 1048576",
		`error verifying sha256 checksum after reading 31 bytes; got "sha256:8573aa", want "sha256:0b"`,
		"Content-Length header 31 does not match expected size 116",
	} {
		err := fmt.Errorf("layer 1/1 sha256:0b: read layer: %w", &images.LayerReadError{Err: errors.New(cause)})
		msg := pullErrorMessage(err)
		if !strings.Contains(msg, "could not be read whole") {
			t.Errorf("%q: message %q, want it to say the layer could not be read whole", cause, msg)
		}
		for _, leak := range []string{"31", "8573aa", "got"} {
			if strings.Contains(msg, leak) {
				t.Errorf("%q: message %q tells of %q", cause, msg, leak)
			}
		}
	}
}

// A pull that failed for what may pass is UNAVAILABLE, which the
// scheduler retries on another worker and Bazel retries: an outside probe
// saw a registry answering 503, and one killed in the middle of a pull,
// fail every action waiting on the pull with FAILED_PRECONDITION, which
// nothing retries. What asking again cannot help stays as it was.
func TestTransientPullFailuresAreUnavailable(t *testing.T) {
	layer := func(err error) error {
		return fmt.Errorf("layer 1/2 sha256:0b: read layer: %w", &images.LayerReadError{Err: err})
	}
	refusedConn := &url.Error{Op: "Get", URL: "https://r/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"503", &transport.Error{StatusCode: http.StatusServiceUnavailable}, codes.Unavailable},
		{"429", &transport.Error{StatusCode: http.StatusTooManyRequests}, codes.Unavailable},
		{"a connection refused", refusedConn, codes.Unavailable},
		{"stalled", fmt.Errorf("blob: %w", images.ErrRegistryStalled), codes.Unavailable},
		{"a layer cut short", layer(io.ErrUnexpectedEOF), codes.Unavailable},
		{"a connection reset in a layer", layer(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), codes.Unavailable},
		{"404", &transport.Error{StatusCode: http.StatusNotFound}, codes.FailedPrecondition},
		{"a layer not what its manifest gives", layer(errors.New(`error verifying sha256 checksum after reading 31 bytes; got "sha256:85", want "sha256:0b"`)), codes.FailedPrecondition},
		{"a refused address", &url.Error{Op: "Get", URL: "https://r/v2/", Err: images.ErrAddressRefused}, codes.FailedPrecondition},
		{"not allowed", images.ErrRegistryNotAllowed, codes.PermissionDenied},
		// The image's own faults met as it is unpacked, some as errnos,
		// which Go takes for net.Errors too.
		{"a hard link to a name the layer lacks", fmt.Errorf("layer 1/1: unpack: %w", &os.LinkError{Op: "link", Old: "a", New: "b", Err: syscall.ENOENT}), codes.FailedPrecondition},
		{"a path through a file", fmt.Errorf("layer 1/1: unpack: %w", &os.PathError{Op: "mkdir", Path: "f/x", Err: syscall.ENOTDIR}), codes.FailedPrecondition},
		{"a name too long to flatten", fmt.Errorf("flatten: %w", &os.PathError{Op: "open", Path: "x", Err: syscall.ENAMETOOLONG}), codes.FailedPrecondition},
		{"a tar cut short in a whole stream", fmt.Errorf("layer 1/1: read layer: archive/tar: %w", io.ErrUnexpectedEOF), codes.FailedPrecondition},
		{"a timeout reading a layer", layer(timeoutError{}), codes.Unavailable},
	} {
		st := status.Convert(pullFailure("docker://r/x:1", tc.err))
		if st.Code() != tc.want {
			t.Errorf("%s: %v %q, want %v", tc.name, st.Code(), st.Message(), tc.want)
		}
		if strings.Contains(st.Message(), "reset") || strings.Contains(st.Message(), "refused") && tc.want == codes.Unavailable {
			t.Errorf("%s: the message %q tells of the network's detail", tc.name, st.Message())
		}
	}
}

// timeoutError is a network timeout that is not an errno, as net/http's
// body read deadline is.
type timeoutError struct{}

func (timeoutError) Error() string {
	return "net/http: request canceled (Client.Timeout exceeded while reading body)"
}
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
