// Package rev2 holds the rules of the Remote Execution API v2 that more than
// one role enforces: which platform properties exist and what each is for,
// what makes a Command, an Action or a Directory valid, which instance
// names a ByteStream resource name can carry (the rule itself is in the
// subpackage instancename, which package digest uses too), and the MISSING
// precondition failure that tells a client to upload blobs again.
//
// The scheduler checks an action here at Execute, so that a client hears
// about a bad action at once, with INVALID_ARGUMENT naming the field, and
// nothing it would refuse ever reaches a worker. The worker checks again
// with the same functions before it builds anything on disk, because it
// must not trust its caller; the runner takes the property names from here.
//
// Everything in the package is pure: no I/O, no clocks.
package rev2
