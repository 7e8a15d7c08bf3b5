//go:build !amd64

package sandbox

// archDeniedSyscalls is empty off x86_64: the default filter is written for
// x86_64 (it kills any other audit arch), and without a compiled init the
// native launcher refuses to start there anyway (sealed_init.go). The
// package compiles so that the paddock binary, with every role but the
// native sandbox, can be cross-compiled (the arm64 images).
var archDeniedSyscalls []uint32
