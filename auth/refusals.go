package auth

import (
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// refusals counts the calls the policy refused, by reason. Refused calls
// never reach the per-RPC metrics (most are refused in the server's tap,
// before any interceptor), so without these an operator saw denials only
// in debug logs and could not alert on a client hammering the farm with
// a wrong token.
var refusals struct {
	unauthenticated, permissionDenied, invalidArgument, share atomic.Uint64
}

// countRefusal counts err, a refusal of the interceptors, by its code.
func countRefusal(err error) {
	switch status.Code(err) {
	case codes.OK:
	case codes.Unauthenticated:
		refusals.unauthenticated.Add(1)
	case codes.PermissionDenied:
		refusals.permissionDenied.Add(1)
	case codes.ResourceExhausted:
		refusals.share.Add(1)
	default: // a bad instance name
		refusals.invalidArgument.Add(1)
	}
}

// Refusals returns how many calls the policy has refused in this process,
// by reason: "unauthenticated" (no or bad credentials),
// "permission_denied" (a method or instance name not granted),
// "invalid_argument" (an instance name no resource name can carry),
// "tenant_share" (the tenant's share of calls in progress was full).
func Refusals() map[string]uint64 {
	return map[string]uint64{
		"unauthenticated":   refusals.unauthenticated.Load(),
		"permission_denied": refusals.permissionDenied.Load(),
		"invalid_argument":  refusals.invalidArgument.Load(),
		"tenant_share":      refusals.share.Load(),
	}
}
