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
	}), grpc.KeepaliveParams(keepalive.ServerParameters{Time: pingIdleClientAfter, Timeout: pingTimeout})}
}

// pingIdleClientAfter and pingTimeout make the server ping a connection
// from which nothing has come for a minute, and close it (ending its
// calls) when the ping is not answered within 20 s. A client that
// vanished (a partition, a machine gone) sends no FIN: its Execute stream
// stayed open, the scheduler counted it as following its operation, and
// the execution went on holding a worker for 17 minutes, until TCP gave up
// retransmitting the once-a-minute update, where the operation should
// have been abandoned after abandoned_grace (2 minutes). Now the stream
// ends within about 80 s, and abandoned_grace runs from there. A client
// that is there answers the ping without its application knowing.
var (
	pingIdleClientAfter = time.Minute
	pingTimeout         = 20 * time.Second
)
