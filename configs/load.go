// Package configs is the one home of Paddock's configuration files: a type
// per role (Storage, Scheduler, Worker, Runner, and Up, which holds the
// four as sections), each with one Default… function, read by one strict
// loader (Load) and written back by Marshal (`paddock ROLE
// --print-config`). Every file starts with `version: 1`; unknown keys,
// empty values and values of the wrong type are errors naming the key, so
// a typo never silently falls back to a default. The packages that do the
// work (scheduler, runner, worker, sandbox, images) take plain Go options
// without file tags: the types here convert to them, and take their
// defaults from them, so each default is written once. Example files live
// beside this file and are loaded by a test, so they cannot drift from the
// types.
package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-build/paddock/internal/smallfile"
)

// Version is the config file format this binary reads and writes. A file
// states its version (`version: 1`), so a later format can change keys
// without an old file being misread.
const Version = 1

// Load reads the config file at path into out, which should already hold
// the defaults; keys present in the file override them. A missing or
// unknown version, unknown keys, a second document, empty values and type
// mismatches are errors naming the file and the line (and the key). T is one of this package's file
// types (Storage, Scheduler, Worker, Runner, Up).
func Load[T any](path string, out *T) error {
	b, err := smallfile.Read(path, "config")
	if err != nil {
		return err
	}
	if err := ParseFile(b, out); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// ParseFile is Load for a whole file already in memory (a ConfigMap's
// data, say): the version key is required.
func ParseFile[T any](b []byte, out *T) error {
	// Read the version first, leniently (the other keys are out's), so a
	// file of another version is refused for its version, not its keys.
	// As a node: an empty version is a version, not a missing one.
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind != yaml.MappingNode && !isEmpty(doc.Content[0]) {
		top := doc.Content[0]
		return fmt.Errorf("line %d: want keys, starting with `version: %d`, not %s", top.Line, Version, describe(top))
	}
	v := versionKey(doc.Content, map[*yaml.Node]bool{})
	if v == nil {
		return fmt.Errorf("line 1: no version key; start the file with `version: %d`", Version)
	}
	if err := new(fileVersion).UnmarshalYAML(v); err != nil {
		return err
	}
	file := versioned[T]{Body: *out}
	if err := decodeStrict(b, &file, roleName(reflect.TypeFor[T]())); err != nil {
		return err
	}
	*out = file.Body
	return nil
}

// Parse decodes a fragment without a version key (a section, as tests
// write them) strictly into out. Files go through Load.
func Parse(b []byte, out any) error {
	return decodeStrict(b, out, roleName(reflect.TypeOf(out)))
}

// Marshal writes cfg as a config file, `version: 1` first, that Load
// reads back to the same value.
func Marshal[T any](cfg T) ([]byte, error) { return MarshalNoted(cfg, nil) }

// decodeStrict decodes b into out, whose keys are role's (see roleName),
// refusing unknown keys and values of the wrong type. fileCheck reads the
// tree first, so that its errors, which name keys as the file writes them,
// come before Decode's, which name Go types.
func decodeStrict(b []byte, out any, role string) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	if err := (fileCheck{role: role, expanding: map[*yaml.Node]bool{}}).node(&doc, reflect.TypeOf(out), ""); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("more than one YAML document")
	}
	return nil
}

// roleName names the file a type (or a pointer to one) is read from, in
// messages: the role whose file it is ("worker"); for a part of one
// parsed alone, its type's name.
func roleName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case reflect.TypeFor[Storage]():
		return "storage"
	case reflect.TypeFor[Scheduler]():
		return "scheduler"
	case reflect.TypeFor[Worker]():
		return "worker"
	case reflect.TypeFor[Runner]():
		return "runner"
	case reflect.TypeFor[Up]():
		return "up"
	}
	return t.Name()
}

// versionKey is the value of the version key in the top-level mapping
// among top (a document's content), or in a mapping it merges (<<); nil
// when there is none. seen holds the mappings searched (a merged anchor
// may contain itself). The file's other keys are left to decodeStrict.
func versionKey(top []*yaml.Node, seen map[*yaml.Node]bool) *yaml.Node {
	var merged []*yaml.Node
	for _, m := range top {
		if m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		if seen[m] {
			continue
		}
		seen[m] = true
		switch m.Kind {
		case yaml.SequenceNode: // <<: [*a, *b]
			merged = append(merged, m.Content...)
			continue
		case yaml.MappingNode:
		default:
			continue
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			switch k, v := m.Content[i], m.Content[i+1]; {
			case k.Kind == yaml.ScalarNode && k.Value == "version":
				if v.Kind == yaml.AliasNode && v.Alias != nil {
					v = v.Alias
				}
				return v
			case k.Kind == yaml.ScalarNode && k.Value == "<<":
				merged = append(merged, v)
			}
		}
	}
	if len(merged) == 0 {
		return nil
	}
	return versionKey(merged, seen)
}

// versioned is a file: its version key, then the role's keys.
type versioned[T any] struct {
	Version fileVersion `yaml:"version"`
	Body    T           `yaml:",inline"`
}

// fileVersion is the version key: 1 is the only one there is.
type fileVersion int

// A quoted 1 is a string in YAML: it is refused, as a quoted number is
// for every other key, saying so.
func (f *fileVersion) UnmarshalYAML(n *yaml.Node) error {
	var v int
	switch err := n.Decode(&v); {
	case isEmpty(n):
		return fmt.Errorf("line %d: version is empty; start the file with `version: %d`", n.Line, Version)
	case n.Kind != yaml.ScalarNode:
		return fmt.Errorf("line %d: version must be the number %d, not %s", n.Line, Version, describe(n))
	case n.Tag == "!!str" && n.Value == strconv.Itoa(Version):
		return fmt.Errorf("line %d: version must be the number %d, not the string %q; remove the quotes", n.Line, Version, n.Value)
	case err != nil || v != Version || n.Tag != "!!int":
		return fmt.Errorf("line %d: version %q is not one this paddock reads (want %d)", n.Line, n.Value, Version)
	}
	*f = fileVersion(v)
	return nil
}
