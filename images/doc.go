// Package images turns a build action's container-image platform value into
// a read-only root filesystem for its sandbox. It knows nothing of REv2:
// the runner hands it a string and gets a directory back.
//
// Lifecycle:
//
//  1. ParseReference reads the platform value
//     (docker://REGISTRY/REPO[:TAG][@sha256:DIGEST]); "" and "none" mean no
//     image, and the runner uses the host's root.
//  2. New opens the cache directory, moves what a previous run left in
//     tmp/ aside for deletion in the background, and indexes the layers, images and tag resolutions a
//     previous process completed (see store for the layout).
//  3. Cache.Rootfs resolves the reference: a digest is final, a tag is
//     trusted for Options.RefreshTags and then asked of the registry again.
//     A cached image costs a map lookup. Otherwise the manifest is fetched
//     (picking the worker's platform from an index), each missing layer is
//     streamed, verified against its diffID and unpacked safely (unpacker)
//     into its own directory keyed by diffID, shared between images, and
//     the layers are flattened (flatten) into one tree of hard links keyed
//     by manifest digest. The layers unpack against one budget, the
//     cache's bound (imageBudget). Everything is built under tmp/ and
//     renamed into place. Concurrent requests for one reference, or for
//     one image or layer from one repository, share one piece of work,
//     which ends when none of them waits for it any more (flightGroup);
//     requests naming different repositories never wait on each other's
//     downloads. Every registry request ends if nothing arrives for
//     Options.ReadIdleTimeout. RootfsFor does the same for a tenant: pulls
//     use its credentials (Options.Tenants), and with tenants configured a
//     cached image is handed out only after the registry let the tenant,
//     or anyone (a public image), read its manifest within AccessTTL
//     (accessGuard); a refusal wraps ErrAccessDenied. Cached content is
//     shared across repositories only once the repository named has served
//     it (origins.go).
//  4. The returned Rootfs holds the image: its Path is bind-mounted
//     read-only by the sandbox, and its Config (Env, WorkingDir, User) is
//     merged by the runner. Release drops the hold.
//  5. When the cache grows past Options.MaxBytes, images no Rootfs holds
//     are evicted least recently used first, then layers no image uses.
//     Their trees are deleted in the background (remover) and count
//     toward the bound until they are gone: a pull waits for them.
//
// Cache.Load imports an OCI layout or a `docker save` tarball through the
// same path, for farms without registry access.
//
// Why a flattened tree rather than overlayfs (BenchmarkRootfsPerAction, 2
// cores): a hold on the shared flattened tree costs about 2 µs per action;
// a read-only overlay mount of the layers plus its unmount about 180 µs,
// and needs mount privileges in the runner, whiteouts converted to
// overlay's device-node form, and unmounting after a crash. Flattening is
// paid once per image instead (BenchmarkFlatten: about 65 ms for 2,000
// files) and costs only directory inodes, as files are hard links. The
// tree is safe to share between concurrent sandboxes because its files
// belong to a uid the sandbox does not map and carry no group or other
// write bits, and the sandbox mounts it read-only.
package images
