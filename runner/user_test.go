package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/sandbox"
)

// countingIDDB counts the lookups, each of which reads a file of the
// rootfs in the real idDB.
type countingIDDB struct {
	fakeIDDB
	lookups int
}

func (c *countingIDDB) lookupUser(name string, byID bool) (uint32, uint32, bool) {
	c.lookups++
	return c.fakeIDDB.lookupUser(name, byID)
}

func (c *countingIDDB) lookupGroup(name string) (uint32, bool) {
	c.lookups++
	return c.fakeIDDB.lookupGroup(name)
}

// TestResolveUser: a user given as uid:gid needs no lookup (the default
// user, 0:0, is resolved per action); a uid alone takes its primary group
// from passwd, or 0; names are looked up.
func TestResolveUser(t *testing.T) {
	db := fakeIDDB{users: map[string][2]uint32{"root": {0, 0}, "builder": {1000, 100}}, groups: map[string]uint32{"staff": 50}}
	for _, tc := range []struct {
		spec    string
		want    sandboxUser
		lookups int
	}{
		{"0:0", sandboxUser{0, 0}, 0},
		{"1000:7", sandboxUser{1000, 7}, 0},
		{"1000", sandboxUser{1000, 100}, 1},
		{"4242", sandboxUser{4242, 0}, 1},
		{"builder", sandboxUser{1000, 100}, 1},
		{"builder:staff", sandboxUser{1000, 50}, 2},
		{"1000:staff", sandboxUser{1000, 50}, 1},
	} {
		c := &countingIDDB{fakeIDDB: db}
		got, err := resolveUser(tc.spec, c)
		if err != nil || got != tc.want || c.lookups != tc.lookups {
			t.Errorf("resolveUser(%q) = %v, %v after %d lookups; want %v after %d", tc.spec, got, err, c.lookups, tc.want, tc.lookups)
		}
	}
}

// TestSandboxIDsAgree: dockerUser ids are checked at Execute against
// rev2.SandboxIDs; the sandbox must map exactly that many.
func TestSandboxIDsAgree(t *testing.T) {
	if rev2.SandboxIDs != sandbox.DefaultIDRange {
		t.Fatalf("rev2.SandboxIDs %d, sandbox.DefaultIDRange %d", rev2.SandboxIDs, sandbox.DefaultIDRange)
	}
}

// TestUserAfterALongPasswdLine: users are found after a line of
// /etc/passwd longer than 64 KiB (a GECOS field of a long comment, say);
// read with a bufio.Scanner, the file stopped there and every user after
// the line was reported missing.
func TestUserAfterALongPasswdLine(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := "root:x:0:0::/root:/bin/sh\nlong:x:1:1:" + strings.Repeat("g", 70<<10) + ":/:/bin/sh\nlater:x:1234:567::/home/later:/bin/sh\n"
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	uid, gid, ok := fileIDDB{rootfs: root}.lookupUser("later", false)
	if !ok || uid != 1234 || gid != 567 {
		t.Errorf("user later: %d:%d, %v; want 1234:567", uid, gid, ok)
	}
}
