package images

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// pathNames is a list of a layer's entry names as layer.json keeps them.
// encoding/json writes a string that is not valid UTF-8 with U+FFFD for
// its bad bytes, and a layer's names are any bytes: a whiteout of
// "bad\xff\xfe" was read back after a restart as another name, so the
// file it removed came back in the next image built on that layer. Such
// a name, and one holding U+FFFD itself, is kept as rawNamePrefix and the
// base64 of its bytes (no name holds NUL).
type pathNames []string

// rawNamePrefix starts a name kept as base64.
const rawNamePrefix = "\x00base64:"

// errReplacedName is the error of a layer.json written before pathNames,
// holding a name whose bad bytes were replaced: its layer is read again.
var errReplacedName = errors.New("a name's bytes were replaced with U+FFFD when it was written")

func (p pathNames) MarshalJSON() ([]byte, error) {
	out := make([]string, len(p))
	for i, n := range p {
		out[i] = n
		if !utf8.ValidString(n) || strings.ContainsRune(n, utf8.RuneError) {
			out[i] = rawNamePrefix + base64.StdEncoding.EncodeToString([]byte(n))
		}
	}
	return json.Marshal(out)
}

func (p *pathNames) UnmarshalJSON(b []byte) error {
	var in []string
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	for i, n := range in {
		if rest, ok := strings.CutPrefix(n, rawNamePrefix); ok {
			raw, err := base64.StdEncoding.DecodeString(rest)
			if err != nil {
				return fmt.Errorf("name %q: %w", n, err)
			}
			in[i] = string(raw)
		} else if strings.ContainsRune(n, utf8.RuneError) {
			return errReplacedName
		}
	}
	*p = in
	return nil
}
