//go:build !amd64

package initbin

// Binary is empty on architectures without a compiled init (the seccomp
// filter is written for x86_64 only); the native launcher refuses to
// start there, and an external OCI runtime must be configured.
var Binary []byte

// BuiltFrom is empty with Binary.
var BuiltFrom string
