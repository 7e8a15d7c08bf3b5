package main

import (
	"log/slog"
	"net/http"

	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
)

func statusRoutes(s *scheduler.Scheduler, cas storage.BlobStore, ac storage.ActionCache, logger *slog.Logger) func(*http.ServeMux) {
	return nil
}
