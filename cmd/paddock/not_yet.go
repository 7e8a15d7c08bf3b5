package main

import (
	"context"
	"errors"
)

// These roles arrive with the worker/runner and bench issues.

func runRunner(ctx context.Context, args []string) error {
	return errors.New("not implemented yet (issue: worker, runner and paddock up)")
}
