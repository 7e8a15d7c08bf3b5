package auth

import (
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/internal/clock"
)

// OpenParties is how many parties have calls in progress in a's shares
// (the entries of tenantCalls.open), for tests that check that ended
// calls leave none behind.
func OpenParties(a *Interceptors) int {
	if a.calls == nil {
		return 0
	}
	a.calls.mu.Lock()
	defer a.calls.mu.Unlock()
	return len(a.calls.open)
}

// UnaryInterceptor is a's unary interceptor, for tests that hand it a
// context Admit returned.
func UnaryInterceptor(a *Interceptors) grpc.UnaryServerInterceptor { return a.unary }

// SetPolicyClock makes p tell the time by c, for tests that move a fake
// clock past a client certificate's expiry; call it before serving.
func SetPolicyClock(p *Policy, c clock.Clock) { p.clock = c }
