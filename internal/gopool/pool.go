// Package gopool runs short functions on goroutines that outlive them.
//
// A new goroutine starts with a small stack and grows it by copying, once
// per doubling, each time it goes deeper than before. The farm's per-action
// paths (a gRPC handler, the worker's steps, the storage calls under them)
// go tens of frames deep, and profiles of `paddock up` under load put a
// twelfth of its CPU in that copying. A goroutine kept for the next call
// keeps its grown stack (until the garbage collector shrinks an idle one),
// so the next call pays for none of it.
package gopool

import "time"

// Pool hands functions to its idle goroutines, or to a new one when none is
// idle. It never queues: Go returns once f has a goroutine, so a pool
// cannot delay work or bound it (callers that need a bound keep their own).
// The zero Pool is not usable; use New.
type Pool struct {
	work chan func()
	idle time.Duration
}

// New returns a pool whose goroutines exit after idle without work, so a
// burst leaves no goroutines behind.
func New(idle time.Duration) *Pool {
	return &Pool{work: make(chan func()), idle: idle}
}

// Go runs f on a goroutine of the pool.
func (p *Pool) Go(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

// loop runs f, then whatever is handed to it, until it has waited idle for
// nothing.
func (p *Pool) loop(f func()) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(p.idle)
		select {
		case f = <-p.work:
		case <-t.C:
			return
		}
	}
}
