package configs

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MarshalNoted is Marshal with a comment beside some keys: notes maps a
// key's dotted path ("concurrency", "runner.images.dir") to its text.
// --print-config uses it for the values a role resolves on the machine it
// starts on (a 0 meaning "the number of CPUs", say): the file keeps the
// value it needs, 0, so that it means the same on another machine, and
// the comment names what that is here. Comments do not change what Load
// reads. A path that names no key is an error, so a note cannot silently
// outlive a renamed key.
func MarshalNoted[T any](cfg T, notes map[string]string) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(versioned[T]{Version: Version, Body: cfg}); err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(notes))
	for p := range notes {
		paths = append(paths, p)
	}
	sort.Strings(paths) // the first unknown path, the same one each time
	for _, p := range paths {
		v := lookupKey(&doc, strings.Split(p, "."))
		if v == nil {
			return nil, fmt.Errorf("note for %s: no such key", p)
		}
		v.LineComment = "# " + notes[p]
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// lookupKey is the value node of the key at path below the mapping n; nil
// when there is none.
func lookupKey(n *yaml.Node, path []string) *yaml.Node {
	for _, k := range path {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}
