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
//   - a value of the wrong type (routing_properties: foo, a duration
//     written as a bare number), which Decode reports without the key
//     ("cannot unmarshal !!int `30` into time.Duration"): value_errors.go;
//   - a key with an empty value (max_bytes:, max_retries: ~), which
//     Decode took as the default for a scalar and as none for a list;
//   - a negative duration, which the roles took as their default;
//   - a value its struct refuses in checkValue (journal_sync), which the
//     package using it would otherwise refuse only at start, after a
//     file had loaded and --print-config had printed it.
//
// Decode still runs after it, strictly, for everything else (a second
// document, an anchor that contains itself).
type fileCheck struct {
	// role names the file in messages: "worker", "up".
	role string
	// expanding holds the nodes that the aliases being checked name, so
	// an anchor that contains itself (`a: &x [*x]`, `<<: &m {<<: *m}`)
	// is checked once, not until the stack overflows; Decode refuses it.
	expanding map[*yaml.Node]bool
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
	switch n.Kind {
	case 0: // an empty file or fragment
		return nil
	case yaml.DocumentNode:
		for _, d := range n.Content {
			if err := c.node(d, t, path); err != nil {
				return err
			}
		}
		return nil
	case yaml.AliasNode: // *name: what the anchor names
		return c.expand(n, func(a *yaml.Node) error { return c.node(a, t, path) })
	}
	optional := t.Kind() == reflect.Pointer
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isEmpty(n) {
		// An optional key (a backend kind, a shard's weight) is not set,
		// as --print-config writes it; an empty section has no keys. A
		// key's empty value is refused in mapping; this is a list's
		// element or a map's value.
		if optional || t.Kind() == reflect.Struct {
			return nil
		}
		return atKey(path, fmt.Errorf("line %d: the value is empty", n.Line))
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := reflect.New(t).Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			return atKey(path, err)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return atKey(path, wrongValue(n, t))
		}
		for i, e := range n.Content {
			if err := c.node(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return atKey(path, wrongValue(n, t))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return atKey(path, fmt.Errorf("line %d: a key is a name, not %s", k.Line, describe(k)))
			}
			if err := c.node(v, t.Elem(), joinKey(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode { // Decode would name the Go type
			return atKey(path, fmt.Errorf("line %d: want keys under it, not %s", n.Line, describe(n)))
		}
		return c.mapping(n, t, keysOf(t), path)
	default:
		if err := scalarValue(n, t); err != nil {
			return atKey(path, err)
		}
	}
	return nil
}

// mapping is node for a mapping that decodes into the struct type t, whose
// keys are ks, and for the mappings a merge key (<<) brings into it.
func (c fileCheck) mapping(n *yaml.Node, t reflect.Type, ks structKeys, path string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return atKey(path, fmt.Errorf("line %d: a key is a name, not %s", k.Line, describe(k)))
		}
		if k.Value == "<<" {
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			merge := func(m *yaml.Node) error {
				if m.Kind != yaml.MappingNode {
					return nil
				}
				return c.mapping(m, t, ks, path)
			}
			for _, m := range merged {
				var err error
				if m.Kind == yaml.AliasNode {
					err = c.expand(m, merge)
				} else {
					err = merge(m)
				}
				if err != nil {
					return err
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
		if v.Kind == yaml.AliasNode && v.Alias != nil && isEmpty(v.Alias) {
			v = v.Alias
		}
		if isEmpty(v) && f.typ.Kind() != reflect.Pointer && f.typ.Kind() != reflect.Struct {
			return atKey(key, emptyKey(v, f.typ))
		}
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

// expand calls check on what the alias n names, unless that is already
// being checked: an anchor that contains itself.
func (c fileCheck) expand(n *yaml.Node, check func(*yaml.Node) error) error {
	if n.Alias == nil || c.expanding[n.Alias] {
		return nil
	}
	c.expanding[n.Alias] = true
	defer delete(c.expanding, n.Alias)
	return check(n.Alias)
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
