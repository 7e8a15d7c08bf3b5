package configs

import (
	"strings"
	"testing"
)

func TestBackendNamesTheBadKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"backend: {}", "backend: exactly one of"},
		{"backend: {disk: {dir: /d}, remote: {endpoint: x:1}}", "backend: exactly one of"},
		{"backend: {disk: {max_bytes: 1GiB}}", "backend.disk.dir: must be set"},
		{"backend: {remote: {instance_name: a}}", "backend.remote.endpoint: must be set"},
	} {
		cfg := DefaultStorage()
		if err := Parse([]byte(tc.yaml), &cfg); err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		err := cfg.Backend.Validate("backend")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
	cfg := DefaultStorage()
	if err := Parse([]byte("backend: {disk: {dir: /d, max_bytes: 1GiB}}"), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Backend.Validate("backend"); err != nil || cfg.Backend.Disk.MaxBytes != 1<<30 {
		t.Fatalf("good disk backend: %v, %+v", err, cfg.Backend.Disk)
	}
}
