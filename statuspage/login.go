package statuspage

import (
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
)

// loginBody is what the login page shows.
type loginBody struct {
	Next  string // where to go once signed in
	Error string
}

// loginPage is the form that takes a token (GET /login). Without a policy
// there is nothing to sign in to.
func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if h.opts.Policy == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	h.render(w, r, http.StatusOK, "login.html", page{Title: "Sign in", Body: loginBody{Next: safeNext(r.URL.Query().Get("next"))}})
}

// login checks the token of the form (POST /login) as gRPC checks a
// bearer token, and for an admin starts a session: an HttpOnly,
// SameSite=Strict cookie holding a random id the server keeps until it
// expires. Only this site may post it (a forged login would sign the
// operator in as someone else).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.opts.Policy == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := h.origins.Check(r); err != nil {
		h.fail(w, r, http.StatusForbidden, "refused: "+err.Error())
		return
	}
	body := loginBody{Next: safeNext(r.PostFormValue("next"))}
	pr, until, err := h.opts.Policy.AuthenticateBearerUntil("Bearer " + strings.TrimSpace(r.PostFormValue("token")))
	code := http.StatusUnauthorized
	if err == nil && !pr.Holds(auth.Admin) {
		code, err = http.StatusForbidden, fmt.Errorf("permission %s is not granted to you (%s): the status page shows every tenant's work", auth.Admin, pr.Name)
	}
	if err != nil {
		body.Error = status.Convert(err).Message()
		h.refusals.refused(h.opts.Logger, h.opts.Now(), r.RemoteAddr, body.Error)
		h.render(w, r, code, "login.html", page{Title: "Sign in", Body: body})
		return
	}
	id, lasts := h.sessions.create(pr, until)
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/",
		MaxAge: max(1, int(lasts.Seconds())), HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	h.opts.Logger.Info("status page: signed in", "principal", pr.Name, "remote", r.RemoteAddr)
	http.Redirect(w, r, body.Next, http.StatusSeeOther)
}

// logout ends the session (POST /logout, from the page's Sign out).
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	if v := viewerOf(r); v.session != "" {
		h.sessions.end(v.session)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// safeNext keeps a redirect after login on this site: a path, never
// "//host" or "/\host", which browsers read as another site. Browsers
// also drop tabs and newlines anywhere in a URL ("/\t/host" is "//host")
// and read a backslash as a slash, so a path with a control character or
// a backslash anywhere is refused too.
func safeNext(next string) string {
	bad := func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.IndexFunc(next, bad) >= 0 {
		return "/"
	}
	return next
}
