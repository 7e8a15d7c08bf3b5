package gopool

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// goid is the calling goroutine's id, from its stack header.
func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// TestEveryFunctionRunsWhileOthersBlock: Go never waits for a busy pool:
// functions handed over while all the others block still run.
func TestEveryFunctionRunsWhileOthersBlock(t *testing.T) {
	p := New(time.Minute)
	const n = 50
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	var done sync.WaitGroup
	done.Add(n)
	for range n {
		p.Go(func() {
			defer done.Done()
			started.Done()
			<-release
		})
	}
	started.Wait() // all n run at once: none waited for another
	close(release)
	done.Wait()
}

// TestGoroutineIsKeptForTheNextCall: a goroutine that has finished a
// function runs a later one, so its grown stack serves again.
func TestGoroutineIsKeptForTheNextCall(t *testing.T) {
	p := New(time.Minute)
	first := make(chan uint64)
	p.Go(func() { first <- goid() })
	id := <-first
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := make(chan uint64)
		p.Go(func() { got <- goid() })
		if <-got == id {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no later function ran on goroutine %d", id)
		}
		runtime.Gosched() // the first goroutine may not be waiting yet
	}
}

// TestIdleGoroutinesExit: after a burst, the pool's goroutines exit once
// idle, leaving none behind.
func TestIdleGoroutinesExit(t *testing.T) {
	before := runtime.NumGoroutine()
	p := New(20 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(20)
	release := make(chan struct{})
	for range 20 {
		p.Go(func() { defer wg.Done(); <-release })
	}
	if n := runtime.NumGoroutine(); n < before+20 {
		t.Fatalf("%d goroutines during the burst, want at least %d", n, before+20)
	}
	close(release)
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after the pool went idle, want %d", runtime.NumGoroutine(), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
