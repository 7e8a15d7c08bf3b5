package statuspage

import (
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

type treeBody struct {
	Instance, Digest, Path string
	Entries                []treeEntry
}

type treeEntry struct {
	Name, Kind, URL, Target string
	Size                    int64
	Executable              bool
}

// tree lists one Directory of an input tree:
// /tree/HASH-SIZE?instance=NAME&path=WHERE (path is only shown, to say
// where in the tree the directory is).
func (h *Handler) tree(w http.ResponseWriter, r *http.Request) {
	d, err := parseDigest(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	q := r.URL.Query()
	instance, at := q.Get("instance"), q.Get("path")
	dir := &repb.Directory{}
	if err := storage.GetProto(storage.WithInstance(r.Context(), instance), h.opts.CAS, d, dir, maxMessageBytes); err != nil {
		h.failBlob(w, r, "directory", d, err)
		return
	}
	body := treeBody{Instance: instance, Digest: d.String(), Path: "/" + at}
	for _, sub := range dir.Directories {
		e := treeEntry{Name: sub.Name + "/", Kind: "directory"}
		if sd, err := digest.FromProto(d.Function(), sub.Digest, "digest"); err == nil {
			e.URL, e.Size = treeURL(instance, sd, path.Join(at, sub.Name)), sd.SizeBytes()
		}
		body.Entries = append(body.Entries, e)
	}
	for _, f := range dir.Files {
		body.Entries = append(body.Entries, treeEntry{
			Name: f.Name, Kind: "file", URL: blobURL(instance, f.Digest, d.Function(), f.Name),
			Size: f.Digest.GetSizeBytes(), Executable: f.IsExecutable,
		})
	}
	for _, l := range dir.Symlinks {
		body.Entries = append(body.Entries, treeEntry{Name: l.Name, Kind: "symlink", Target: l.Target})
	}
	h.render(w, r, http.StatusOK, "tree.html", page{Title: "Directory " + d.String(), Body: body})
}

// blob downloads a blob: /blob/HASH-SIZE?name=FILE. It is always an
// attachment of type application/octet-stream, so a browser never renders
// what an action wrote as a page of this site.
func (h *Handler) blob(w http.ResponseWriter, r *http.Request) {
	d, err := parseDigest(r)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	rc, err := h.opts.CAS.Get(storage.WithInstance(r.Context(), r.URL.Query().Get("instance")), d, 0)
	if err != nil {
		h.failBlob(w, r, "blob", d, err)
		return
	}
	defer rc.Close()
	name := path.Base(r.URL.Query().Get("name"))
	if name == "." || name == "/" {
		name = d.Hash()
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	w.Header().Set("Content-Length", strconv.FormatInt(d.SizeBytes(), 10))
	if _, err := io.Copy(w, rc); err != nil {
		// The header is gone; all that is left is to cut the response.
		h.opts.Logger.Warn("status page: blob download", "digest", d.String(), "error", status.Convert(err).Message())
		panic(http.ErrAbortHandler)
	}
}
