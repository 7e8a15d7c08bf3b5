package main

import (
	"log/slog"
	"net/http"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/statuspage"
	"github.com/paddock-build/paddock/storage"
)

// statusRoutes adds the scheduler's status page to the HTTP listener;
// with a policy it needs the admin permission (statuspage's access.go).
func statusRoutes(s *scheduler.Scheduler, cas storage.BlobStore, ac storage.ActionCache, policy *auth.Policy, logger *slog.Logger) func(*http.ServeMux) {
	h := statuspage.New(statuspage.Options{Scheduler: s, CAS: cas, AC: ac, Policy: policy, Logger: logger})
	return h.Register
}
