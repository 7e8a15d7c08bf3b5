// Package instancename holds REv2's rule for instance names: which names
// a ByteStream resource name can carry, so that every RPC taking an
// instance_name accepts exactly the names its blobs can be read back under.
//
// It is a package of its own, below rev2, only because package digest
// parses resource names and must apply the same rule, while rev2 imports
// digest. Services call rev2.CheckInstanceName, which gives the
// INVALID_ARGUMENT status; package digest calls Check and IsReserved here.
// Everything in the package is pure.
package instancename

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// IsReserved reports whether seg is one of the keywords that the REv2 spec
// (remote_execution.proto, the ByteStream resource name section) says no
// path segment of an instance name may equal: a resource name's instance
// name ends at its first such segment, so a name containing one could not
// be told apart from the resource name's own parts.
func IsReserved(seg string) bool {
	switch seg {
	case "blobs", "uploads", "actions", "actionResults", "operations", "capabilities", "compressed-blobs":
		return true
	}
	return false
}

// CheckSegment refuses the path segments no part of a resource name may
// be: empty ones (a leading, trailing or doubled slash), which do not
// survive path handling, and "." or "..", which a path resolves away, so
// that two spellings would name one blob. The error says what the segment
// is, phrased to follow the name it belongs to.
func CheckSegment(seg string) error {
	switch seg {
	case "":
		return errors.New("has an empty path segment (a leading, trailing or doubled '/')")
	case ".", "..":
		return fmt.Errorf("has the segment %q; a '.' or '..' segment is not allowed", seg)
	}
	return nil
}

// MaxBytes bounds an instance name. Clients name a few instances of a few
// dozen bytes; a name is held by every queued operation, keyed in the
// worker's caches and repeated in messages and metric labels. Storage took
// a name of a million bytes, and answered NOT_FOUND with a status message
// as long, before this bound was checked where every RPC checks the name.
const MaxBytes = 1024

// Check returns nil if name can be an instance name: empty (the default
// instance), or segments separated by '/' that each pass CheckSegment and
// none of which IsReserved, with at most MaxBytes in all and no control
// or bidirectional formatting characters (a name is a metric label and a
// log field: a NUL or an escape sequence in it reached an operator's
// terminal through the unauthenticated /metrics page). Anything else, spaces and non-ASCII
// letters included, is left to the server's own meaning of names, as the
// spec says. The error names the offending segment and is phrased to follow
// the name (`"a/blobs" has the segment "blobs", …`).
func Check(name string) error {
	if name == "" {
		return nil
	}
	return CheckSegments(strings.Split(name, "/"))
}

// CheckSegments is Check for a name already split at '/', as a resource
// name parser has it; no segments is the empty name. Taking the segments
// keeps "/x" apart from "x": its empty first segment is refused, where
// joining the segments before "x" would have made it the default instance.
func CheckSegments(segs []string) error {
	n := max(len(segs)-1, 0) // the slashes
	for _, seg := range segs {
		n += len(seg)
	}
	if n > MaxBytes {
		return fmt.Errorf("is %d bytes; an instance name may have at most %d", n, MaxBytes)
	}
	for _, seg := range segs {
		if i := strings.IndexFunc(seg, isControl); i >= 0 {
			r, _ := utf8.DecodeRuneInString(seg[i:])
			return fmt.Errorf("has the control character %U; an instance name may have none", r)
		}
		if err := CheckSegment(seg); err != nil {
			return err
		}
		if IsReserved(seg) {
			return fmt.Errorf("has the segment %q, which REv2 reserves: a ByteStream resource name could not tell where the instance name ends", seg)
		}
	}
	return nil
}

// isControl reports whether r is a control character (C0, DEL or C1: an
// 8-bit CSI starts an escape sequence as ESC does) or a bidirectional
// formatting character, which makes a name read in a log or a terminal
// as another.
func isControl(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }
