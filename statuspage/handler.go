// Package statuspage is the scheduler's web page for operators, in the
// manner of Buildbarn's bb_browser: the queues, the workers, the
// operations (queued, running, recently completed, paginated), and a page
// per action digest with its Action, Command, browsable input tree and
// ActionResult, whose outputs download from the CAS.
//
// Every page is rendered on the server with html/template (so everything a
// client wrote, arguments and output included, is escaped) and refreshes
// itself. The page only reads: the scheduler's state through its status
// methods, blobs from the CAS, results from the action cache. Bad input in
// a URL is a 400 page saying why; an action the CAS does not have is a 404.
package statuspage

import (
	"bytes"
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
)

//go:embed templates/*.html
var templateFiles embed.FS

// Options configure a Handler.
type Options struct {
	Scheduler *scheduler.Scheduler
	CAS       storage.BlobStore
	AC        storage.ActionCache
	Logger    *slog.Logger
	// PageSize is how many operations a page lists; default 50.
	PageSize int
	// Refresh is how often the overview reloads itself; default 5s.
	Refresh time.Duration
	// Now is the clock for ages; default time.Now.
	Now func() time.Time
}

// Handler serves the status pages. Safe for concurrent use.
type Handler struct {
	opts      Options
	tmpl      *template.Template
	summaries *summaries
}

// New parses the templates and returns the handler.
func New(opts Options) *Handler {
	if opts.PageSize <= 0 {
		opts.PageSize = 50
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl := template.Must(template.New("").ParseFS(templateFiles, "templates/*.html"))
	return &Handler{opts: opts, tmpl: tmpl, summaries: newSummaries(opts.CAS, 10000)}
}

// Register adds the pages to mux: / (the overview), /action/{digest},
// /tree/{digest} and /blob/{digest}, where a digest is HASH-SIZE.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", h.overview)
	mux.HandleFunc("GET /action/{digest}", h.action)
	mux.HandleFunc("GET /tree/{digest}", h.tree)
	mux.HandleFunc("GET /blob/{digest}", h.blob)
}

// page is what every template gets.
type page struct {
	Title   string
	Refresh int // seconds; 0: no refresh
	Body    any
}

// render executes the named template into a buffer first, so a template
// error is a 500 rather than half a page.
func (h *Handler) render(w http.ResponseWriter, code int, name string, p page) {
	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		h.opts.Logger.Error("status page template", "template", name, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// fail renders the error page with code and the reason.
func (h *Handler) fail(w http.ResponseWriter, code int, reason string) {
	h.render(w, code, "error.html", page{Title: http.StatusText(code), Body: reason})
}
