//go:build !(linux && amd64)

package sandbox

// startVM is not available here: the init is forked as Go does.
func (st *initStart) startVM(cgroupFD int) (int, error) { return 0, errNoCloneVM }
