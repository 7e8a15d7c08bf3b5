package statuspage

import (
	"fmt"
	"strings"
	"unicode"
)

// visible shows the control characters of s (C0 but newline and tab, DEL,
// C1) as \xNN or \uNNNN. html/template escapes markup, but passes escape
// sequences through: an action's stdout or arguments holding
// "\x1b]0;TITLE\a" retitled, or recoloured, the terminal of whoever read
// the page with curl. s is valid UTF-8 (the pages show nothing else).
func visible(s string) string {
	if !strings.ContainsFunc(s, isControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !isControl(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// isControl: C0 (but newline and tab), DEL and C1, as unicode.IsControl.
func isControl(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }

// visibleAll is visible of each of args.
func visibleAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = visible(a)
	}
	return out
}
