package main

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// httpGRPCRequestTimeout bounds the time a gRPC call's request on the
// HTTP port may take to arrive whole (a variable for the tests).
var httpGRPCRequestTimeout = 10 * time.Second

// wholeRequest makes the body of a gRPC call on the HTTP port fill each
// read whole, and arrive within httpGRPCRequestTimeout. gRPC serves this
// port through its HTTP handler transport, which takes a 16 KiB buffer
// for every read of the body and keeps it until the message is whole: a
// request sent one byte per frame held 16 KiB per byte, and one anonymous
// connection of Checks took the process to gigabytes, however small the
// message bound. The calls on this port are health Checks and Watches,
// whose client sends its one request and ends its side, so a read that
// waits for its buffer to fill waits only for that end.
func wholeRequest(w http.ResponseWriter, r *http.Request) *http.Request {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(httpGRPCRequestTimeout)) != nil {
		r.Body = fullReads{r.Body}
		return r
	}
	r.Body = &deadlineBody{ReadCloser: fullReads{r.Body}, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
	return r
}

// fullReads fills each Read's buffer, unless the body ends or fails first.
type fullReads struct{ io.ReadCloser }

func (b fullReads) Read(p []byte) (int, error) {
	n, err := io.ReadFull(b.ReadCloser, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}
