package asset

// MaxDownloads bounds the downloads in progress. Each holds a temporary
// file of up to MaxFetchBytes until its checksum is checked, and neither
// the CAS's size nor any tenant's limits count those files: eight 1 GB
// downloads put 3.8 GB in them within seconds. One sharer, a tenant of
// the auth policy or, without one, a client (storage.TenantSlots), has at
// most half the slots, so that the others' fetches still start; a
// download past either bound waits for a slot (or its deadline) rather
// than fail, since Bazel does not retry a remote download. Without a
// policy every caller had been one tenant, "": two fetches of origins
// that never answer held every download for fetch_timeout (outside
// probe).
const MaxDownloads = 4
