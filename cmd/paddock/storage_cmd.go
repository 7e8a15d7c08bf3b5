package main

import (
	"context"
	"errors"
)

func runStorage(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
