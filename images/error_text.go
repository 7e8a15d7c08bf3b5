package images

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxQuotedBytes is how much of a string from an image or a registry an
// error quotes.
const maxQuotedBytes = 120

// QuoteShort quotes s, a string that came from an image or a registry (an
// entry name, a config's os, an index's platforms, a registry's error
// codes), for an error message, cut to maxQuotedBytes and saying how long
// it was. Such a string can be megabytes long, and errors travel to logs
// and to the client: a 7 MB "os" in a config made a reply larger than
// gRPC allows, and the action was retried, pulling the image each time.
// Every error that quotes such a string quotes it through here.
func QuoteShort(s string) string {
	if len(s) <= maxQuotedBytes {
		return strconv.Quote(s)
	}
	cut := maxQuotedBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:cut], len(s))
}
