package s3store_test

import (
	"bufio"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage/s3store"
	"github.com/paddock-build/paddock/storage/storagetest/seaweedtest"
)

// BenchmarkStream1GiB puts a 1 GiB blob through the S3 backend (default
// 16 MiB parts) and reads it back whole, and reports how far the process's
// memory rose above where it started: the Go heap (sampled every
// millisecond) and the resident set's high-water mark (VmHWM, reset
// first). The store must stream: the bound is 64 MiB (docs/benchmarks.md).
// SeaweedFS is another process; only this one (the storage role's side)
// is measured. The benchmark fails past the bound.
//
//	go test ./storage/s3store -run '^$' -bench Stream1GiB -benchtime 1x
func BenchmarkStream1GiB(b *testing.B) {
	const size, maxRise = 1 << 30, 64 << 20
	srv := seaweedtest.Start(b)
	bucket := srv.CreateBucket(b, "bench")
	c, err := s3store.New(s3store.Options{Endpoint: srv.Endpoint, Bucket: bucket,
		AccessKeyID: seaweedtest.AccessKey, SecretAccessKey: seaweedtest.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	s := s3store.NewBlobStore(c)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		seed := uint64(time.Now().UnixNano())
		d, err := digest.FromReader(repb.DigestFunction_SHA256, io.LimitReader(rand.NewChaCha8(seedBytes(seed)), size))
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		peak := startPeakSampler(b)
		b.StartTimer()
		if err := s.Put(ctx, d, io.LimitReader(rand.NewChaCha8(seedBytes(seed)), size)); err != nil {
			b.Fatal(err)
		}
		r, err := s.Get(ctx, d, 0)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != size {
			b.Fatalf("read back %d bytes: %v", n, err)
		}
		r.Close()
		b.StopTimer()
		heap, rss := peak()
		if heap > maxRise || rss > maxRise {
			b.Fatalf("streaming 1 GiB up and down raised the heap by %d MiB and the RSS by %d MiB; the bound is %d MiB",
				heap>>20, rss>>20, maxRise>>20)
		}
		b.ReportMetric(float64(heap)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
		b.SetBytes(2 * size)
	}
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return s
}

// startPeakSampler records the heap's and the resident set's rise above
// their current levels until the returned function is called.
func startPeakSampler(b *testing.B) func() (heap, rss int64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	heapNow := func() int64 { metrics.Read(sample); return int64(sample[0].Value.Uint64()) }
	baseHeap := heapNow()
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset VmHWM: %v", err)
	}
	baseRSS := procStatus(b, "VmRSS")
	var peakHeap int64 // the sampler's until done is closed
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				peakHeap = max(peakHeap, heapNow())
			}
		}
	}()
	return func() (int64, int64) {
		close(stop)
		<-done
		return max(0, peakHeap-baseHeap), max(0, procStatus(b, "VmHWM")-baseRSS)
	}
}

// procStatus reads a "kB" field of /proc/self/status, in bytes.
func procStatus(b *testing.B, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, rest, ok := strings.Cut(sc.Text(), ":"); ok && name == field {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}
