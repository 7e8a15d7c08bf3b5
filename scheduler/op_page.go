package scheduler

// opPage collects one page of ListOperations from operations offered in
// name order (opIndex): the first size, and one more, which tells that a
// next page exists. Its memory is the page's, whatever the number of
// operations. A page also ends before the operation that would take it
// past maxPageBytes (page_size is an upper bound: google.longrunning
// allows a shorter page with a next_page_token): two finished operations
// of 3.7 MB results made a default page no client could receive, and
// eight one that the server could not send.
type opPage struct {
	size  int
	bytes int64    // of views but the one past the page
	cut   bool     // the last of views is past maxPageBytes
	views []opView // in name order; at most size+1
}

// maxPageBytes bounds a page's operations: what gRPC clients receive by
// default (Bazel's included), less room for the response's framing. One
// operation alone always fits (maxDeliveredResponseBytes).
const maxPageBytes = 4<<20 - 32<<10

func newOpPage(size int) *opPage { return &opPage{size: size} }

// full reports whether the page needs no more operations.
func (p *opPage) full() bool { return p.cut || len(p.views) > p.size }

// add appends v, named after every view added before it.
func (p *opPage) add(v opView) {
	n := opSize(v)
	p.cut = len(p.views) > 0 && p.bytes+n > maxPageBytes
	p.bytes += n
	p.views = append(p.views, v)
}

// result returns the page in name order and the next page's token ("" on
// the last page): the name of the page's last operation, after which the
// next page starts.
func (p *opPage) result() ([]opView, string) {
	if p.full() {
		views := p.views[:len(p.views)-1]
		return views, views[len(views)-1].name
	}
	return p.views, ""
}

// listBatch is the most operations one listOwned call looks at. A page
// with a filter may have to look at all of a tenant's operations to find
// its own; the scheduler's lock is let go between batches so that such a
// page does not hold up every other call for all that time. An unfiltered
// page (at most 1,000 and one) fits in one batch.
const listBatch = 2048

// listOwned offers page the operations of owner named after after that
// match f, in name order, until the page is full or it has looked at
// listBatch operations. It returns the name of the last operation it
// looked at, from which a next call goes on, and whether there may be
// more to look at.
func (c *core) listOwned(owner, after string, f opFilter, page *opPage) (last string, more bool) {
	seen := 0
	for op := range c.byOwner[owner].after(after) {
		if seen == listBatch {
			return after, true
		}
		seen++
		after = op.name
		if v := op.view(); f.match(v) {
			if page.add(v); page.full() {
				break
			}
		}
	}
	return after, false
}
