package asset

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// Bazel's remote downloader (GrpcRemoteDownloader) sends the headers of a
// download as qualifiers: "http_header:NAME" for every URI, and, with
// --experimental_remote_downloader_propagate_credentials, the
// credentials of uris[IDX] as "http_header_url:IDX:NAME" (IDX from 0);
// the second wins over the first for its URI. The names are Bazel's, not
// the qualifier lexicon's (qualifiers.md defines none for headers).
//
// Their values are a tenant's credentials, sent on that tenant's behalf:
// they go only to the origin (scheme, host and port) of the URI they are
// for (downloader.clientFor), appear in no log, message or record file, and a
// record made with them answers another request only when the same
// headers come with it, or when checksum.sri proved the content, which
// is then the same bytes for everyone (keyQualifiers).
//
// Bazel before 7 (4.2.3 among them) sent a URI's credentials, from
// .netrc or auth_patterns, as one "bazel.auth_headers" qualifier: a JSON
// object from each URL to its headers, each a string (a list of strings
// in later versions). It was refused as unknown, and any Bazel 4 with a
// .netrc entry for a mirror could not use the downloader (outside probe).
// Its headers count as http_header_url ones for the URIs the object
// names; URLs the request does not name are ignored.
const (
	qualifierHeaderPrefix    = "http_header:"
	qualifierHeaderURLPrefix = "http_header_url:"
	qualifierAuthHeaders     = "bazel.auth_headers"
)

// isHeaderQualifier reports whether name is one of the header qualifiers,
// well formed or not.
func isHeaderQualifier(name string) bool {
	return strings.HasPrefix(name, qualifierHeaderPrefix) || strings.HasPrefix(name, qualifierHeaderURLPrefix) || name == qualifierAuthHeaders
}

// refusedHeaders are the headers a client may not set, whatever the
// letter case. Each would let a tenant steer the server's own request
// rather than say who it is to the origin:
//   - Host, Content-Length, Transfer-Encoding, Trailer, TE, Connection,
//     Keep-Alive, Upgrade, Expect, HTTP2-Settings frame the message and
//     the connection, which the server shares between tenants (request
//     smuggling, a connection upgraded to another protocol);
//   - Proxy-* speak to the operator's egress proxy, not the origin;
//   - Accept-Encoding: the server asks for no encoding and undoes only
//     gzip (content_encoding.go); another would be stored as content;
//   - Forwarded, Via, X-Forwarded-*, X-Real-Ip tell an origin behind a
//     proxy where the request comes from, which origins trust for access
//     rules and rate limits: the farm would vouch for a tenant's claim.
//
// Conditional and range headers are allowed: only a 200 is content
// (checkResponse), so they can make a fetch fail, never store part of a
// file.
var refusedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Te": true,
	"Connection": true, "Keep-Alive": true, "Upgrade": true, "Expect": true, "Http2-Settings": true,
	"Accept-Encoding": true, "Forwarded": true, "Via": true, "X-Real-Ip": true,
}

// refusedHeaderPrefixes are refused like refusedHeaders, by prefix.
var refusedHeaderPrefixes = []string{"Proxy-", "X-Forwarded-"}

// originHeaders are the headers of a download's requests, by the index of
// the URI in the request.
type originHeaders struct {
	all    http.Header         // http_header:NAME
	forURI map[int]http.Header // http_header_url:IDX:NAME
}

// of returns the headers of the request to uris[i]: all, with forURI[i]
// replacing any of the same name. nil when there are none.
func (h originHeaders) of(i int) http.Header {
	if len(h.all) == 0 && len(h.forURI[i]) == 0 {
		return nil
	}
	out := h.all.Clone()
	if out == nil {
		out = http.Header{}
	}
	for name, v := range h.forURI[i] {
		out[name] = v
	}
	return out
}

