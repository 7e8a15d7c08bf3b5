package main

import (
	"context"
	"errors"
)

func runImages(ctx context.Context, args []string) error {
	return errors.New("not implemented yet (issue: images)")
}
