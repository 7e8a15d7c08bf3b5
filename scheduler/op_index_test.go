package scheduler

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// checkOpIndex fails unless the operations by owner (ListOperations'
// index) are exactly the core's operations, each under its owner, in
// strictly increasing name order, and each index keeps its invariants
// (no empty chunk, none over opChunkMax, no two small neighbours, n
// counts them).
func checkOpIndex(t *testing.T, c *core) {
	t.Helper()
	owned := 0
	for owner, x := range c.byOwner {
		n, prev := 0, ""
		for i, chunk := range x.chunks {
			if len(chunk) == 0 || len(chunk) > opChunkMax {
				t.Fatalf("owner %q: chunk %d of %d holds %d operations", owner, i, len(x.chunks), len(chunk))
			}
			if i > 0 && len(chunk) < opChunkMin && len(x.chunks[i-1]) < opChunkMin {
				t.Fatalf("owner %q: neighbouring chunks %d and %d hold %d and %d operations, both under %d", owner, i-1, i, len(x.chunks[i-1]), len(chunk), opChunkMin)
			}
			for _, op := range chunk {
				if n > 0 && op.name <= prev {
					t.Fatalf("owner %q: %q is indexed after %q", owner, op.name, prev)
				}
				if c.ops[op.name] != op || op.owner != owner {
					t.Fatalf("operation %q is indexed under owner %q, but the core has %+v", op.name, owner, c.ops[op.name])
				}
				n, prev = n+1, op.name
			}
		}
		if n == 0 || x.len() != n {
			t.Fatalf("owner %q: the index counts %d operations and holds %d (an owner without any has no index)", owner, x.len(), n)
		}
		owned += n
	}
	if owned != len(c.ops) {
		t.Fatalf("%d operations indexed by owner, the core has %d", owned, len(c.ops))
	}
}

// listings is every owner's operation names, as the index gives them.
func listings(c *core) map[string][]string {
	out := map[string][]string{}
	for owner, x := range c.byOwner {
		for op := range x.after("") {
			out[owner] = append(out[owner], op.name)
		}
	}
	return out
}

// randomOpName is an operation name as the scheduler makes them (a
// random UUID), from rng so that a failure repeats.
func randomOpName(rng *rand.Rand) string {
	return fmt.Sprintf("operations/%08x-%04x-4%03x-%04x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<16), rng.Uint64()&(1<<48-1))
}

// indexRun drives a core through the ways operations come and go, with
// random names and owners, and checks the index after each step.
type indexRun struct {
	t      *testing.T
	h      *harness
	rng    *rand.Rand
	names  []string // every operation made, in order
	owners []string
}

func (r *indexRun) owner() string { return r.owners[r.rng.IntN(len(r.owners))] }

// execute submits the ith action. Actions come in fours: the last three
// join the first's execution.
func (r *indexRun) execute(i int) {
	name := randomOpName(r.rng)
	if _, err := r.h.c.Execute(r.h.now, submission{name: name, owner: r.owner(), action: actionDigest(fmt.Sprint(i - i%4)), cacheable: true}); err != nil {
		r.t.Fatalf("execute %s: %v", name, err)
	}
	r.h.collect()
	r.names = append(r.names, name)
}

// cacheHit adds an operation completed from the action cache.
func (r *indexRun) cacheHit(message string) {
	name := randomOpName(r.rng)
	r.h.c.AddCompleted(r.h.now, name, "", r.owner(), actionDigest(name), &repb.ExecuteResponse{CachedResult: true, Message: message})
	r.h.collect()
	r.names = append(r.names, name)
}

// check runs checkOpIndex after the step what, which leaves want
// operations (any number if want < 0).
func (r *indexRun) check(what string, want int) {
	r.t.Helper()
	checkOpIndex(r.t, r.h.c)
	if want >= 0 && len(r.h.c.ops) != want {
		r.t.Fatalf("after %s: %d operations, want %d", what, len(r.h.c.ops), want)
	}
}

// restarts checks that each restarted core (checkOpIndex runs in
// replayed) lists every owner's operations as the live one does.
func (r *indexRun) restarts(cores map[string]*core) {
	r.t.Helper()
	live := listings(r.h.c)
	for how, c := range cores {
		if got := listings(c); !maps.EqualFunc(got, live, slices.Equal) {
			r.t.Fatalf("%s: the index lists %d owners' operations, the live core's %d, or not the same", how, len(got), len(live))
		}
	}
}

// The index follows the operations through every way they come and go:
// Execute (a new execution, and a join of one in flight), a cache hit,
// dispatch and completion, cancel, DeleteOperation, expiry after the
// retention, the bound on completed responses, and a restart from a
// snapshot or from the journal's records. Names are random, with enough
// of them that chunks split, merge and go. checkOpIndex runs after each
// step, and the restarted cores list the same names as the live one.
func TestOpIndexFollowsOperations(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.CompletedRetention = time.Minute })
	r := &indexRun{t: t, h: h, rng: rand.New(rand.NewPCG(1, 2)), owners: []string{"", "tenant-a", "tenant-b"}}
	for i := range 3000 {
		r.execute(i)
	}
	r.check("executes and joins", 3000)
	for range 300 {
		r.cacheHit("")
	}
	r.check("cache hits", 3300)
	h.connect("w", 200, nil)
	for _, a := range h.assignments() {
		h.result(a.worker, a.name, a.attempt, 0)
	}
	r.check("dispatch and completion", 3300)
	for _, i := range r.rng.Perm(len(r.names))[:200] {
		_ = h.c.Cancel(h.now, r.names[i]) // a done one stays as it is
		h.collect()
	}
	r.check("cancels", 3300)
	for _, i := range r.rng.Perm(len(r.names))[:2500] {
		if err := h.c.Delete(h.now, r.names[i]); err != nil {
			t.Fatal(err)
		}
		h.collect()
	}
	r.check("deletes", 800)

	snap := mustState(t, h.c)
	b, err := encodeState(snap)
	if err == nil {
		snap, err = decodeState(b)
	}
	if err != nil {
		t.Fatal(err)
	}
	snapAt := len(h.records)
	r.restarts(map[string]*core{
		"restore from a snapshot": replayed(t, h.cfg, nil, snap, nil),
		"replay of the journal":   replayed(t, h.cfg, nil, nil, h.records),
	})

	for i := 3000; i < 3500; i++ {
		r.execute(i)
	}
	r.check("executes after the snapshot", 1300)
	h.advance(time.Minute) // every operation completed so far expires
	r.check("expiry", -1)
	if n := retained(h.c); n != 0 || len(h.c.ops) == 1300 {
		t.Fatalf("after the retention: %d operations, %d of them completed; the completed ones should have expired", len(h.c.ops), n)
	}
	h.c.cfg.MaxCompletedBytes = 1 // only the newest completed operation stays
	for range 20 {
		r.cacheHit("x")
	}
	r.check("the bound on completed responses", -1)
	if n := retained(h.c); n != 1 {
		t.Fatalf("%d completed operations under a bound of 1 byte, want the newest only", n)
	}
	r.restarts(map[string]*core{
		"snapshot and the records after it": replayed(t, h.cfg, nil, snap, h.records[snapAt:]),
		"replay of the whole journal":       replayed(t, h.cfg, nil, nil, h.records),
	})
}

