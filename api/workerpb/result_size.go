package workerpb

// MaxResultBytes bounds the ExecuteResponse a worker reports. The worker
// protocol's servers, and most REv2 clients (gRPC's default limit of
// 4 MiB for a received message), take no larger message; 64 KiB is left
// for the rest of the worker's message. A result past it (thousands of
// outputs with long names or symlink targets) fails with
// RESOURCE_EXHAUSTED and is not cached. Before, the scheduler's server
// refused the message, which broke the worker's session: the action ran
// four times, was reported as having lost its worker, and its result was
// in the action cache all the same.
const MaxResultBytes = 4<<20 - 64<<10
