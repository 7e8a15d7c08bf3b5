package configs

import (
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// checkWholeNumbers refuses a YAML float (4.5, 1e3) where t, the type the
// node n decodes into, wants an integer. yaml.v3 would truncate it without
// a word (concurrency: 4.5 became 4); a value of the wrong type is an
// error here like any other. Types with an UnmarshalYAML of their own
// (sizes, durations) check their values themselves.
func checkWholeNumbers(n *yaml.Node, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := checkWholeNumbers(c, t); err != nil {
				return err
			}
		}
		return nil
	case yaml.AliasNode: // *name: what the anchor names
		if n.Alias == nil {
			return nil
		}
		return checkWholeNumbers(n.Alias, t)
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!float" {
			return fmt.Errorf("line %d: %s is not a whole number", n.Line, n.Value)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				if err := checkWholeNumbers(c, t.Elem()); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 1; i < len(n.Content); i += 2 {
				if err := checkWholeNumbers(n.Content[i], t.Elem()); err != nil {
					return err
				}
			}
		}
	case reflect.Struct:
		if n.Kind == yaml.MappingNode {
			return checkStructWholeNumbers(n, t)
		}
	}
	return nil
}

// checkStructWholeNumbers is checkWholeNumbers for a mapping that decodes
// into the struct type t, inline fields included, and the mappings a
// merge key (<<) brings in.
func checkStructWholeNumbers(n *yaml.Node, t reflect.Type) error {
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value != "<<" {
			continue
		}
		merged := []*yaml.Node{n.Content[j+1]}
		if v := n.Content[j+1]; v.Kind == yaml.SequenceNode {
			merged = v.Content
		}
		for _, m := range merged {
			if m.Kind == yaml.AliasNode && m.Alias != nil {
				m = m.Alias
			}
			if m.Kind == yaml.MappingNode {
				if err := checkStructWholeNumbers(m, t); err != nil {
					return err
				}
			}
		}
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if strings.Contains(opts, "inline") {
			if err := checkWholeNumbers(n, f.Type); err != nil {
				return err
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == name {
				if err := checkWholeNumbers(n.Content[j+1], f.Type); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
		}
	}
	return nil
}
