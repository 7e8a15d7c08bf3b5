package storage

import (
	"bytes"
	"crypto/sha256"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// An action cache entry, as the disk and S3 action caches store it, is
// entryMagic, the SHA-256 of the ActionResult's bytes, then those bytes.
// Disk entries are not synced (they are a cache), so after a power cut a
// file may be empty or cut short, and an S3 object may be damaged or
// replaced behind the farm's back; and proto.Unmarshal
// accepts both (empty bytes are an empty result, exit 0 with no outputs;
// a cut at a field's end drops the fields after it), which would be served
// as a successful result with outputs missing. The hash makes any such
// entry a miss instead (an S3 probe's truncated entry was served as exit
// 0, and a mirrored pair copied it over its good side). An entry of an
// earlier version, without the header, is a miss too: the action runs
// again.
var entryMagic = [4]byte{'p', 'a', 'c', 1}

// ActionResultEntryHeaderBytes is the length of the magic and the hash.
const ActionResultEntryHeaderBytes = len(entryMagic) + sha256.Size

// EncodeActionResultEntry frames an ActionResult's bytes as an entry.
func EncodeActionResultEntry(result []byte) []byte {
	sum := sha256.Sum256(result)
	b := make([]byte, 0, ActionResultEntryHeaderBytes+len(result))
	b = append(b, entryMagic[:]...)
	b = append(b, sum[:]...)
	return append(b, result...)
}

// DecodeActionResultEntry returns the ActionResult's bytes of an entry,
// or false if it is not a whole entry.
func DecodeActionResultEntry(b []byte) ([]byte, bool) {
	if !hasEntryHeader(b) {
		return nil, false
	}
	result := b[ActionResultEntryHeaderBytes:]
	sum := sha256.Sum256(result)
	return result, [sha256.Size]byte(b[len(entryMagic):ActionResultEntryHeaderBytes]) == sum
}

// hasEntryHeader reports whether b starts as EncodeActionResultEntry
// writes entries.
func hasEntryHeader(b []byte) bool {
	return len(b) >= ActionResultEntryHeaderBytes && [4]byte(b[:len(entryMagic)]) == entryMagic
}

// OlderActionResultEntry reports whether b was written before entries
// had a header:
// a whole ActionResult, without the magic (an empty file, or one cut
// within the magic, is a damaged entry of this format; so is one whose
// magic was damaged, which does not parse).
func OlderActionResultEntry(b []byte) bool {
	n := min(len(b), len(entryMagic))
	return n > 0 && !bytes.Equal(b[:n], entryMagic[:n]) && proto.Unmarshal(b, &repb.ActionResult{}) == nil
}
