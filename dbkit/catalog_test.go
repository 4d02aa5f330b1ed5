package dbkit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lazy reads once for any number of concurrent callers, and keeps neither
// a failure nor a value its reader did not want kept.
func TestLazyReadsOnce(t *testing.T) {
	var l lazy[int]
	var reads atomic.Int64
	failed := errors.New("read failed")
	read := func(result error, keep bool) func(context.Context) (int, bool, error) {
		return func(context.Context) (int, bool, error) {
			reads.Add(1)
			time.Sleep(time.Millisecond)
			return 42, keep, result
		}
	}
	ctx := context.Background()
	if _, err := l.get(ctx, read(failed, true)); !errors.Is(err, failed) {
		t.Fatalf("get = %v, want the read's error", err)
	}
	if v, err := l.get(ctx, read(nil, false)); v != 42 || err != nil {
		t.Fatalf("get = %d, %v; want 42", v, err)
	}
	reads.Store(0)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if v, err := l.get(ctx, read(nil, true)); v != 42 || err != nil {
				t.Errorf("get = %d, %v; want 42", v, err)
			}
		})
	}
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Errorf("32 concurrent gets read %d times, want once (the reads before kept nothing)", n)
	}
}

// A caller waiting for another's read gives up when its own ctx ends; a
// reader that panics lets the waiters read again.
func TestLazyWaitIsBoundByCtx(t *testing.T) {
	var l lazy[int]
	release := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer func() { _ = recover() }()
		_, _ = l.get(context.Background(), func(context.Context) (int, bool, error) {
			close(started)
			<-release
			panic("reader panics")
		})
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.get(ctx, func(context.Context) (int, bool, error) { return 1, true, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a waiter whose ctx ended: %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.get(context.Background(), func(context.Context) (int, bool, error) { return 7, true, nil })
		done <- err
	}()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter still waits after the reader panicked")
	}
	if v, err := l.get(context.Background(), nil); v != 7 || err != nil {
		t.Fatalf("get = %d, %v; want the value read after the panic, 7", v, err)
	}
}
