package wirecodec

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
)

// FrameHeader is the size of a frame's header: the little-endian length
// of the message after it.
const FrameHeader = 4

// FrameSize returns the message length a frame header announces, or an
// error naming what if it is 0 or beyond limit.
func FrameSize(header [FrameHeader]byte, limit int, what string) (int, error) {
	n := binary.LittleEndian.Uint32(header[:])
	if n == 0 || uint64(n) > uint64(limit) {
		return 0, &DecodeError{What: what, Err: errors.New("frame length " + strconv.FormatUint(uint64(n), 10) +
			" is out of range (1 to " + strconv.Itoa(limit) + ")")}
	}
	return int(n), nil
}

// ReadFrame reads one frame from r and returns its message, in buf if it
// is large enough. It returns io.EOF if r ends before the frame starts, and
// an error wrapping ErrMalformed if it ends inside the frame or the frame
// announces a length FrameSize refuses: it never reads, or allocates for,
// more than limit bytes.
func ReadFrame(r io.Reader, buf []byte, limit int, what string) ([]byte, error) {
	var h [FrameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &DecodeError{What: what, Err: errors.New("stream ends inside a frame header")}
		}
		return nil, err
	}
	n, err := FrameSize(h, limit, what)
	if err != nil {
		return nil, err
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &DecodeError{What: what, Offset: FrameHeader, Err: errors.New("stream ends inside a frame of " +
				strconv.Itoa(n) + " bytes")}
		}
		return nil, err
	}
	return buf, nil
}
