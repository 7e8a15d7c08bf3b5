// Package initbin holds the sandbox init (sandbox/internal/initprog),
// compiled, so that it ships inside the one paddock binary while costing
// only its own small start-up per sandbox. The spawner copies Binary into
// a sealed memfd and executes it from there.
//
// The compiled file is generated and committed, like generated protobuf
// code: run `make init` (it needs a C compiler) after changing initprog,
// whose plan decoder follows initplan's format. The file
// paddock-init-amd64.sources records a digest of the sources it was built from;
// TestBinaryFresh fails while the binary is stale.
package initbin
