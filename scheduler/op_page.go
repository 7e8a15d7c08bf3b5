package scheduler

import (
	"container/heap"
	"slices"
	"strings"
)

// opPage selects one page of ListOperations: the first size views by
// name, and whether more follow, in memory of the page's size whatever
// the number of operations. Sorting every operation for each call made
// one cheap request cost the scheduler time and memory in proportion to
// all the operations it holds (a million, a queue's bound).
type opPage struct {
	size  int
	views opHeap // the size+1 smallest names so far, largest on top
}

func newOpPage(size int) *opPage { return &opPage{size: size} }

// wants reports whether an operation named name could be on the page,
// before its view is made.
func (p *opPage) wants(name string) bool {
	return len(p.views) <= p.size || name < p.views[0].name
}

// add offers v for the page.
func (p *opPage) add(v opView) {
	heap.Push(&p.views, v)
	if len(p.views) > p.size+1 {
		heap.Pop(&p.views)
	}
}

// result returns the page in name order and the next page's token ("" on
// the last page).
func (p *opPage) result() ([]opView, string) {
	views := slices.Clone(p.views)
	slices.SortFunc(views, func(a, b opView) int { return strings.Compare(a.name, b.name) })
	if len(views) > p.size {
		views = views[:p.size]
		return views, views[p.size-1].name
	}
	return views, ""
}

// opHeap is a max-heap of views by name (container/heap).
type opHeap []opView

func (h opHeap) Len() int           { return len(h) }
func (h opHeap) Less(i, j int) bool { return h[i].name > h[j].name }
func (h opHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *opHeap) Push(x any)        { *h = append(*h, x.(opView)) }
func (h *opHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	*h = old[:len(old)-1]
	return v
}
