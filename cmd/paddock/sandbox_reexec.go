package main

// sandboxReexec hands control to the sandbox package when this process was
// started as a sandbox spawner or init. Replaced when the sandbox lands.
func sandboxReexec() bool { return false }
