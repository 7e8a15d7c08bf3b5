package storage

import "golang.org/x/sys/unix"

// What a blob costs against a DiskBlobStore's MaxBytes: the disk it
// takes, not its size.
//
// Each blob is a file of its own, and a file takes whole blocks of its
// filesystem and an inode: 750,000 blobs of 64 bytes counted 48 MB
// against a bound of 200 MiB but took 3.15 GB of the disk. So a blob is
// counted at its size rounded up to whole blocks, plus fileOverheadBytes
// for its inode, everywhere the store compares with MaxBytes or reports
// what it holds: the index (a commit, and the scan that rebuilds it at
// start-up), the room held by uploads in progress (disk_reserve.go, whose
// partial files cost the same way), eviction, and Stats with the metric
// from it. diskCost is the one place that says what a blob costs, so
// they cannot disagree.
//
// The number of blobs needs no bound of its own: each costs at least a
// block and an inode (but the empty blob, which is never written), so a
// store holds at most MaxBytes/(block+256) of them (about 48,000 in
// 200 MiB of 4 KiB blocks), and the index (about
// 320 B a blob in memory) and the scan at start-up are bounded with it.
// Only a store without a bound (MaxBytes 0) has none, as for its bytes;
// makeRoom still keeps it off the last of the filesystem's blocks and
// inodes (disk_room.go). Outside the index, an upload whose first byte
// has not arrived holds an uncounted inode in tmp/ (nothing is reserved
// before a byte backs it: disk_reserve.go), but such uploads are streams
// or batch calls, bounded by the server's stream slots and call limits
// (stream_slots.go, grpclimit), not by the store.

// fileOverheadBytes is what a blob's file costs beyond its data blocks:
// ext4's inode, 256 bytes by default (mke2fs.conf's inode_size), taken
// from the inode table that mkfs set aside on the disk, which a CAS of
// tiny blobs uses up as surely as it does blocks. It is a constant, not
// read from the filesystem (statfs does not say), and it is the usual
// case: XFS's inodes are larger (512 B), and a directory entry (about 72
// bytes for a SHA-256 name) is left out, so it errs low, but it matters
// only beside the block, 16 times larger.
const fileOverheadBytes = 256

// defaultBlockBytes is the block size when the filesystem's is not known:
// the usual one of ext4, XFS and tmpfs.
const defaultBlockBytes = 4096

// diskCost is what a blob of size bytes costs against MaxBytes on a
// filesystem of blockBytes blocks: its size rounded up to whole blocks,
// plus its inode. It is pure; DiskBlobStore.cost applies it with the
// store's block size.
func diskCost(size, blockBytes int64) int64 {
	blocks := (max(size, 0) + blockBytes - 1) / blockBytes
	return blocks*blockBytes + fileOverheadBytes
}

// DiskMaxBlobBytes is the largest blob a disk store bounded by maxBytes
// holds, on a filesystem of the usual 4 KiB blocks (0: no bound), for
// Capabilities' max_cas_blob_size_bytes. On one of smaller blocks the
// store takes a little more; it is the bound clients are told.
func DiskMaxBlobBytes(maxBytes int64) int64 {
	if maxBytes <= 0 {
		return 0
	}
	return max(0, (maxBytes-fileOverheadBytes)/defaultBlockBytes*defaultBlockBytes)
}

// cost is what a blob of size bytes costs against s's MaxBytes.
func (s *DiskBlobStore) cost(size int64) int64 { return diskCost(size, s.blockBytes) }

// fsBlockBytes is the block size of the filesystem holding dir, from
// statfs, or defaultBlockBytes when it is not a power of two between 512
// bytes and 64 KiB: some filesystems report their preferred transfer size
// there instead (NFS's can be 1 MiB, ZFS's is its record size), and
// counting every small blob at that would shrink the store many times
// over.
func fsBlockBytes(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		if b := int64(st.Bsize); b >= 512 && b <= 64<<10 && b&(b-1) == 0 {
			return b
		}
	}
	return defaultBlockBytes
}
