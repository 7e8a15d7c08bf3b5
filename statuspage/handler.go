// Package statuspage is the scheduler's web page for operators, in the
// manner of Buildbarn's bb_browser: the queues, the workers, the
// operations (queued, running, recently completed, paginated), and a page
// per action digest with its Action, Command, browsable input tree and
// ActionResult, whose outputs download from the CAS.
//
// Every page is rendered on the server with html/template (so everything a
// client wrote, arguments and output included, is escaped) and refreshes
// itself. The pages only read: the scheduler's state through its status
// methods, blobs from the CAS, results from the action cache. Bad input in
// a URL is a 400 page saying why; an action the CAS does not have is a 404.
// The one change the page makes is an operator's: draining and undraining
// a worker, by POST from a button on its row (a GET never changes state).
//
// With an auth policy every page and action needs the admin permission (the
// page shows every tenant's operations, arguments and output, and blobs of
// any instance), proven by a bearer token on each request or by a session
// from the login form; see access.go. Without one, anyone who reaches the
// listener may look and drain, as anyone on the machine may use the
// scheduler's local admin socket.
package statuspage

import (
	"bytes"
	"crypto/rand"
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/paddock-build/paddock/auth"
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
	// Now is the clock for ages and session expiry; default time.Now.
	Now func() time.Time
	// Policy, when set, guards every page and action (access.go). Nil: the
	// page is open to whoever reaches the listener.
	Policy *auth.Policy
	// SessionTTL is how long a login lasts, from the login; default 8h.
	SessionTTL time.Duration
}

// Handler serves the status pages. Safe for concurrent use.
type Handler struct {
	opts      Options
	tmpl      *template.Template
	summaries *summaries
	sessions  *sessions
	csrfKey   []byte // HMAC key of the CSRF tokens, random per process
	origins   *http.CrossOriginProtection
	refusals  refusalLog // sign-ins refused
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
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 8 * time.Hour
	}
	tmpl := template.Must(template.New("").ParseFS(templateFiles, "templates/*.html"))
	return &Handler{
		opts: opts, tmpl: tmpl, summaries: newSummaries(opts.CAS, 10000),
		sessions: newSessions(opts.SessionTTL, maxSessions, opts.Now),
		csrfKey:  []byte(rand.Text()), origins: http.NewCrossOriginProtection(),
	}
}

// Register adds the pages to mux: / (the overview), /action/{digest},
// /tree/{digest} and /blob/{digest}, where a digest is HASH-SIZE; the
// worker actions POST /workers/{id}/drain and /workers/{id}/undrain; and
// /login, /logout.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", h.guard(h.overview))
	mux.HandleFunc("GET /action/{digest}", h.guard(h.action))
	mux.HandleFunc("GET /tree/{digest}", h.guard(h.tree))
	mux.HandleFunc("GET /blob/{digest}", h.guard(h.blob))
	mux.HandleFunc("POST /workers/{id}/drain", h.guard(h.drain))
	mux.HandleFunc("POST /workers/{id}/undrain", h.guard(h.undrain))
	mux.HandleFunc("GET /login", h.loginPage)
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("POST /logout", h.guard(h.logout))
}

// page is what every template gets.
type page struct {
	Title   string
	Refresh int // seconds; 0: no refresh
	Body    any
	// CSRF goes in every form that POSTs (access.go).
	CSRF string
	// User names who is signed in, with a session (for Sign out).
	User string
}

// render executes the named template into a buffer first, so a template
// error is a 500 rather than half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	if v := viewerOf(r); v != nil {
		p.CSRF = h.csrfToken(v.binding)
		if v.session != "" {
			p.User = v.principal.Name
		}
	}
	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, name, p); err != nil {
		h.opts.Logger.Error("status page template", "template", name, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// form-action and frame-ancestors do not fall back to default-src:
	// forms post only here, and no other site frames the buttons.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes()) // the browser may be gone; nothing else to tell it
}

// fail renders the error page with code and the reason.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, code int, reason string) {
	h.render(w, r, code, "error.html", page{Title: http.StatusText(code), Body: reason})
}
