package asset

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/storage"
)

// Bounds on the trees a directory record may name, so that checking one
// costs bounded memory and time: its directories, any one directory's
// size, and all of them together (the file digests a check holds grow
// with those bytes: a few wide directories of 16 MiB could otherwise have
// a single Fetch hold a gigabyte).
const (
	maxTreeDirectories = 100000
	maxDirectoryBytes  = 16 << 20
	maxTreeBytes       = 64 << 20
)

// index is the records over the CAS: it stores them and hands out only
// those that are live and complete.
type index struct {
	records *recordStore
	cas     storage.BlobStore
	now     func() time.Time
	log     *slog.Logger
	walks   *storage.TenantSlots // tree checks in progress (storage.TreeWalkSlots), at most half of them one tenant's
}

// internal logs err (which may name host paths) and returns an INTERNAL
// status that does not.
func (x *index) internal(what string, err error) error {
	x.log.Error("asset records", "op", what, "error", err)
	return status.Errorf(codes.Internal, "%s failed on the server; its log has the details", what)
}

// found is a usable record and the URI it was found under.
type found struct {
	uri    string
	rec    record
	digest digest.Digest
}

// lookup returns the first usable record of digest function fn for any of
// uris, or nil. A record that expired, or whose content is gone from the
// CAS, is removed.
func (x *index) lookup(ctx context.Context, instance string, k kind, fn digest.Function, uris []string, qs []*rapb.Qualifier, oldest time.Time) (*found, error) {
	for _, uri := range uris {
		key := recordKey(instance, k, fn, uri, qs)
		rec, ok, err := x.records.get(key)
		if err != nil {
			return nil, x.internal("reading an asset record", err)
		}
		if !ok {
			continue
		}
		if !rec.ExpireAt.IsZero() && !x.now().Before(rec.ExpireAt) {
			x.records.remove(key)
			continue
		}
		if !oldest.IsZero() && rec.Created.Before(oldest) {
			continue
		}
		d, err := digest.New(fn, rec.Hash, rec.Size)
		if err != nil {
			x.records.remove(key)
			continue
		}
		if err := x.complete(ctx, k, d, rec.RefBlobs, rec.RefTrees); status.Code(err) == codes.NotFound {
			x.records.remove(key)
			continue
		} else if err != nil {
			return nil, err
		}
		return &found{uri: uri, rec: rec, digest: d}, nil
	}
	return nil, nil
}

// maxRequestRecordBytes bounds the records one request writes, each
// counted as the record store counts it (its JSON and recordOverhead).
// Records share one bound (MaxRecordBytes) across tenants, and a Push
// writes one per URI, each holding the request's qualifiers and
// references in full: bounding URIs and qualifiers alone still let a
// PushBlob of 100 URIs write 100 copies of what it carried. 1 MiB leaves
// a push of 100 URIs about 6 KiB per record besides the 4 KiB of its file,
// and a push of a few URIs (as BuildStream's, with two URIs and a dozen
// references) far more than it uses. A Fetch writes one record, the URL it
// downloaded: within maxQualifierBytes, even qualifiers that JSON escapes
// to six times their length stay well under this.
const maxRequestRecordBytes = 1 << 20

// hiddenValue stands for a header qualifier's value in a record file.
const hiddenValue = "(hidden)"

// withQualifiers is rec as store writes it: naming the qualifiers it
// answers (those of its key, keyQualifiers), for operators reading the
// files. A header qualifier's value, a credential, is not written: the
// key, a hash, is what tells records with different ones apart.
func withQualifiers(rec record, k kind, qs []*rapb.Qualifier) record {
	rec.Qualifier = nil
	for _, q := range keyQualifiers(k, qs) {
		v := q.Value
		if isHeaderQualifier(q.Name) {
			v = hiddenValue
		}
		rec.Qualifier = append(rec.Qualifier, q.Name+"="+v)
	}
	return rec
}

// checkRecordBytes refuses to write rec (as withQualifiers makes it) under
// every one of uris when that would take more than maxRequestRecordBytes.
func checkRecordBytes(uris []string, rec record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return status.Errorf(codes.Internal, "encode an asset record: %v", err)
	}
	each := int64(len(data)) + recordOverhead
	if total := int64(len(uris)) * each; total > maxRequestRecordBytes {
		return status.Errorf(codes.InvalidArgument,
			"uris: %d URIs make %d records of %d bytes each (the qualifiers and references, and %d for the file), %d bytes, more than the %d one request may write",
			len(uris), len(uris), each, recordOverhead, total, maxRequestRecordBytes)
	}
	return nil
}

