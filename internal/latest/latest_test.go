package latest

import (
	"testing"
	"time"
)

func TestNewerReplacesUnread(t *testing.T) {
	s := New[int]()
	if s.Take() != nil {
		t.Fatal("a new slot holds a value")
	}
	one, two := 1, 2
	s.Offer(&one)
	s.Offer(&two) // never blocks, though nobody read the first
	if !s.Pending() {
		t.Fatal("an offered value is not pending")
	}
	select {
	case <-s.Wake():
	case <-time.After(time.Second):
		t.Fatal("no wake after Offer")
	}
	if v := s.Take(); v == nil || *v != 2 {
		t.Fatalf("Take = %v, want the newest value 2", v)
	}
	if s.Take() != nil {
		t.Fatal("Take returned a value twice")
	}
}
