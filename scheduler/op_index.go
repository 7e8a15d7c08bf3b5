package scheduler

import (
	"iter"
	"slices"
	"sort"
)

// opIndex holds one owner's operations in name order, so that a
// ListOperations page starts where its token points and reads only the
// page's operations. Before, every page walked all of the tenant's
// operations under the scheduler's lock: with 200,000 queued, tens of
// milliseconds a page on an idle machine and 775 ms at the 99th
// percentile under load, during which no Execute, WaitExecution or
// worker was served (BenchmarkListOperations200k).
//
// It is a sorted list kept in runs ("chunks"), as Python's
// sortedcontainers keeps one: each chunk sorted and holding at most
// opChunkMax operations, the chunks in order. Finding a name is a binary
// search over the chunks' last names, then one in the chunk: O(log n).
// An insert or a removal moves at most opChunkMax pointers inside its
// chunk, plus one pointer per chunk when a chunk splits, merges or goes.
// One sorted slice would move half the operations per insert on average
// (operation names are random UUIDs, so inserts land anywhere):
// BenchmarkOpIndexInsert compares the two.
//
// Invariants: no chunk is empty, and no two neighbouring chunks both hold
// fewer than opChunkMin operations (so there are at most 2n/opChunkMin+1
// chunks); names are unique (core.addOp drops an operation of the same
// name first). Owned by core, which serialises every call.
type opIndex struct {
	chunks [][]*operation
	n      int
}

const (
	// opChunkMax is the most operations a chunk holds: large enough that
	// a million operations (a queue's bound) make a few thousand chunks,
	// small enough that an insert moves little.
	opChunkMax = 512
	// opChunkMin: a chunk that falls below it merges with a neighbour
	// when they fit in one.
	opChunkMin = opChunkMax / 4
)

// len is the number of operations indexed.
func (x *opIndex) len() int { return x.n }

// find returns the position (chunk i, offset j) of the first operation
// whose name satisfies ok, a predicate false for a prefix of the order and
// true after it; i is len(x.chunks) if there is none.
func (x *opIndex) find(ok func(name string) bool) (i, j int) {
	i = sort.Search(len(x.chunks), func(i int) bool { c := x.chunks[i]; return ok(c[len(c)-1].name) })
	if i < len(x.chunks) {
		c := x.chunks[i]
		j = sort.Search(len(c), func(j int) bool { return ok(c[j].name) })
	}
	return i, j
}

// insert adds op, which must not be indexed yet.
func (x *opIndex) insert(op *operation) {
	x.n++
	if len(x.chunks) == 0 {
		x.chunks = [][]*operation{{op}}
		return
	}
	i, j := x.find(func(name string) bool { return name >= op.name })
	if i == len(x.chunks) { // after every name: at the end of the last chunk
		i--
		j = len(x.chunks[i])
	}
	c := slices.Insert(x.chunks[i], j, op)
	if len(c) <= opChunkMax {
		x.chunks[i] = c
		return
	}
	half := len(c) / 2
	x.chunks[i] = newChunk(c[:half])
	x.chunks = slices.Insert(x.chunks, i+1, newChunk(c[half:]))
}

// newChunk copies ops into a chunk with room to grow to opChunkMax+1, the
// size at which it splits, without reallocating.
func newChunk(ops []*operation) []*operation {
	return append(make([]*operation, 0, opChunkMax+1), ops...)
}

// remove takes op out, and reports whether it was indexed.
func (x *opIndex) remove(op *operation) bool {
	i, j := x.find(func(name string) bool { return name >= op.name })
	if i == len(x.chunks) || x.chunks[i][j] != op {
		return false
	}
	x.n--
	c := slices.Delete(x.chunks[i], j, j+1)
	x.chunks[i] = c
	switch {
	case len(c) == 0:
		x.chunks = slices.Delete(x.chunks, i, i+1)
	case len(c) < opChunkMin:
		x.mergeSmall(i)
	}
	return true
}

// mergeSmall merges chunk i, which has fallen below opChunkMin, into the
// neighbour before or after it, the first of the two it fits in with.
// A neighbour below opChunkMin too always fits: so no two neighbours stay
// small.
func (x *opIndex) mergeSmall(i int) {
	for _, k := range []int{i - 1, i + 1} {
		if k < 0 || k >= len(x.chunks) || len(x.chunks[i])+len(x.chunks[k]) > opChunkMax {
			continue
		}
		lo := min(i, k)
		x.chunks[lo] = append(x.chunks[lo], x.chunks[lo+1]...)
		x.chunks = slices.Delete(x.chunks, lo+1, lo+2)
		return
	}
}

// after yields, in name order, the operations named after name (all of
// them for ""). x may be nil: an owner without operations. The index must
// not change while the sequence is read.
func (x *opIndex) after(name string) iter.Seq[*operation] {
	return func(yield func(*operation) bool) {
		if x == nil {
			return
		}
		i, j := x.find(func(n string) bool { return n > name })
		for ; i < len(x.chunks); i, j = i+1, 0 {
			for _, op := range x.chunks[i][j:] {
				if !yield(op) {
					return
				}
			}
		}
	}
}
