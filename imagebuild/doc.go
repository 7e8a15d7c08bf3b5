// Package imagebuild builds the OCI images Paddock ships, one per role,
// without Docker, the way ko does: a base layer (CA certificates, a passwd
// and group file, /tmp) and a layer holding the static paddock binary,
// assembled with go-containerregistry over an empty image. Each role gets
// its own entrypoint, user and labels; every role is a multi-platform
// index (one image per cross-compiled binary).
//
// Lifecycle: the caller (`paddock images build`, run by `make images`)
// cross-compiles the binaries, then Build turns Options into one index per
// Role; WriteLayout writes them as an OCI image layout and Push sends them
// to a registry.
//
// Builds are reproducible: tar entries are sorted with fixed owners and
// one fixed time (Options.Created, SOURCE_DATE_EPOCH in the command),
// gzip streams carry no name or time, and configs hold no host or build
// time. The same binaries and CA bundle give the same digests. The CA
// bundle comes from the build machine, so two machines agree only if
// their bundles do.
package imagebuild
