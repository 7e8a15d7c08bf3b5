package auth

import (
	"strings"

	"google.golang.org/genproto/googleapis/bytestream"

	"github.com/paddock-build/paddock/digest"
)

// rule is what one gRPC method needs of its caller.
type rule struct {
	// perm is the permission needed; "" means any authenticated caller
	// that owns the instance (when there is one).
	perm Permission
	// worker: only farm components (the worker protocol).
	worker bool
	// public: no credentials needed (health checks).
	public bool
	// tenantsOnly: refused to worker identities, whatever they hold.
	// Workers write action results for every instance, as they run the
	// actions; nothing else they do needs a write a tenant's clients trust.
	tenantsOnly bool
	// instance extracts the instance name from the request; nil when the
	// request has none (the scheduler then scopes by owner).
	instance func(req any) (string, error)
}

const (
	rev2        = "/build.bazel.remote.execution.v2."
	operations  = "/google.longrunning.Operations/"
	byteStream  = "/google.bytestream.ByteStream/"
	workerProto = "/paddock.worker.v1."
	asset       = "/build.bazel.remote.asset.v1."
)

// rules maps every method the farm serves to what it needs. A method that
// is not here is refused: a new service must be added on purpose.
var rules = map[string]rule{
	rev2 + "Capabilities/GetCapabilities":                   {instance: instanceField},
	rev2 + "ContentAddressableStorage/FindMissingBlobs":     {perm: CASRead, instance: instanceField},
	rev2 + "ContentAddressableStorage/BatchReadBlobs":       {perm: CASRead, instance: instanceField},
	rev2 + "ContentAddressableStorage/GetTree":              {perm: CASRead, instance: instanceField},
	rev2 + "ContentAddressableStorage/GetChunkMapping":      {perm: CASRead, instance: instanceField},
	rev2 + "ContentAddressableStorage/SplitBlob":            {perm: CASRead, instance: instanceField},
	rev2 + "ContentAddressableStorage/BatchUpdateBlobs":     {perm: CASWrite, instance: instanceField},
	rev2 + "ContentAddressableStorage/SpliceBlob":           {perm: CASWrite, instance: instanceField},
	rev2 + "ContentAddressableStorage/RegisterChunkMapping": {perm: CASWrite, instance: instanceField},
	rev2 + "ActionCache/GetActionResult":                    {perm: ACRead, instance: instanceField},
	rev2 + "ActionCache/UpdateActionResult":                 {perm: ACWrite, instance: instanceField},
	rev2 + "Execution/Execute":                              {perm: Execute, instance: instanceField},
	rev2 + "Execution/WaitExecution":                        {perm: Execute},
	byteStream + "Read":                                     {perm: CASRead, instance: readResourceInstance},
	byteStream + "Write":                                    {perm: CASWrite, instance: writeResourceInstance},
	byteStream + "QueryWriteStatus":                         {perm: CASWrite, instance: writeResourceInstance},
	// Fetch reads records (and may download checksum-verified content
	// from hosts the operator allowed); Push writes records other clients
	// trust as they trust action results, so it needs ac-write.
	asset + "Fetch/FetchBlob":      {perm: CASRead, instance: instanceField},
	asset + "Fetch/FetchDirectory": {perm: CASRead, instance: instanceField},
	// Workers never push records: a stolen worker credential must not plant
	// URI-to-content mappings every tenant's builds then fetch.
	asset + "Push/PushBlob":                    {perm: ACWrite, instance: instanceField, tenantsOnly: true},
	asset + "Push/PushDirectory":               {perm: ACWrite, instance: instanceField, tenantsOnly: true},
	operations + "GetOperation":                {perm: Execute},
	operations + "ListOperations":              {perm: Execute},
	operations + "DeleteOperation":             {perm: Execute},
	operations + "CancelOperation":             {perm: Execute},
	operations + "WaitOperation":               {perm: Execute},
	workerProto + "WorkerService/Connect":      {worker: true},
	workerProto + "AdminService/DrainWorker":   {perm: Admin},
	workerProto + "AdminService/UndrainWorker": {perm: Admin},
	workerProto + "AdminService/ListWorkers":   {perm: Admin},
	"/grpc.health.v1.Health/Check":             {public: true},
	"/grpc.health.v1.Health/Watch":             {public: true},
	"/grpc.health.v1.Health/List":              {public: true},
}

// ruleFor returns the rule of a method; reflection needs only a caller.
func ruleFor(method string) (rule, bool) {
	if r, ok := rules[method]; ok {
		return r, true
	}
	if strings.HasPrefix(method, "/grpc.reflection.") {
		return rule{}, true
	}
	return rule{}, false
}

func instanceField(req any) (string, error) {
	if r, ok := req.(interface{ GetInstanceName() string }); ok {
		return r.GetInstanceName(), nil
	}
	return "", nil
}

func readResourceInstance(req any) (string, error) {
	rn, err := digest.ParseReadResourceName(req.(*bytestream.ReadRequest).GetResourceName())
	return rn.InstanceName, err
}

func writeResourceInstance(req any) (string, error) {
	var name string
	switch r := req.(type) {
	case *bytestream.WriteRequest:
		name = r.GetResourceName()
	case *bytestream.QueryWriteStatusRequest:
		name = r.GetResourceName()
	}
	rn, err := digest.ParseWriteResourceName(name)
	return rn.InstanceName, err
}
