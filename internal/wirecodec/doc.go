// Package wirecodec writes and reads the project's small hand-written binary
// messages: the sandbox init's plan and status, the sandbox spawner's
// requests and replies, and the scheduler's journal records and snapshots.
//
// A message is its fields in a fixed order, with nothing between them:
// integers as varints (signed ones zig-zagged), booleans as one byte 0 or
// 1, strings and byte slices as a uvarint length and the bytes, string
// lists as a uvarint count and the strings. A Writer's scalar methods take
// several values, written one after the other, so that an encoder lists a
// message's fields in a few lines. What a field means, and any
// version byte, is the caller's. A Writer appends fields to a byte slice; a
// Reader reads them back in the same order.
//
// Reading is safe on hostile input: a Reader checks every length and count
// against the bytes left before it allocates, so a message can make it
// allocate no more than its own size, and a truncated or corrupt message
// is an error, never a panic. Its error is sticky: after the first failure
// every read returns a zero value, so a decoder reads all its fields and
// checks once, at End. Errors wrap ErrMalformed and say what message was
// being read, what field type failed and at which byte.
//
// Frames carry messages over a stream: a 4-byte little-endian length, then
// the message; a reader refuses a length over its bound before reading it.
//
// The package uses the standard library only, and no fmt: the sandbox init
// links it, and must stay a small program.
package wirecodec
