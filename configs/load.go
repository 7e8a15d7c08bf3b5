// Package configs holds Paddock's configuration structs, their defaults and
// a strict loader: unknown keys are errors, so a typo never silently falls
// back to a default. Example files live beside this file and are loaded by a
// test, so they cannot drift from the structs.
package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path into out, which should already hold the
// defaults; keys present in the file override them. Unknown keys, a second
// document and type mismatches are errors naming the file and line.
func Load(path string, out any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := Parse(b, out); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Parse is Load for bytes already in memory.
func Parse(b []byte, out any) error {
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
