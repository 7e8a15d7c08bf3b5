package configs

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// fileCheck reads a file's YAML tree beside the Go type it decodes into,
// before yaml.v3's Decode does, for what Decode lets through or reports in
// Go's terms. Each error names the key by its path in the file
// (worker.concurrency, backend.sharded.shards[1].weight) and its line:
//   - an unknown key. Decode names the Go type
//     (configs.versioned[github.com/…/configs.Worker]), which an operator
//     cannot act on; here it is the role's file or section, with the
//     closest known key when one is near (a typo);
//   - a float (4.5, 1e3) where an integer is wanted, which Decode
//     truncates without a word (concurrency: 4.5 became 4);
//   - a value whose type reads itself (a size): its error, with the key;
//   - a value where a section of keys is wanted (worker: 4);
//   - a negative duration, which the roles took as their default;
//   - a value its struct refuses in checkValue (journal_sync), which the
//     package using it would otherwise refuse only at start, after a
//     file had loaded and --print-config had printed it.
//
// Decode still runs after it, strictly, for everything else (a string
// where a list is wanted, a second document).
type fileCheck struct {
	// role names the file in messages: "worker", "up".
	role string
}

// valueChecker is a file type with string keys whose values are checked
// when the file is read: checkValue returns why value is not one key
// takes, or nil (also for the keys it does not check).
type valueChecker interface {
	checkValue(key, value string) error
}

var (
	unmarshalerType  = reflect.TypeFor[yaml.Unmarshaler]()
	valueCheckerType = reflect.TypeFor[valueChecker]()
	durationType     = reflect.TypeFor[time.Duration]()
)

// node checks n, which decodes into a t at path ("" for the file).
func (c fileCheck) node(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, d := range n.Content {
			if err := c.node(d, t, path); err != nil {
				return err
			}
		}
		return nil
	case yaml.AliasNode: // *name: what the anchor names
		if n.Alias == nil {
			return nil
		}
		return c.node(n.Alias, t, path)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if n.Tag == "!!null" { // Decode leaves the value as it was
			return nil
		}
		if err := reflect.New(t).Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			return atKey(path, err)
		}
		return nil
	}
	if t == durationType && n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		if d, err := time.ParseDuration(n.Value); err == nil && d < 0 {
			return atKey(path, fmt.Errorf("line %d: %s is negative; a duration is 0 or more", n.Line, n.Value))
		}
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!float" {
			return atKey(path, fmt.Errorf("line %d: %s is not a whole number", n.Line, n.Value))
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for i, e := range n.Content {
				if err := c.node(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := c.node(n.Content[i+1], t.Elem(), joinKey(path, n.Content[i].Value)); err != nil {
					return err
				}
			}
		}
	case reflect.Struct:
		switch {
		case n.Kind == yaml.MappingNode:
			return c.mapping(n, t, keysOf(t), path)
		case n.Kind == yaml.SequenceNode || n.Kind == yaml.ScalarNode && n.Tag != "!!null": // Decode would name the Go type
			return atKey(path, fmt.Errorf("line %d: want keys under it, not %s", n.Line, describe(n)))
		}
	}
	return nil
}

// describe is what a node that should be a mapping is, for an error.
func describe(n *yaml.Node) string {
	if n.Kind == yaml.SequenceNode {
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

// mapping is node for a mapping that decodes into the struct type t, whose
// keys are ks, and for the mappings a merge key (<<) brings into it.
func (c fileCheck) mapping(n *yaml.Node, t reflect.Type, ks structKeys, path string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			continue // not a key yaml.v3 takes: Decode refuses it
		}
		if k.Value == "<<" {
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				if m.Kind == yaml.AliasNode && m.Alias != nil {
					m = m.Alias
				}
				if m.Kind == yaml.MappingNode {
					if err := c.mapping(m, t, ks, path); err != nil {
						return err
					}
				}
			}
			continue
		}
		f, known := ks.field[k.Value]
		if !known {
			if ks.anyKey {
				continue
			}
			return c.unknownKey(k, path, ks.names)
		}
		key := joinKey(path, k.Value)
		if err := c.node(v, f.typ, key); err != nil {
			return err
		}
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		if f.owner.Implements(valueCheckerType) && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			vc := reflect.Zero(f.owner).Interface().(valueChecker)
			if err := vc.checkValue(k.Value, v.Value); err != nil {
				return atKey(key, fmt.Errorf("line %d: %w", v.Line, err))
			}
		}
	}
	return nil
}

// unknownKey is the error for the key k, which no field of the mapping at
// path takes; known are the keys that mapping does take. Both keys are
// written as paths from the file's top (worker.concurency in up's file).
func (c fileCheck) unknownKey(k *yaml.Node, path string, known []string) error {
	msg := fmt.Sprintf("line %d: unknown key %q in the %s config", k.Line, joinKey(path, k.Value), c.role)
	if near := closestKey(k.Value, known); near != "" {
		msg += fmt.Sprintf("; did you mean %q?", joinKey(path, near))
	}
	return errors.New(msg)
}

// structKeys are the keys a struct type takes in a file, as yaml.v3 reads
// them: its fields' names (the yaml tag's, else the field's in lower case),
// an inline struct's keys as its own.
type structKeys struct {
	names []string // in field order
	field map[string]keyField
	// anyKey: an inline map takes every key no field does.
	anyKey bool
}

// keyField is the field a key decodes into: its type, and the struct
// whose field it is (for an inline struct's keys, the inline struct).
type keyField struct {
	typ, owner reflect.Type
}

func keysOf(t reflect.Type) structKeys {
	ks := structKeys{field: map[string]keyField{}}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if slices.Contains(strings.Split(opts, ","), "inline") {
				switch f.Type.Kind() {
				case reflect.Map:
					ks.anyKey = true
				case reflect.Struct:
					add(f.Type)
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			ks.names = append(ks.names, name)
			ks.field[name] = keyField{typ: f.Type, owner: t}
		}
	}
	add(t)
	return ks
}

// closestKey is the key of known nearest to key, within two edits (a
// typo), or "" when none is; the first of several as near.
func closestKey(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes
// (keys are ASCII).
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// joinKey is the path of key in the mapping at path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// atKey prefixes err with the key path it is about, if any.
func atKey(path string, err error) error {
	if path == "" {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}
