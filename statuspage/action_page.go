package statuspage

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
)

// inlineOutputBytes is how much of stdout and stderr the action page shows;
// the rest is a download.
const inlineOutputBytes = 64 << 10

type actionBody struct {
	Instance, Digest string
	Action, Command  string // prototext
	Args             []string
	InputRootURL     string
	Result           *resultView
	ResultSource     string
	Operations       []operationRow
}

type resultView struct {
	ExitCode       int32
	Status         string
	Stdout, Stderr output
	Files          []fileLink
	Directories    []fileLink
	Timings        string
	Metadata       string
}

type output struct {
	Text      string
	Truncated bool
	URL       string
}

type fileLink struct {
	Path, URL string
	Size      int64
}

// parseDigest reads the {digest} path value, HASH-SIZE; the digest
// function follows from the hash's length.
func parseDigest(r *http.Request) (digest.Digest, error) {
	v := r.PathValue("digest")
	hash, size, ok := strings.Cut(v, "-")
	if !ok {
		return digest.Digest{}, fmt.Errorf("digest %q: want HASH-SIZE", v)
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("digest %q: size %q is not a number", v, size)
	}
	d, err := digest.New(digest.Function(0), hash, n)
	if err != nil {
		return digest.Digest{}, fmt.Errorf("digest %q: %s", v, status.Convert(err).Message())
	}
	return d, nil
}

// action is the page of one action: /action/HASH-SIZE?instance=NAME.
func (h *Handler) action(w http.ResponseWriter, r *http.Request) {
	d, err := parseDigest(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	instance := r.URL.Query().Get("instance")
	// The instance's partition of the CAS (with an auth policy, each
	// tenant's blobs are apart).
	ctx := storage.WithInstance(r.Context(), instance)
	action := &repb.Action{}
	if err := storage.GetProto(ctx, h.opts.CAS, d, action, maxMessageBytes); err != nil {
		h.failBlob(w, r, "action", d, err)
		return
	}
	body := actionBody{Instance: instance, Digest: d.String(), Action: prototext.Format(action)}
	if cd, err := digest.FromProto(d.Function(), action.CommandDigest, "command_digest"); err == nil {
		cmd := &repb.Command{}
		if err := storage.GetProto(ctx, h.opts.CAS, cd, cmd, maxMessageBytes); err != nil {
			body.Command = "(command " + cd.String() + " not readable: " + status.Convert(err).Message() + ")"
		} else {
			body.Command, body.Args = prototext.Format(cmd), visibleAll(cmd.Arguments)
		}
	}
	if rd, err := digest.FromProto(d.Function(), action.InputRootDigest, "input_root_digest"); err == nil {
		body.InputRootURL = treeURL(instance, rd, "")
	}
	now := h.opts.Now()
	ops, _ := h.opts.Scheduler.Operations(scheduler.OperationFilter{Action: d, Limit: 20})
	var latest *repb.ExecuteResponse
	for _, op := range ops {
		body.Operations = append(body.Operations, h.operationRow(r, now, op))
		if latest == nil && op.Response.GetResult() != nil {
			latest = op.Response
		}
	}
	switch res, err := h.opts.AC.Get(ctx, instance, d); {
	case err == nil:
		body.Result, body.ResultSource = h.resultView(r, instance, d.Function(), &repb.ExecuteResponse{Result: res}), "the action cache"
	case latest != nil:
		body.Result, body.ResultSource = h.resultView(r, instance, d.Function(), latest), "the latest operation"
	}
	h.render(w, r, http.StatusOK, "action.html", page{Title: "Action " + d.String(), Body: body})
}

func (h *Handler) resultView(r *http.Request, instance string, fn digest.Function, resp *repb.ExecuteResponse) *resultView {
	res := resp.Result
	v := &resultView{ExitCode: res.ExitCode, Timings: timings(res.ExecutionMetadata, time.Time{}, time.Time{}, time.Time{})}
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
		v.Status = c.String() + ": " + resp.GetStatus().GetMessage()
	}
	v.Stdout = h.output(r, instance, fn, res.StdoutDigest, res.StdoutRaw, "stdout")
	v.Stderr = h.output(r, instance, fn, res.StderrDigest, res.StderrRaw, "stderr")
	for _, f := range res.OutputFiles {
		v.Files = append(v.Files, fileLink{Path: f.Path, URL: blobURL(instance, f.Digest, fn, path.Base(f.Path)), Size: f.Digest.GetSizeBytes()})
	}
	for _, d := range res.OutputDirectories {
		// The Tree, or for a result stored as Directory blobs only
		// (output_directory_format DIRECTORY_ONLY), the root Directory.
		blob, suffix := d.TreeDigest, ".tree"
		if blob == nil {
			blob, suffix = d.RootDirectoryDigest, ".directory"
		}
		v.Directories = append(v.Directories, fileLink{Path: d.Path, URL: blobURL(instance, blob, fn, path.Base(d.Path)+suffix), Size: blob.GetSizeBytes()})
	}
	if md := res.ExecutionMetadata; md != nil {
		v.Metadata = prototext.Format(md)
	}
	return v
}

