package main

import (
	"os"
	"path/filepath"
	"syscall"

	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// diskRoomFor is cas as the worker's DiskRoom (an action that found the
// disk full asks it for room for its retry) when it can give room back
// and keeps its blobs in casDir on the filesystem of workerDir; else nil:
// evicting from a CAS on another disk frees nothing the actions use.
func diskRoomFor(cas storage.BlobStore, casDir, workerDir string) worker.DiskRoom {
	r, ok := cas.(worker.DiskRoom)
	if !ok || casDir == "" {
		return nil
	}
	a, aok := deviceOf(casDir)
	b, bok := deviceOf(workerDir)
	if !aok || !bok || a != b {
		return nil
	}
	return r
}

// deviceOf is the device of the filesystem holding p, or of its nearest
// existing parent (a directory not made yet is made on its parent's).
func deviceOf(p string) (uint64, bool) {
	for {
		info, err := os.Stat(p)
		if err == nil {
			st, ok := info.Sys().(*syscall.Stat_t)
			return uint64(st.Dev), ok
		}
		parent := filepath.Dir(p)
		if parent == p {
			return 0, false
		}
		p = parent
	}
}
