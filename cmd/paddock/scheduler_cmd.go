package main

import (
	"context"
	"errors"
)

func runScheduler(ctx context.Context, args []string) error {
	return errors.New("not implemented yet (issue: scheduler)")
}
