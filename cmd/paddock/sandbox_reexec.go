package main

import "github.com/paddock-build/paddock/sandbox"

// sandboxReexec hands control to the sandbox package when this process was
// started as a sandbox spawner or init.
func sandboxReexec() bool { return sandbox.Reexec() }
