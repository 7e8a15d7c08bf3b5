package scheduler

import (
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/wirecodec"
)

// A record on disk is a version byte, then its fields in a fixed order as
// varints and length-prefixed bytes, written with package wirecodec (the
// journal frames and checksums it).
// Hand-written rather than a generic encoding because a record is written
// for every dispatch and result, and 100,000 are read at start-up.
//
// Version 2 added an Execute's skip_cache_lookup (at the end of its
// submission), which decides whether it joined an execution in flight.
// Version 1 records are still read: their Executes had none (the
// Execution service then joined whatever was in flight).
// Version 3 added the Command's working directory (after it), which a
// worker's result is checked against (checkWorkerResult); an Execute of
// an older record has it unknown.
// Version 4 added the names of the operations an expiry forgot (after
// the response, in a recExpire only), which its replay forgets whatever
// completed_retention is then; an older recExpire is read as one that
// names none (expiredByTime), replayed by the retention in force.
const recordVersion = 4

// encodeRecord serialises r.
func encodeRecord(r record) ([]byte, error) { return appendRecord(nil, r) }

// appendRecord appends r, serialised, to buf.
func appendRecord(buf []byte, r record) ([]byte, error) {
	w := wirecodec.NewWriter(buf)
	w.Uvarint(recordVersion, uint64(r.kind))
	w.Varint(r.at.UnixNano())
	w.Str(r.name, r.instance, r.owner)
	writeDigest(w, r.action)
	w.Str(r.worker, r.reason)
	w.Uvarint(uint64(r.retries))
	var resp []byte
	if r.resp != nil {
		var err error
		if resp, err = proto.Marshal(r.resp); err != nil {
			return nil, fmt.Errorf("encode response of %s: %w", r.name, err)
		}
	}
	w.Blob(resp)
	if r.kind == recExpire {
		if r.expiredByTime {
			return nil, fmt.Errorf("expiry record at %s: read from an older version, it names no operations and cannot be written as version %d", r.at.UTC(), recordVersion)
		}
		w.StringList(r.expired)
	}
	if r.kind == recExecute {
		s := r.sub
		if s == nil {
			return nil, fmt.Errorf("execute record of %s without its submission", r.name)
		}
		w.Str(s.name, s.instance, s.owner)
		writeDigest(w, s.action)
		w.Bool(s.cacheable)
		w.Varint(int64(s.priority))
		w.Str(s.invocation, s.queueKey)
		writeProps(w, s.routing)
		writeDigest(w, s.spec.command)
		writeDigest(w, s.spec.inputRoot)
		writeProps(w, s.spec.platform)
		w.Varint(int64(s.spec.timeout))
		w.Bool(s.spec.doNotCache)
		w.Blob(s.spec.requestMetadata)
		w.Bool(s.skipCacheLookup)
		w.Bool(s.spec.workingDirKnown)
		w.Str(s.spec.workingDir)
	}
	return w.Bytes(), nil
}

// decodeRecord parses what encodeRecord wrote.
func decodeRecord(b []byte) (record, error) {
	rd := wirecodec.NewReader(b, "journal record")
	var r record
	v := rd.Uvarint()
	if (v < 1 || v > recordVersion) && rd.Err() == nil {
		return r, fmt.Errorf("record version %d, this scheduler reads 1 to %d%s", v, recordVersion, newerJournal(v > recordVersion))
	}
	r.kind = recordKind(rd.Uvarint())
	r.at = time.Unix(0, rd.Varint())
	r.name = rd.Str()
	r.instance = rd.Str()
	r.owner = rd.Str()
	r.action = readDigest(rd)
	r.worker = rd.Str()
	r.reason = rd.Str()
	r.retries = int(rd.Uvarint())
	if resp := rd.Blob(); resp != nil {
		r.resp = &repb.ExecuteResponse{}
		if err := proto.Unmarshal(resp, r.resp); err != nil {
			rd.Fail(fmt.Errorf("response: %w", err))
		}
	}
	if r.kind == recExpire {
		if v >= 4 {
			r.expired = rd.StringList()
		} else {
			r.expiredByTime = true
		}
	}
	if r.kind == recExecute {
		s := &submission{}
		r.sub = s
		s.name = rd.Str()
		s.instance = rd.Str()
		s.owner = rd.Str()
		s.action = readDigest(rd)
		s.cacheable = rd.Bool()
		s.priority = int32(rd.Varint())
		s.invocation = rd.Str()
		s.queueKey = rd.Str()
		s.routing = readProps(rd)
		s.spec.command = readDigest(rd)
		s.spec.inputRoot = readDigest(rd)
		s.spec.platform = readProps(rd)
		s.spec.timeout = time.Duration(rd.Varint())
		s.spec.doNotCache = rd.Bool()
		s.spec.requestMetadata = rd.Blob()
		if v >= 2 {
			s.skipCacheLookup = rd.Bool()
		}
		if v >= 3 {
			s.spec.workingDirKnown = rd.Bool()
			s.spec.workingDir = rd.Str()
		}
	}
	if err := rd.End(); err != nil {
		return r, fmt.Errorf("decode record: %w", err)
	}
	return r, nil
}

// writeDigest writes a zero digest as function 0.
func writeDigest(w *wirecodec.Writer, d digest.Digest) {
	if d.IsZero() {
		w.Uvarint(0)
		return
	}
	w.Uvarint(uint64(d.Function()))
	w.Str(d.Hash())
	w.Varint(d.SizeBytes())
}

func readDigest(r *wirecodec.Reader) digest.Digest {
	fn := r.Uvarint()
	if fn == 0 || r.Err() != nil {
		return digest.Digest{}
	}
	hash, size := r.Str(), r.Varint()
	if r.Err() != nil {
		return digest.Digest{}
	}
	d, err := digest.New(digest.Function(fn), hash, size)
	if err != nil {
		r.Fail(err)
	}
	return d
}

func writeProps(w *wirecodec.Writer, ps []*workerpb.Property) {
	w.Uvarint(uint64(len(ps)))
	for _, p := range ps {
		w.Str(p.Name, p.Value)
	}
}

// readProps reads what writeProps wrote; nil for none. A property takes
// two bytes at least.
func readProps(r *wirecodec.Reader) []*workerpb.Property {
	return wirecodec.ReadList(r, 2, func() *workerpb.Property { return &workerpb.Property{Name: r.Str(), Value: r.Str()} })
}

// newerJournal is the advice for a journal a newer Paddock wrote (a
// downgrade), which this one cannot read: before, the refusal said only
// the version numbers.
func newerJournal(newer bool) string {
	if !newer {
		return ""
	}
	return ": the journal was written by a newer Paddock; run that version again, or move the journal directory (scheduler.journal_dir) away to start without its queued and finished operations"
}
