package scheduler

// opPage collects one page of ListOperations from operations offered in
// name order (opIndex): the first size, and one more, which tells that a
// next page exists. Its memory is the page's, whatever the number of
// operations.
type opPage struct {
	size  int
	views []opView // in name order; at most size+1
}

func newOpPage(size int) *opPage { return &opPage{size: size} }

// full reports whether the page needs no more operations.
func (p *opPage) full() bool { return len(p.views) > p.size }

// add appends v, named after every view added before it.
func (p *opPage) add(v opView) { p.views = append(p.views, v) }

// result returns the page in name order and the next page's token ("" on
// the last page): the name of the page's last operation, after which the
// next page starts.
func (p *opPage) result() ([]opView, string) {
	if len(p.views) > p.size {
		views := p.views[:p.size]
		return views, views[p.size-1].name
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