// retained is the number of completed operations c keeps.
func retained(c *core) int {
	n := 0
	for _, op := range c.completed {
		if c.ops[op.name] == op && op.done {
			n++
		}
	}
	return n
}

// An index of random names gives them back in order from any point, and
// keeps its invariants while most of them go again in random order.
func TestOpIndexOrdersAndSeeks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := newCore(DefaultConfig())
	var names []string
	for range 5000 {
		op := &operation{name: randomOpName(rng)}
		c.addOp(op)
		names = append(names, op.name)
	}
	checkOpIndex(t, c)
	slices.Sort(names)
	for _, after := range []string{"", "operations/", names[0], names[2500], names[4999], "operations/8", "operations/g"} {
		i, _ := slices.BinarySearch(names, after)
		if i < len(names) && names[i] == after {
			i++
		}
		got := slices.Collect(c.byOwner[""].after(after))
		if len(got) != len(names)-i || (len(got) > 0 && got[0].name != names[i]) {
			t.Fatalf("after %q: %d operations, want %d from %q", after, len(got), len(names)-i, names[min(i, len(names)-1)])
		}
	}
	for _, i := range rng.Perm(len(names))[:4990] {
		c.dropOp(c.ops[names[i]])
		if i%97 == 0 {
			checkOpIndex(t, c)
		}
	}
	checkOpIndex(t, c)
	if n := c.byOwner[""].len(); n != 10 {
		t.Fatalf("%d operations left, want 10", n)
	}
	for _, op := range slices.Collect(maps.Values(c.ops)) {
		c.dropOp(op)
	}
	if len(c.byOwner) != 0 || len(slices.Collect(c.byOwner[""].after(""))) != 0 {
		t.Fatalf("an owner without operations keeps an index: %v", c.byOwner)
	}
}

// BenchmarkOpIndexInsert: inserting and removing one operation beside
// 200,000 of one owner, random names, in the index and in one sorted
// slice (the simpler structure it was chosen over).
func BenchmarkOpIndexInsert(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	ops := make([]*operation, benchListQueued+1000)
	for i := range ops {
		ops[i] = &operation{name: randomOpName(rng)}
	}
	base, extra := ops[:benchListQueued], ops[benchListQueued:]
	b.Run("opIndex", func(b *testing.B) {
		x := &opIndex{}
		for _, op := range base {
			x.insert(op)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			op := extra[i%len(extra)]
			x.insert(op)
			x.remove(op)
			i++
		}
	})
	b.Run("sorted_slice", func(b *testing.B) {
		byName := func(op *operation, name string) int { return strings.Compare(op.name, name) }
		var s []*operation
		for _, op := range base {
			j, _ := slices.BinarySearchFunc(s, op.name, byName)
			s = slices.Insert(s, j, op)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			op := extra[i%len(extra)]
			j, _ := slices.BinarySearchFunc(s, op.name, byName)
			s = slices.Insert(s, j, op)
			s = slices.Delete(s, j, j+1)
			i++
		}
	})
}
