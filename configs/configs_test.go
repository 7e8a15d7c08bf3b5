package configs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestExampleStorageConfigLoads(t *testing.T) {
	cfg := DefaultStorage()
	if err := Load("storage.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBytes != 10<<30 || cfg.MaxBatchTotalSizeBytes != 2<<20 || cfg.UploadIdleTimeout != time.Minute || cfg.Listen != "127.0.0.1:8980" {
		t.Fatalf("example config parsed as %+v", cfg)
	}
	if def := DefaultStorage().Assets; cfg.Assets.FetchTimeout != def.FetchTimeout || cfg.Assets.MaxFetchBytes != def.MaxFetchBytes ||
		len(cfg.Assets.AllowedHosts) != 0 || cfg.Assets.AllowWithoutChecksum {
		t.Fatalf("example assets config %+v differs from the defaults %+v", cfg.Assets, def)
	}
}

func TestUnknownKeysAreErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("version: 1\nlisten: 1.2.3.4:5\nmax_byte: 10GiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultStorage()
	err := Load(p, &cfg)
	if err == nil || !strings.Contains(err.Error(), "max_byte") || !strings.Contains(err.Error(), "c.yaml") {
		t.Fatalf("unknown key: %v, want an error naming the key and the file", err)
	}
}

func TestByteSizes(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "4096": 4096, "4KiB": 4096, "64MiB": 64 << 20, "10GiB": 10 << 30, "1TiB": 1 << 40} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1", "10GB", "lots", "1.5GiB"} {
		if _, err := ParseByteSize(bad); err == nil || !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("ParseByteSize(%q): %v; want an error quoting the value as given", bad, err)
		}
	}
	cfg := DefaultStorage()
	if err := Parse([]byte("max_bytes: 12XB\n"), &cfg); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad size in YAML: %v, want an error naming the line", err)
	}
}
