package configs

import (
	"bytes"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestMarshalNoted: a note is a comment beside its key, at any depth, and
// the file loads back to the same value; without notes the file is what
// the encoder writes for the value itself; a note for a key that does not
// exist is an error naming it.
func TestMarshalNoted(t *testing.T) {
	u := DefaultUp("/d")
	if err := u.Resolve(); err != nil {
		t.Fatal(err)
	}
	var direct bytes.Buffer
	enc := yaml.NewEncoder(&direct)
	enc.SetIndent(2)
	if err := enc.Encode(versioned[Up]{Version: Version, Body: u}); err != nil {
		t.Fatal(err)
	}
	plain, err := Marshal(u)
	if err != nil || string(plain) != direct.String() {
		t.Errorf("Marshal without notes = %v\n%s\nwant\n%s", err, plain, direct.String())
	}

	b, err := MarshalNoted(u, map[string]string{"runner.concurrency": "the number of CPUs: 2 here", "runner.images.dir": "dir here"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n  concurrency: 2 # the number of CPUs: 2 here\n", "\n    dir: \"\" # dir here\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("noted file lacks %q:\n%s", want, b)
		}
	}
	got := DefaultUp("/elsewhere")
	if err := ParseFile(b, &got); err != nil || !sameConfig(got, u) {
		t.Errorf("noted file loads back as %+v (%v), want %+v", got, err, u)
	}

	if _, err := MarshalNoted(u, map[string]string{"runner.concurrenc": "x"}); err == nil || !strings.Contains(err.Error(), "runner.concurrenc") {
		t.Errorf("a note for a missing key: %v, want an error naming it", err)
	}
}
