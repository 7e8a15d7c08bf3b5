// Package scheduler queues REv2 actions and hands them to workers.
//
// Lifecycle of an action. A client calls Execute. The Execution service
// looks the action up in the action cache (unless skip_cache_lookup) and
// answers at once on a complete hit. Otherwise it loads and validates the
// Action and Command from the CAS, works out the platform (Action.platform,
// or Command.platform for REv2 2.0 clients) and splits it into routing
// properties, which pick a queue, and execution properties, which travel with
// the action. The request then enters the core: an identical cacheable
// action already in flight is joined (deduplication; with
// skip_cache_lookup only while it is queued, since a running one may have
// put its result in the action cache already); otherwise a new
// execution is queued under its tenant (auth.TenantOf; "" without a
// policy), its priority and its client's invocation id, unless the tenant
// is at its max_queued. A worker with a free slot takes from the tenants
// in turn, skipping those at their max_running, then by priority, then
// invocations in turn, then first in first out (tenant.go, queue.go).
// Workers connect over the worker protocol (api/workerpb), get executions
// as their slots free up, heartbeat, and report an ExecuteResponse; every
// operation waiting for the execution completes with it. A worker that stops
// heartbeating loses its lease, and its executions are requeued a bounded
// number of times; a requeued execution's next attempt goes to another
// worker when one could take it (core_requeue.go). A worker that cannot
// run actions for now says it is paused and is given none; a second worker
// process with the id of a live one is refused (session.go).
//
// Structure. core is a pure state machine: events (execute, cancel, worker
// connected, result, clock tick...) and the current time go in, decisions
// (dispatch this to that worker, cancel that, this operation changed) come
// out as effects. It has no goroutines, locks or I/O, so tests drive it with
// a fake clock. Scheduler wraps the core with a mutex, performs its effects
// (worker outboxes, operation watchers) and holds the storage handles; the
// gRPC services (Execution, Operations, WorkerService, AdminService) are thin
// edges over Scheduler.
//
// Durability. With Config.JournalDir, each change of the core's durable
// state is also a record (record.go), appended to a journal
// (scheduler/journal) before its effects are carried out; what clients see
// waits until the record is durable (durability.go). At start-up the
// Scheduler loads the newest snapshot (core_state.go), replays the records
// after it through the core (core.replay) and gives the workers that held
// actions reconnect_grace to come back. The core iterates maps in key
// order, so a replay reaches exactly the state that wrote the records.
// docs/scheduler.md says what survives a restart.
package scheduler
