package clock

import (
	"context"
	"testing"
	"time"
)

func TestFakeMovesOnlyWhenAdvanced(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	if !f.Now().Equal(start) {
		t.Fatalf("Now = %v, want %v", f.Now(), start)
	}
	f.Advance(time.Minute)
	if got := f.Now().Sub(start); got != time.Minute {
		t.Fatalf("advanced by %v, want 1m", got)
	}
	if _, ok := OrReal(nil).(Real); !ok {
		t.Fatal("OrReal(nil) is not the real clock")
	}
	if OrReal(f) != Clock(f) {
		t.Fatal("OrReal(f) is not f")
	}
}

// TestSleepEndsWithItsContext: Sleep reports a pause that passed, and one
// cut short by its context's end, at once.
func TestSleepEndsWithItsContext(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("a pause with a live context did not pass")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("a pause whose context had ended passed")
	}
}
