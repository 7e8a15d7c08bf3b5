package rev2

import "github.com/paddock-build/paddock/rev2/instancename"

// CheckInstanceName is what every RPC taking an instance_name calls before
// it acts on the name: a name the ByteStream resource names cannot carry
// (a segment REv2 reserves, such as "blobs", or an empty, "." or ".."
// segment) would let Execute run an action, or a batch store blobs, under
// a name no ByteStream read or write can address, so the client would
// fail only afterwards, reading the outputs. It is INVALID_ARGUMENT naming
// instance_name, the name and the offending segment. The empty name (the
// default instance) is valid.
//
// The rule is in package instancename, which package digest applies to
// the instance part of every resource name it parses, so that the two can
// never disagree.
func CheckInstanceName(name string) error {
	if err := instancename.Check(name); err != nil {
		return Invalid("instance_name", "%s %v", Quote(name), err)
	}
	return nil
}
