package asset

import (
	"net/url"
	"regexp"
)

// Fetch URLs may carry credentials (https://user:token@mirror/…), which
// the server uses but never writes to its log: a log is read by more
// people, and kept longer, than the client's request. Every URL and
// every error text the fetch path logs goes through redactURL or
// redactText.

// redactURL is uri with any password, and the value of each query
// parameter, replaced by "xxxxx" (url.Redacted): signed and token URLs
// carry their credentials in the query (?access_token=…,
// X-Amz-Signature=…). A URI that does not parse is scrubbed as text.
func redactURL(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return redactText(uri)
	}
	if u.RawQuery != "" {
		u.RawQuery = queryValue.ReplaceAllString(u.RawQuery, "${1}xxxxx")
	}
	return u.Redacted()
}

// queryValue matches the value of each parameter of a query string, or
// of one quoted in free text.
var queryValue = regexp.MustCompile(`((?:^|[?&;])[^=&;#\s"']*=)[^&;#\s"']*`)

// userinfoPassword matches the password of a URL's userinfo in free text
// ("scheme://user:PASSWORD@"), such as an error quoting a redirect's
// Location. The password runs to the last "@" of the authority, as a
// parser would read it, so that one with a raw "@" is hidden whole.
var userinfoPassword = regexp.MustCompile(`(//[^/?#@\s"':]*:)[^/?#\s"']*@`)

// redactText is s with every password of a URL in it replaced by "xxxxx".
func redactText(s string) string {
	s = userinfoPassword.ReplaceAllString(s, "${1}xxxxx@")
	return textQuery.ReplaceAllStringFunc(s, func(q string) string { return queryValue.ReplaceAllString(q, "${1}xxxxx") })
}

// textQuery matches a URL's query string in free text.
var textQuery = regexp.MustCompile(`\?[^#\s"']*`)
