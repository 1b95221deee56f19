// Package latest is a one-value mailbox where a newer value replaces an unread one: how
// the destination and inbound policy services hand a stream its next configuration. The
// compile loop never waits for a slow stream (a client that stops reading cannot stall
// every other one), and a stream that falls behind skips to the newest configuration
// instead of replaying each one it missed.
package latest

import "sync"

// Slot holds at most one value. The zero Slot is not usable: create it with New.
type Slot[T any] struct {
	mu   sync.Mutex
	next *T
	wake chan struct{}
}

// New returns an empty Slot.
func New[T any]() *Slot[T] {
	return &Slot[T]{wake: make(chan struct{}, 1)}
}

// Offer replaces the unread value, if any, with v and wakes the reader. It never blocks.
func (s *Slot[T]) Offer(v *T) {
	s.mu.Lock()
	s.next = v
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Wake is signalled after an Offer; the reader then calls Take.
func (s *Slot[T]) Wake() <-chan struct{} { return s.wake }

// Take returns the unread value and empties the slot; nil when there is none (a wake
// whose value an earlier Take already returned).
func (s *Slot[T]) Take() *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.next
	s.next = nil
	return v
}

// Pending reports whether an unread value waits in the slot.
func (s *Slot[T]) Pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next != nil
}
