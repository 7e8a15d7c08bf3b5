package statuspage

import (
	"net/http"
	"net/url"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// drain stops giving work to a worker (POST /workers/{id}/drain, the
// Drain button); its running actions finish. It does not wait for them.
func (h *Handler) drain(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := h.opts.Scheduler.Drain(r.Context(), id, false)
	h.workerActionDone(w, r, "drained", id, err)
}

// undrain gives a drained worker work again (POST /workers/{id}/undrain,
// the Undrain button).
func (h *Handler) undrain(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	_, err := h.opts.Scheduler.Undrain(id)
	h.workerActionDone(w, r, "undrained", id, err)
}

// workerActionDone logs who did what and sends the browser back to the
// overview (POST, then redirect, then GET: a reload does not post again),
// or shows why it failed.
func (h *Handler) workerActionDone(w http.ResponseWriter, r *http.Request, done, id string, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		if status.Code(err) == codes.NotFound {
			code = http.StatusNotFound
		}
		h.fail(w, r, code, status.Convert(err).Message()) // it names the worker
		return
	}
	by := "anyone (no auth policy)"
	if v := viewerOf(r); v.principal != nil {
		by = v.principal.Name
	}
	h.opts.Logger.Info("status page: worker "+done, "worker", id, "by", by)
	http.Redirect(w, r, "/#workers", http.StatusSeeOther)
}

// workerURL is the URL of a worker action; the id is one path segment.
func workerURL(id, action string) string {
	return "/workers/" + url.PathEscape(id) + "/" + action
}
