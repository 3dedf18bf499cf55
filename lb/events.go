package lb

import (
	"sync"
	"time"
)

// Event is one discovery or health happening, kept for the admin API.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"` // e.g. "discovered", "removed", "state", "docker"
	Pool    string    `json:"pool,omitempty"`
	Backend string    `json:"backend,omitempty"` // backend ID
	Name    string    `json:"name,omitempty"`    // container name or address
	Message string    `json:"message"`
}

// EventLog keeps the last events in a ring and fans new ones out to
// subscribers. The zero value is not usable; use NewEventLog.
type EventLog struct {
	mu   sync.Mutex
	ring []Event
	next int
	full bool
	subs map[chan Event]struct{}
}

// NewEventLog keeps the last n events.
func NewEventLog(n int) *EventLog {
	return &EventLog{ring: make([]Event, n), subs: map[chan Event]struct{}{}}
}

// Add records an event. Slow subscribers miss events rather than block it.
func (l *EventLog) Add(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	if l.next == 0 {
		l.full = true
	}
	for ch := range l.subs {
		select {
		case ch <- e:
		default:
		}
	}
}

// Recent returns the kept events, oldest first.
func (l *EventLog) Recent() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.full {
		return append([]Event(nil), l.ring[:l.next]...)
	}
	out := append([]Event(nil), l.ring[l.next:]...)
	return append(out, l.ring[:l.next]...)
}

// Subscribe returns a channel of new events and a function that ends the
// subscription.
func (l *EventLog) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 64)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}
