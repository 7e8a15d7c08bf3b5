package worker

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
)

// DiskRoom is a store on the build directories' disk that can give room
// back: `paddock up`'s disk CAS (storage.DiskBlobStore.MakeRoom). It
// keeps only a little of the disk free for others, and evicts only as it
// writes: without being asked, an action that needed more scratch room
// than that failed on every retry, the disk full of cached blobs.
type DiskRoom interface {
	// MakeRoom frees what it can towards need bytes free on the disk,
	// from the blobs of ctx's instance name (its tenant's partition).
	MakeRoom(ctx context.Context, need int64) error
}

// roomForRetry is the room asked of DiskRoom for the retry of an action
// that found the disk full: twice what it had written (it wanted more),
// 1 MiB at least.
func roomForRetry(scratch int64) int64 { return max(2*scratch, 1<<20) }

// scratchBytes is the disk space the files an action made below dir
// take: regular files of one link. Its inputs are links to the file
// cache's or the CAS's files, which its retry shares.
func scratchBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil // a vanished or unreadable part counts nothing
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink == 1 {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}