// parseHeaders reads the header qualifiers of a FetchBlob that downloads
// from nuris URIs. A refusal is a BadRequest violation naming the
// qualifier, never quoting its value.
func parseHeaders(qs []*rapb.Qualifier, uris []string) (originHeaders, *errdetails.BadRequest_FieldViolation) {
	nuris := len(uris)
	h := originHeaders{forURI: map[int]http.Header{}}
	for _, q := range qs {
		if q.Name == qualifierAuthHeaders {
			if bad := h.addAuthHeaders(q.Value, uris); bad != "" {
				return originHeaders{}, &errdetails.BadRequest_FieldViolation{Field: "qualifiers.name", Description: fmt.Sprintf("%q: %s", q.Name, bad)}
			}
			continue
		}
		scope, name, bad := headerTarget(q.Name, nuris)
		if bad == "" && scope == notHeader {
			continue
		}
		if bad == "" {
			bad = checkHeader(name, q.Value)
		}
		if bad != "" {
			return originHeaders{}, &errdetails.BadRequest_FieldViolation{Field: "qualifiers.name", Description: fmt.Sprintf("%q: %s", q.Name, bad)}
		}
		if !h.set(scope, name, []string{q.Value}) {
			return originHeaders{}, &errdetails.BadRequest_FieldViolation{Field: "qualifiers.name",
				Description: fmt.Sprintf("%q: another qualifier names header %s for the same URIs", q.Name, http.CanonicalHeaderKey(name))}
		}
	}
	return h, nil
}

// set gives header name the values for scope (allURIs or a URI's index),
// unless it has some already: then it reports false.
func (h *originHeaders) set(scope int, name string, values []string) bool {
	m := h.all
	if scope != allURIs {
		m = h.forURI[scope]
	}
	if m == nil {
		m = http.Header{}
	}
	key := http.CanonicalHeaderKey(name)
	if _, dup := m[key]; dup {
		return false
	}
	m[key] = values
	if scope == allURIs {
		h.all = m
	} else {
		h.forURI[scope] = m
	}
	return true
}

// The scopes headerTarget returns besides a URI index.
const (
	allURIs   = -1 // http_header:NAME
	notHeader = -2 // not a header qualifier
)

// headerTarget splits a qualifier name into the header's scope (allURIs,
// a URI index for http_header_url:IDX:NAME, or notHeader) and its name;
// bad says what is wrong with a malformed one.
func headerTarget(qname string, nuris int) (scope int, name, bad string) {
	if name, ok := strings.CutPrefix(qname, qualifierHeaderPrefix); ok {
		return allURIs, name, ""
	}
	rest, ok := strings.CutPrefix(qname, qualifierHeaderURLPrefix)
	if !ok {
		return notHeader, "", ""
	}
	idx, name, ok := strings.Cut(rest, ":")
	if !ok {
		return notHeader, "", "not of the form http_header_url:IDX:NAME"
	}
	i, err := strconv.Atoi(idx)
	if err != nil || strconv.Itoa(i) != idx || i < 0 {
		return notHeader, "", "IDX is not a URI index (a decimal number from 0)"
	}
	if i >= nuris {
		return notHeader, "", fmt.Sprintf("IDX %d is out of range: the request names %d URIs", i, nuris)
	}
	return i, name, ""
}

// checkHeader says what is wrong with a header a client asks for, or "".
// It names the header, never the value.
func checkHeader(name, value string) string {
	if !httpguts.ValidHeaderFieldName(name) {
		return "the header name is not an HTTP token"
	}
	key := http.CanonicalHeaderKey(name)
	if refusedHeaders[key] {
		return fmt.Sprintf("header %s is the server's to set, not the client's", key)
	}
	for _, p := range refusedHeaderPrefixes {
		if strings.HasPrefix(key, p) {
			return fmt.Sprintf("header %s is the server's to set, not the client's", key)
		}
	}
	// CR, LF and NUL would end the header or the request (header
	// injection); RFC 9110 allows no other control character but HTAB.
	if !httpguts.ValidHeaderFieldValue(value) {
		return "the value holds a control character (such as CR, LF or NUL)"
	}
	return ""
}

