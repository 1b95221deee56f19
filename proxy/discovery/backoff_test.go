package discovery

import (
	"testing"
	"time"
)

// The reopen wait doubles while attempts fail, up to the maximum, starts over after a
// stream that progressed, and is always between half the backoff and all of it.
func TestStreamBackoff(t *testing.T) {
	b := &streamBackoff{cur: 100 * time.Millisecond, min: 100 * time.Millisecond, max: time.Second}
	ms := time.Millisecond
	for i, want := range []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second} {
		if w := b.next(false); w < want/2 || w > want {
			t.Fatalf("attempt %d: wait %s, want within [%s, %s]", i, w, want/2, want)
		}
	}
	if w := b.next(true); w < 50*time.Millisecond || w > 100*time.Millisecond {
		t.Fatalf("after progress: wait %s, want within [50ms, 100ms]", w)
	}
}
