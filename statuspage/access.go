package statuspage

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/hostguard"
)

// This file decides who may use the page, and checks every POST.
//
// With a policy, a caller proves who it is with the same credentials as
// gRPC: an "Authorization: Bearer TOKEN" header on each request (scripts),
// a session cookie from the login form (browsers), or a client certificate
// when the listener serves mTLS. Every page needs the admin permission:
// they show every tenant's arguments, output and blobs, as no other
// permission may see them. Without a policy the page is open to whoever
// reaches the listener, which `paddock up` keeps on loopback; it then
// answers only to requests addressed to localhost or an IP address, so a
// web site cannot rebind its own name to 127.0.0.1 and read or drive it.
//
// A POST must come from this site (http.CrossOriginProtection: the
// browser's Sec-Fetch-Site or Origin) and, unless proven by an
// Authorization header, which a browser never adds by itself, carry the
// CSRF token of the page it was on: an HMAC of the session (or of the
// certificate's identity) under a per-process key.

// sessionCookie holds a session id (sessions.go).
const sessionCookie = "paddock_session"

// maxFormBytes bounds a POSTed form; ours hold a token and a CSRF token.
const maxFormBytes = 64 << 10

// viewer is who is using the page, as the request proved it.
type viewer struct {
	principal *auth.Principal // nil without a policy
	session   string          // the session id, when its cookie proved it
	bearer    bool            // proved by an Authorization header
	binding   string          // what the page's CSRF token is bound to
}

type viewerKey struct{}

// viewerOf returns the viewer guard found; nil outside guard.
func viewerOf(r *http.Request) *viewer {
	v, _ := r.Context().Value(viewerKey{}).(*viewer)
	return v
}

// guard runs next only for a viewer the policy lets in, and, for a POST,
// only with this site's origin and the page's CSRF token. A browser that
// is not signed in is sent to the login page; anything else gets 401.
func (h *Handler) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, code, reason := h.identify(r)
		if code == http.StatusUnauthorized && r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if code != 0 {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="paddock"`)
			}
			h.fail(w, r, code, reason)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
			if err := h.checkPost(r, v); err != nil {
				h.fail(w, r, http.StatusForbidden, err.Error())
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, v)))
	}
}

// identify finds the viewer, or the HTTP code and reason to refuse it.
func (h *Handler) identify(r *http.Request) (*viewer, int, string) {
	p := h.opts.Policy
	if p == nil {
		if !hostguard.Local(r.Host) {
			return nil, http.StatusForbidden, fmt.Sprintf("host %q: without an auth policy this page answers only to localhost and IP addresses", r.Host)
		}
		return &viewer{binding: "open"}, 0, ""
	}
	v := &viewer{}
	var pr *auth.Principal
	var err error
	if hs := r.Header.Values("Authorization"); len(hs) > 0 {
		if len(hs) > 1 {
			return nil, http.StatusUnauthorized, "more than one Authorization header"
		}
		pr, err = p.AuthenticateBearer(hs[0])
		v.bearer, v.binding = true, "bearer"
	} else if id, spr := h.session(r); spr != nil {
		pr, v.session, v.binding = spr, id, "session\x00"+id
	} else if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		pr, err = p.AuthenticateCertificate(r.TLS.VerifiedChains[0][0])
	} else {
		return nil, http.StatusUnauthorized, "not signed in: sign in at /login with a token, or send Authorization: Bearer TOKEN"
	}
	if err != nil {
		h.opts.Logger.Debug("status page: unauthenticated", "path", r.URL.Path, "error", err)
		return nil, http.StatusUnauthorized, status.Convert(err).Message()
	}
	if v.binding == "" {
		v.binding = "certificate\x00" + pr.Name
	}
	if !pr.Holds(auth.Admin) {
		h.opts.Logger.Debug("status page: denied", "path", r.URL.Path, "principal", pr.Name)
		return nil, http.StatusForbidden, fmt.Sprintf("permission %s is not granted to you (%s): the status page shows every tenant's work", auth.Admin, pr.Name)
	}
	v.principal = pr
	return v, 0, ""
}

// session returns the request's session id and its principal; nil
// without a live session.
func (h *Handler) session(r *http.Request) (string, *auth.Principal) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", nil
	}
	return c.Value, h.sessions.get(c.Value)
}

// checkPost refuses a POST from another site, or without the CSRF token
// of the viewer's page.
func (h *Handler) checkPost(r *http.Request, v *viewer) error {
	if err := h.origins.Check(r); err != nil {
		return fmt.Errorf("refused: %v", err)
	}
	if v.bearer {
		return nil
	}
	got := r.PostFormValue("csrf")
	if got == "" {
		return errors.New("the form has no CSRF token: reload the page and try again")
	}
	if !hmac.Equal([]byte(got), []byte(h.csrfToken(v.binding))) {
		return errors.New("the form's CSRF token is not this session's: reload the page and try again")
	}
	return nil
}

// csrfToken is the CSRF token of pages shown to binding.
func (h *Handler) csrfToken(binding string) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
