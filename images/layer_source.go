package images

import (
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ErrForeignLayer is wrapped by the error of an image whose manifest
// names URLs to fetch a layer from besides its registry ("foreign"
// layers). go-containerregistry fetches them when the registry lacks the
// blob, with the runner's transport, wherever they point: an image on
// any allowed registry could make the runner fetch any HTTPS URL its
// network reaches, past images.allowed_registries.
var ErrForeignLayer = errors.New("names URLs outside its registry to fetch it from (a foreign layer), which the runner does not follow")

// checkNoForeignLayers refuses img if its manifest gives a layer URLs.
func checkNoForeignLayers(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	for i, d := range m.Layers {
		if len(d.URLs) > 0 {
			return fmt.Errorf("layer %d (%s) %w", i, d.Digest, ErrForeignLayer)
		}
	}
	return nil
}

// LayerReadError is a failure while reading a layer's bytes, or the
// image's config: the stream broke, or they did not match the size or
// digest the manifest gives, or the config is not JSON.
// Its text quotes the cause, for the runner's log; a client must not get
// it. go-containerregistry's checks quote what they read ("error verifying
// size; got 31", the digest of the bytes read), and a registry may
// redirect a blob anywhere: an image pointing a layer at an internal URL
// read that URL's answer out through failed pulls, one byte per action.
type LayerReadError struct {
	Err error
}

func (e *LayerReadError) Error() string { return e.Err.Error() }
func (e *LayerReadError) Unwrap() error { return e.Err }

// layerReader marks the errors of reading a layer's stream as
// LayerReadError.
type layerReader struct{ r io.Reader }

func (l layerReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrZstdWindow) {
		err = &LayerReadError{Err: err}
	}
	return n, err
}
