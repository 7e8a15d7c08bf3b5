package configs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a size in bytes written in YAML as a plain integer or with a
// binary unit: 512KiB, 64MiB, 10GiB, 1TiB.
type ByteSize int64

var units = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// maxByteSize is the largest size a config takes (4 EiB), in every form.
const maxByteSize = 1 << 62

// ParseByteSize parses "10GiB", "4194304" or "0".
func ParseByteSize(s string) (ByteSize, error) {
	given := s
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(s, "-") || err == nil && n > maxByteSize/mult:
		return 0, fmt.Errorf("%q is more than 4 EiB, the largest size a config takes", given)
	case err != nil:
		return 0, fmt.Errorf("%q is not a size (an integer, optionally followed by KiB, MiB, GiB or TiB)", given)
	case n < 0:
		return 0, fmt.Errorf("%q is negative; a size is 0 or more", given)
	}
	return ByteSize(n * mult), nil
}

// UnmarshalYAML implements yaml.Unmarshaler. A YAML integer is taken in
// every form YAML writes one (0x4000000, 67_108_864), as it was when some
// size keys were plain integers; anything else is read by ParseByteSize,
// which refuses floats (1.5GiB, 1e9) rather than round them.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		var v int64
		if err := n.Decode(&v); err == nil && v >= 0 && v <= maxByteSize {
			*b = ByteSize(v)
			return nil
		}
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a size is one value, not a list or keys", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// String writes b with the largest binary unit that divides it ("10GiB",
// "4097"), as ParseByteSize reads it back.
func (b ByteSize) String() string {
	for _, u := range units[:len(units)-1] {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalYAML implements yaml.Marshaler: sizes print as they are written
// (10GiB), a plain number of bytes as a number.
func (b ByteSize) MarshalYAML() (any, error) {
	if s := b.String(); strings.HasSuffix(s, "B") {
		return s, nil
	}
	return int64(b), nil
}

// Set implements flag.Value, so a flag can set a size in a config.
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
