package initbin

import _ "embed"

// Binary is the init, compiled for linux/amd64.
//
//go:embed paddock-init-amd64
var Binary []byte

// BuiltFrom is the SourcesDigest of the sources Binary was compiled from.
//
//go:embed paddock-init-amd64.sources
var BuiltFrom string
