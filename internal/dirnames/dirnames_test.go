package dirnames

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReadListsEveryNameAndNothingElse(t *testing.T) {
	dir := t.TempDir()
	want := []string{"a", "b.txt", "sub"}
	for _, n := range want[:2] {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "inner"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	slices.Sort(got)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Read = %q, %v; want %q", got, err, want)
	}
	if _, err := Read(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a missing directory: %v, want ErrNotExist", err)
	}
}
