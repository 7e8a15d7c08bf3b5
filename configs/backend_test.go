package configs

import (
	"os"
	"strings"
	"testing"
)

func TestBackendNamesTheBadKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"backend: {}", "backend: exactly one of"},
		{"backend: {disk: {dir: /d}, remote: {endpoint: x:1}}", "backend: exactly one of disk, remote, s3, cached, sharded or mirrored must be set, found 2 (disk, remote)"},
		{"backend: {disk: {max_bytes: 1GiB}}", "backend.disk.dir: must be set"},
		{"backend: {remote: {instance_name: a}}", "backend.remote.endpoint: must be set"},
		{"backend: {s3: {bucket: b}}", "backend.s3.endpoint: must be set"},
		{"backend: {s3: {endpoint: 'https://s3:9000', bucket: b}}", "backend.s3.endpoint: give host:port only"},
		{"backend: {s3: {endpoint: 's3:9000'}}", "backend.s3.bucket: must be set"},
		{"backend: {s3: {endpoint: 's3:9000', bucket: b, access_key_id: k}}", "backend.s3: access_key_id and secret_access_key_file"},
		{"backend: {s3: {endpoint: 's3:9000', bucket: b}, disk: {dir: /d}}", "backend: exactly one of disk, remote, s3, cached, sharded or mirrored must be set, found 2 (disk, s3)"},
		{"backend: {cached: {max_bytes: 1GiB, backend: {remote: {endpoint: x:1}}}}", "backend.cached.dir: must be set"},
		{"backend: {cached: {dir: /c, backend: {remote: {endpoint: x:1}}}}", "backend.cached.max_bytes: must be set"},
		{"backend: {cached: {dir: /c, max_bytes: 1GiB}}", "backend.cached.backend: must be set"},
		{"backend: {cached: {dir: /c, max_bytes: 1GiB, backend: {remote: {}}}}", "backend.cached.backend.remote.endpoint: must be set"},
		{"backend: {sharded: {}}", "backend.sharded.shards: at least one shard"},
		{"backend: {sharded: {shards: [{name: a, backend: {disk: {dir: /a}}}, {name: b, backend: {}}]}}",
			"backend.sharded.shards[1].backend: exactly one of"},
		{"backend: {sharded: {shards: [{name: a, backend: {disk: {dir: /a}}}, {name: a, backend: {disk: {dir: /b}}}]}}",
			`backend.sharded.shards[1].name: "a" is also the name of shards[0]`},
		{"backend: {sharded: {shards: [{backend: {disk: {dir: /a}}}]}}", "backend.sharded.shards[0].name: must be set"},
		{"backend: {sharded: {shards: [{name: a, weight: 0, backend: {disk: {dir: /a}}}]}}", "backend.sharded.shards[0].weight: must be a positive number, got 0"},
		{"backend: {sharded: {shards: [{name: a, weight: -1, backend: {disk: {dir: /a}}}]}}", "backend.sharded.shards[0].weight: must be a positive number"},
		{"backend: {sharded: {shards: [{name: a}]}}", "backend.sharded.shards[0].backend: must be set"},
		{"backend: {mirrored: {backends: [{disk: {dir: /a}}]}}", "backend.mirrored.backends: exactly two backends are needed, found 1"},
		{"backend: {mirrored: {backends: [{disk: {dir: /a}}, {remote: {}}]}}", "backend.mirrored.backends[1].remote.endpoint: must be set"},
		{"backend: {sharded: {shards: [{name: a, backend: {mirrored: {backends: [{disk: {dir: /a}}, {disk: {}}]}}}]}}",
			"backend.sharded.shards[0].backend.mirrored.backends[1].disk.dir: must be set"},
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

func TestBackendTree(t *testing.T) {
	cfg := DefaultStorage()
	err := Parse([]byte(`
backend:
  cached:
    dir: /cache
    max_bytes: 2GiB
    backend:
      sharded:
        shards:
        - name: s0
          backend: {remote: {endpoint: "s0:8980"}}
        - name: s1
          weight: 2.5
          backend:
            mirrored:
              backends:
              - remote: {endpoint: "s1a:8980"}
              - remote: {endpoint: "s1b:8980"}
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Backend.Validate("backend"); err != nil {
		t.Fatal(err)
	}
	shards := cfg.Backend.Cached.Backend.Sharded.Shards
	if cfg.Backend.Cached.MaxBytes != 2<<30 || shards[0].WeightOrDefault() != 1 || shards[1].WeightOrDefault() != 2.5 ||
		shards[1].Backend.Mirrored.Backends[1].Remote.Endpoint != "s1b:8980" {
		t.Fatalf("parsed tree: %+v", cfg.Backend)
	}
}

// The commented backend examples in storage.yaml parse and validate.
func TestExampleBackendsLoad(t *testing.T) {
	b, err := os.ReadFile("storage.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var examples []string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "# backend:":
			examples = append(examples, "backend:\n")
		case strings.HasPrefix(line, "#   ") && len(examples) > 0:
			examples[len(examples)-1] += strings.TrimPrefix(line, "# ") + "\n"
		}
	}
	if len(examples) != 6 {
		t.Fatalf("found %d backend examples in storage.yaml, want 6", len(examples))
	}
	for _, ex := range examples {
		cfg := DefaultStorage()
		if err := Parse([]byte(ex), &cfg); err != nil {
			t.Fatalf("%s: %v", ex, err)
		}
		if err := cfg.Backend.Validate("backend"); err != nil {
			t.Fatalf("%s: %v", ex, err)
		}
	}
}

func TestS3BackendParses(t *testing.T) {
	cfg := DefaultStorage()
	y := `backend: {s3: {endpoint: "s3:9000", bucket: cas, prefix: farm, access_key_id: AK,
  secret_access_key_file: /etc/paddock/s3-secret, tls: true, max_concurrent_requests: 64, part_size: 32MiB}}`
	if err := Parse([]byte(y), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Backend.Validate("backend"); err != nil {
		t.Fatal(err)
	}
	want := S3Backend{Endpoint: "s3:9000", Bucket: "cas", Prefix: "farm", AccessKeyID: "AK",
		SecretAccessKeyFile: "/etc/paddock/s3-secret", TLS: true, MaxConcurrentRequests: 64, PartSize: 32 << 20}
	if *cfg.Backend.S3 != want {
		t.Fatalf("parsed %+v, want %+v", *cfg.Backend.S3, want)
	}
	if err := Parse([]byte("backend: {s3: {endpoint: x, bucket: b, secret_access_key: inline}}"), &cfg); err == nil {
		t.Fatal("an inline secret was accepted")
	}
}
