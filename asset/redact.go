package asset

import (
	"net/url"
	"regexp"
	"strings"
)

// Fetch URLs may carry credentials (https://user:token@mirror/…), which
// the server uses but never writes to its log: a log is read by more
// people, and kept longer, than the client's request. Every URL and
// every error text the fetch path logs goes through redactURL or
// redactText.

// redactURL is uri with any password, each query parameter's value (a
// parameter without one, whole), and its fragment replaced by "xxxxx"
// (url.Redacted): signed and token URLs carry their credentials there
// (?access_token=…, X-Amz-Signature=…, ?TOKEN, #access_token=…). A URI
// that does not parse is scrubbed as text.
func redactURL(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return redactText(uri)
	}
	if u.RawQuery != "" {
		u.RawQuery = redactQuery(u.RawQuery)
	}
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = "xxxxx", ""
	}
	return u.Redacted()
}

// redactQuery is query (without its "?") with each parameter's value, or
// a parameter without a value, replaced by "xxxxx".
func redactQuery(query string) string {
	parts := strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' })
	for i, p := range parts {
		if k, _, ok := strings.Cut(p, "="); ok {
			parts[i] = k + "=xxxxx"
		} else {
			parts[i] = "xxxxx"
		}
	}
	return strings.Join(parts, "&")
}

// userinfoPassword matches the password of a URL's userinfo in free text
// ("scheme://user:PASSWORD@"), such as an error quoting a redirect's
// Location. The password runs to the last "@" of the authority, as a
// parser would read it, so that one with a raw "@" is hidden whole.
var userinfoPassword = regexp.MustCompile(`(//[^/?#@\s"':]*:)[^/?#\s"']*@`)

// redactText is s with every password of a URL in it replaced by "xxxxx".
func redactText(s string) string {
	s = userinfoPassword.ReplaceAllString(s, "${1}xxxxx@")
	s = textQuery.ReplaceAllStringFunc(s, func(q string) string { return "?" + redactQuery(q[1:]) })
	return textFragment.ReplaceAllString(s, "${1}#xxxxx")
}

// textQuery matches a URL's query string in free text, and textFragment
// a URL's fragment (after the URL's scheme and path).
var (
	textQuery    = regexp.MustCompile(`\?[^#\s"']*`)
	textFragment = regexp.MustCompile(`(https?://[^\s"'#]*)#[^\s"']*`)
)
