package images

import "github.com/paddock-build/paddock/rev2/imageref"

// Reference names an image the way a build action's platform does. Its
// rule lives in rev2/imageref, which the scheduler checks at Execute too.
type Reference = imageref.Reference

// ParseReference parses a container-image platform value: imageref.Parse.
func ParseReference(value string) (ref Reference, none bool, err error) {
	return imageref.Parse(value)
}