// output reads the start of stdout or stderr for the page.
func (h *Handler) output(r *http.Request, instance string, fn digest.Function, pd *repb.Digest, raw []byte, name string) output {
	if pd == nil {
		return output{Text: visible(strings.ToValidUTF8(string(raw), "\uFFFD"))}
	}
	o := output{URL: blobURL(instance, pd, fn, name)}
	d, err := digest.FromProto(fn, pd, name+"_digest")
	if err != nil {
		o.Text = "(" + status.Convert(err).Message() + ")"
		return o
	}
	rc, err := h.opts.CAS.Get(storage.WithInstance(r.Context(), instance), d, 0)
	if err != nil {
		o.Text = "(" + status.Convert(err).Message() + ")"
		return o
	}
	defer rc.Close()
	buf := make([]byte, min(d.SizeBytes(), inlineOutputBytes))
	n, _ := io.ReadFull(rc, buf)
	o.Truncated = d.SizeBytes() > int64(n)
	text := buf[:n]
	if o.Truncated {
		// The cut may split a character: only what precedes it counts.
		for i := 0; i < utf8.UTFMax && len(text) > 0 && !utf8.Valid(text); i++ {
			text = text[:len(text)-1]
		}
	}
	if !utf8.Valid(text) {
		o.Text = "(not text: download it)"
		return o
	}
	o.Text = visible(string(text))
	return o
}

// failBlob answers a CAS error for the blob the page is about: 404 when it
// is missing, 400 when it is not what the URL said it is, 500 otherwise.
func (h *Handler) failBlob(w http.ResponseWriter, r *http.Request, what string, d digest.Digest, err error) {
	switch status.Code(err) {
	case codes.NotFound:
		h.fail(w, r, http.StatusNotFound, fmt.Sprintf("%s %s is not in the CAS", what, d))
	case codes.InvalidArgument, codes.ResourceExhausted:
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s %s: %s", what, d, status.Convert(err).Message()))
	default:
		h.opts.Logger.Warn("status page: read blob", "digest", d.String(), "error", err)
		h.fail(w, r, http.StatusInternalServerError, fmt.Sprintf("%s %s could not be read", what, d))
	}
}

func actionURL(instance string, d digest.Digest) string {
	return "/action/" + d.Hash() + "-" + strconv.FormatInt(d.SizeBytes(), 10) + instanceQuery(instance, "")
}

func treeURL(instance string, d digest.Digest, at string) string {
	return "/tree/" + d.Hash() + "-" + strconv.FormatInt(d.SizeBytes(), 10) + instanceQuery(instance, at)
}

// blobURL links a download of blob pd (empty when pd is not a digest).
func blobURL(instance string, pd *repb.Digest, fn digest.Function, name string) string {
	d, err := digest.FromProto(fn, pd, "digest")
	if err != nil {
		return ""
	}
	v := url.Values{}
	if instance != "" {
		v.Set("instance", instance)
	}
	v.Set("name", name)
	return "/blob/" + d.Hash() + "-" + strconv.FormatInt(d.SizeBytes(), 10) + "?" + v.Encode()
}

func instanceQuery(instance, at string) string {
	v := url.Values{}
	if instance != "" {
		v.Set("instance", instance)
	}
	if at != "" {
		v.Set("path", at)
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}