// store records rec under every URI, for fetches naming its digest
// function; it writes nothing when the records would take more than
// maxRequestRecordBytes.
func (x *index) store(instance string, k kind, uris []string, qs []*rapb.Qualifier, rec record) error {
	fn := digest.Function(rec.Function)
	rec = withQualifiers(rec, k, qs)
	if err := checkRecordBytes(uris, rec); err != nil {
		return err
	}
	for _, uri := range uris {
		if err := x.records.put(recordKey(instance, k, fn, uri, qs), rec); err != nil {
			return x.internal("writing an asset record", err)
		}
	}
	return nil
}

// complete returns NOT_FOUND unless d (a blob, or the root of a tree) and
// every referenced blob and tree, each tree with all its directories and
// files, are in the CAS.
func (x *index) complete(ctx context.Context, k kind, d digest.Digest, refBlobs, refTrees []string) error {
	blobs := []digest.Digest{}
	trees := []digest.Digest{}
	if k == kindDirectory {
		trees = append(trees, d)
	} else {
		blobs = append(blobs, d)
	}
	for _, list := range []struct {
		refs []string
		into *[]digest.Digest
	}{{refBlobs, &blobs}, {refTrees, &trees}} {
		for _, r := range list.refs {
			rd, err := parseRef(d.Function(), r)
			if err != nil {
				return status.Errorf(codes.NotFound, "record references a malformed digest %q", r)
			}
			*list.into = append(*list.into, rd)
		}
	}
	var files []digest.Digest
	if len(trees) > 0 {
		// Shared by tenant: one tenant's 200 concurrent FetchDirectory
		// calls of a large tree held every check, and another's fetch of
		// an empty directory waited a minute behind them.
		release, err := x.walks.Take(ctx)
		if err != nil {
			return err
		}
		files, err = x.treeBlobs(ctx, trees)
		release()
		if err != nil {
			return err
		}
	}
	missing, err := x.cas.FindMissing(ctx, append(blobs, files...))
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return status.Errorf(codes.NotFound, "%d blob(s) the record names are gone from the CAS, e.g. %s", len(missing), missing[0])
	}
	return nil
}

// treeBlobs reads the trees rooted at roots and returns the digests of
// their files; a missing directory is NOT_FOUND.
func (x *index) treeBlobs(ctx context.Context, roots []digest.Digest) ([]digest.Digest, error) {
	var files []digest.Digest
	seen := map[digest.Digest]bool{}
	queue := append([]digest.Digest(nil), roots...)
	budget := int64(maxTreeBytes)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d] {
			continue
		}
		seen[d] = true
		if len(seen) > maxTreeDirectories {
			return nil, status.Errorf(codes.ResourceExhausted, "tree has more than %d directories", maxTreeDirectories)
		}
		if budget -= d.SizeBytes(); budget < 0 {
			return nil, status.Errorf(codes.ResourceExhausted, "tree's directories are more than %d bytes in all", maxTreeBytes)
		}
		dir := &repb.Directory{}
		if err := storage.GetProto(ctx, x.cas, d, dir, maxDirectoryBytes); err != nil {
			switch status.Code(err) {
			case codes.NotFound:
				return nil, status.Errorf(codes.NotFound, "directory %s is gone from the CAS", d)
			case codes.InvalidArgument:
				return nil, status.Errorf(codes.NotFound, "blob %s is not a Directory", d)
			}
			return nil, err
		}
		if len(dir.ProtoReflect().GetUnknown()) > 0 {
			// Not a Directory REv2 clients would write: a wrong digest.
			return nil, status.Errorf(codes.NotFound, "blob %s is not a Directory", d)
		}
		for _, f := range dir.Files {
			fd, err := digest.FromProto(d.Function(), f.Digest, "file "+f.Name)
			if err != nil {
				return nil, status.Errorf(codes.NotFound, "directory %s: %s", d, grpcerr.Convert(err).Message())
			}
			files = append(files, fd)
		}
		for _, sub := range dir.Directories {
			sd, err := digest.FromProto(d.Function(), sub.Digest, "directory "+sub.Name)
			if err != nil {
				return nil, status.Errorf(codes.NotFound, "directory %s: %s", d, grpcerr.Convert(err).Message())
			}
			queue = append(queue, sd)
		}
	}
	return files, nil
}

// ref and parseRef write and read "hash/size", the form references are
// recorded in.
func ref(d digest.Digest) string { return d.String() }

func parseRef(fn digest.Function, s string) (digest.Digest, error) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return digest.Digest{}, fmt.Errorf("no size in %q", s)
	}
	size, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		return digest.Digest{}, err
	}
	return digest.New(fn, s[:i], size)
}
