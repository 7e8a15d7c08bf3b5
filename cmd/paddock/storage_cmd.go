package main

import (
	"context"
	"errors"

	"github.com/paddock-build/paddock/storage"
)

func runStorage(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}

// openRemoteStorage connects to the REv2 storage endpoint addr and returns
// the CAS and action cache over it, and a function that closes the
// connection. The scheduler and worker roles use it.
func openRemoteStorage(ctx context.Context, addr string) (storage.BlobStore, storage.ActionCache, func(), error) {
	return nil, nil, nil, errors.New("remote storage: not implemented yet")
}
