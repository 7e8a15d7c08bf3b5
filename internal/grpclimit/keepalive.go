package grpclimit

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// MinPingInterval is how often a client may send keepalive pings, with or
// without calls in progress. grpc-go's default policy allows one ping in 5
// minutes, and only while a call is open; a client pinging more often gets
// three strikes and then a GOAWAY (ENHANCE_YOUR_CALM, "too_many_pings")
// that ends every call on the connection. Bazel's --grpc_keepalive_time,
// which RBE services ask users to set so that a load balancer that drops
// idle connections is noticed, pings every 10 seconds or more (gRPC
// clients send none more often than that), so under the default policy a
// build with an action quiet for 30 seconds lost its connection. Half the
// clients' minimum leaves room for network jitter and still ends a ping
// flood after three pings.
const MinPingInterval = 5 * time.Second

// KeepaliveOptions are the farm's keepalive enforcement, for servers that
// take no other grpclimit option (paddock up's local worker socket): its
// workers ping every workerclient.Keepalive.Time, which gRPC's default
// policy answers with GOAWAY too_many_pings after three.
func KeepaliveOptions() []grpc.ServerOption { return keepaliveOptions() }

func keepaliveOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime:             MinPingInterval,
		PermitWithoutStream: true,
	})}
}
