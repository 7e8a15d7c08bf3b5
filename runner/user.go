package runner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/sandbox"
)

// sandboxUser is who the command runs as, inside the sandbox's user
// namespace.
type sandboxUser struct {
	UID, GID uint32
}

// idDB answers user and group lookups for one rootfs. Implementations:
// fileIDDB (the rootfs's /etc/passwd and /etc/group) and test fakes.
type idDB interface {
	// lookupUser finds a user by name or, with byID, by uid, and returns
	// its uid and primary gid.
	lookupUser(name string, byID bool) (uid, gid uint32, ok bool)
	lookupGroup(name string) (gid uint32, ok bool)
}

// chooseUser decides who the command runs as: dockerRunAsRoot=true is
// 0:0; else dockerUser; else the image's User; else Config.DefaultUser.
// Names are looked up in db, the rootfs's /etc files.
func chooseUser(cfg *Config, p platform, imageUser string, db idDB) (sandboxUser, error) {
	spec, what := cfg.DefaultUser, "default_user"
	switch {
	case p.RunAsRoot:
		return sandboxUser{}, nil
	case p.User != "":
		u, err := resolveUser(p.User, db)
		if err != nil {
			return sandboxUser{}, invalid(propUser, "%v", err)
		}
		return u, nil
	case imageUser != "":
		spec, what = imageUser, "the image's user"
	}
	u, err := resolveUser(spec, db)
	if err != nil {
		return sandboxUser{}, status.Errorf(codes.FailedPrecondition, "%s: %v", what, err)
	}
	return u, nil
}

// resolveUser turns a user spec into ids. As docker does, a user given
// without a group gets its primary group from /etc/passwd, or gid 0 if
// passwd does not know it.
func resolveUser(spec string, db idDB) (sandboxUser, error) {
	user, group, err := rev2.ParseUserSpec(spec)
	if err != nil {
		return sandboxUser{}, err
	}
	var u sandboxUser
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		u.UID = uint32(n)
		if group == "" { // else the group given decides: no need to read passwd
			if _, gid, ok := db.lookupUser(user, true); ok {
				u.GID = gid
			}
		}
	} else {
		uid, gid, ok := db.lookupUser(user, false)
		if !ok {
			return sandboxUser{}, fmt.Errorf("%q: no user %q in the rootfs's /etc/passwd", spec, user)
		}
		u.UID, u.GID = uid, gid
	}
	if group != "" {
		if n, err := strconv.ParseUint(group, 10, 32); err == nil {
			u.GID = uint32(n)
		} else if gid, ok := db.lookupGroup(group); ok {
			u.GID = gid
		} else {
			return sandboxUser{}, fmt.Errorf("%q: no group %q in the rootfs's /etc/group", spec, group)
		}
	}
	if u.UID >= sandbox.DefaultIDRange || u.GID >= sandbox.DefaultIDRange {
		return sandboxUser{}, fmt.Errorf("%q resolves to %d:%d, outside the sandbox's 0..%d", spec, u.UID, u.GID, sandbox.DefaultIDRange-1)
	}
	return u, nil
}

// fileIDDB reads /etc/passwd and /etc/group of a rootfs on the host,
// resolved inside the rootfs (an image's symlinks cannot point the runner
// at host files). Missing files are empty databases.
type fileIDDB struct {
	rootfs string
}

// readInRoot reads name (relative) inside root without leaving it.
func readInRoot(root, name string) ([]byte, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > 16<<20 {
		return nil, fmt.Errorf("%s is not a regular file of at most 16 MiB", name)
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(f)
	return buf.Bytes(), err
}

// records returns the colon-separated records of an /etc file of root.
func (db fileIDDB) records(name string) [][]string {
	b, err := readInRoot(db.rootfs, name)
	if err != nil {
		return nil
	}
	var out [][]string
	// Split, not scanned: a bufio.Scanner stops at a line past 64 KiB,
	// and every user after it was reported missing.
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

func (db fileIDDB) lookupUser(name string, byID bool) (uint32, uint32, bool) {
	for _, r := range db.records("etc/passwd") {
		if len(r) < 4 {
			continue
		}
		if (byID && r[2] != name) || (!byID && r[0] != name) {
			continue
		}
		uid, err1 := strconv.ParseUint(r[2], 10, 32)
		gid, err2 := strconv.ParseUint(r[3], 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, false
		}
		return uint32(uid), uint32(gid), true
	}
	return 0, 0, false
}

func (db fileIDDB) lookupGroup(name string) (uint32, bool) {
	for _, r := range db.records("etc/group") {
		if len(r) < 3 || r[0] != name {
			continue
		}
		gid, err := strconv.ParseUint(r[2], 10, 32)
		return uint32(gid), err == nil
	}
	return 0, false
}