// origin is a URL's scheme, host and port, the unit credentials are
// scoped to: a port left out is the scheme's default.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// dropHeadersOffOrigin removes hdr's headers from the redirect req
// once any hop (via[1:] and req) left the origin of via[0], even if
// a later one comes back (the redirect that came back was the other
// origin's choice). Go's client drops only Authorization, Cookie and
// a few more, and only for another domain that is not a subdomain,
// whatever the scheme and port (net/http shouldCopyHeaderOnRedirect, Go
// 1.26): a header such as X-Api-Key, or a token sent to https://host
// redirected to http://host, would travel on.
func dropHeadersOffOrigin(hdr http.Header, req *http.Request, via []*http.Request) {
	home := origin(via[0].URL)
	left := origin(req.URL) != home
	for _, r := range via[1:] {
		left = left || origin(r.URL) != home
	}
	if left {
		for name := range hdr {
			req.Header.Del(name)
		}
	}
}

// keyQualifiers are the qualifiers of a record's key. A blob request
// carrying checksum.sri leaves its header qualifiers out: a record with
// that checksum holds content proved to have it (downloaded and checked,
// or checked when pushed), which is the same bytes whatever credentials
// fetched it, and which anyone knowing its checksum may read from the CAS
// anyway. Otherwise they are part of the key, so a record made with
// credentials answers only a request carrying the same ones; the key is
// a hash, so the record's file name does not show them.
func keyQualifiers(k kind, qs []*rapb.Qualifier) []*rapb.Qualifier {
	if k != kindBlob {
		return qs
	}
	if _, ok := qualifier(qs, qualifierChecksum); !ok {
		return qs
	}
	return withoutHeaders(qs)
}

// withoutHeaders is qs without its header qualifiers: qs itself when it
// has none, the common case.
func withoutHeaders(qs []*rapb.Qualifier) []*rapb.Qualifier {
	n := 0
	for _, q := range qs {
		if isHeaderQualifier(q.Name) {
			n++
		}
	}
	if n == 0 {
		return qs
	}
	out := make([]*rapb.Qualifier, 0, len(qs)-n)
	for _, q := range qs {
		if !isHeaderQualifier(q.Name) {
			out = append(out, q)
		}
	}
	return out
}

// addAuthHeaders adds the headers of a bazel.auth_headers value to those
// of the URIs it names; it says what is wrong with the value, naming no
// header's value, or "".
func (h *originHeaders) addAuthHeaders(value string, uris []string) string {
	var byURL map[string]map[string]json.RawMessage
	if err := json.Unmarshal([]byte(value), &byURL); err != nil {
		return "not a JSON object of URLs to objects of headers"
	}
	n := 0
	for i, uri := range uris {
		for name, raw := range byURL[uri] {
			var values []string
			var one string
			switch {
			case string(raw) == "null":
				return fmt.Sprintf("header %s of uris[%d]: want a string or a list of strings", http.CanonicalHeaderKey(name), i)
			case json.Unmarshal(raw, &one) == nil:
				values = []string{one}
			case json.Unmarshal(raw, &values) != nil || len(values) == 0:
				return fmt.Sprintf("header %s of uris[%d]: want a string or a list of strings", http.CanonicalHeaderKey(name), i)
			}
			// As many as qualifiers may name: one value must not carry
			// thousands of headers past that bound.
			if n += len(values); n > maxQualifiers {
				return fmt.Sprintf("more than %d headers", maxQualifiers)
			}
			for _, v := range values {
				if bad := checkHeader(name, v); bad != "" {
					return bad
				}
			}
			if !h.set(i, name, values) {
				return fmt.Sprintf("header %s of uris[%d] is named twice", http.CanonicalHeaderKey(name), i)
			}
		}
	}
	return ""
}
