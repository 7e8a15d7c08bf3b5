// Package compose builds one storage.BlobStore and storage.ActionCache out
// of several, for storage that outgrows one disk:
//
//   - Sharded spreads keys over N backends by weighted rendezvous hashing
//     (placement.go), the CAS by blob digest and the action cache by action
//     digest, so an Action and its cache entry land on the same shard.
//   - Mirrored writes to two backends and reads from either, repairing a
//     blob or entry that one of them lacks, or an entry it holds an older
//     version of (an action result rewritten while it was down).
//   - Cached keeps a bounded local disk cache (a storage.DiskBlobStore) in
//     front of a remote backend, filled by reads, written through.
//
// The composites hold no state of their own beyond what their parts hold,
// so they nest (a cached front of a sharded set of mirrored pairs); cmd
// builds the tree from configs.Backend. Every composite passes the
// conformance suite of storage/storagetest over real backends.
//
// Errors keep the gRPC code of the backend that failed, prefixed with the
// configured name of that backend (never its address or a host path); a
// backend that cannot be reached is UNAVAILABLE, which REv2 clients retry.
package compose
