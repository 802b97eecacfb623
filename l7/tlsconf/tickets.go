package tlsconf

import (
	"crypto/rand"
	"crypto/tls"
	"sync"
	"time"
	"weak"
)

// Defaults of NewTicketKeys.
const (
	DefaultTicketRotation = time.Hour
	DefaultTicketKeep     = 3
)

// TicketKeys are the session ticket keys of one service: the current key,
// which encrypts new tickets, and the previous ones, which still decrypt
// theirs. Every configuration Server builds with them gets them and every
// rotation, so a ticket issued by one listener or configuration of the
// service resumes on any other, and a reload does not cost clients a full
// handshake. The keys live in memory only.
//
// A key encrypts tickets for one rotation period and is accepted for keep
// periods in all, so a ticket resumes for at least keep-1 periods.
//
// Sharing keys across a reload that changes client_ca_file is safe:
// crypto/tls verifies a resumed session's client chain against the
// configuration's current ClientCAs.
type TicketKeys struct {
	every time.Duration
	keep  int

	mu      sync.Mutex
	keys    [][32]byte                 // newest first, at most keep
	configs []weak.Pointer[tls.Config] // those given the keys; dropped once collected
	timer   *time.Timer
	stopped bool
}

// NewTicketKeys returns keys that rotate every period (0:
// DefaultTicketRotation), keeping keep keys in all, the current one
// included (below 1: DefaultTicketKeep). Call Stop when the service goes
// away.
func NewTicketKeys(every time.Duration, keep int) *TicketKeys {
	if every <= 0 {
		every = DefaultTicketRotation
	}
	if keep < 1 {
		keep = DefaultTicketKeep
	}
	k := &TicketKeys{every: every, keep: keep, keys: [][32]byte{newKey()}}
	k.timer = time.AfterFunc(every, k.tick)
	return k
}

func newKey() [32]byte {
	var b [32]byte
	rand.Read(b[:]) // never fails: crypto/rand aborts the program instead
	return b
}

func (k *TicketKeys) tick() {
	k.Rotate()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.stopped {
		k.timer.Reset(k.every)
	}
}

// Rotate makes a new current key now, dropping the oldest beyond keep.
func (k *TicketKeys) Rotate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append([][32]byte{newKey()}, k.keys[:min(len(k.keys), k.keep-1)]...)
	k.eachLocked(func(c *tls.Config) { c.SetSessionTicketKeys(k.keys) })
}

// eachLocked calls f for every configuration still alive and forgets the
// others.
func (k *TicketKeys) eachLocked(f func(*tls.Config)) {
	live := k.configs[:0]
	for _, w := range k.configs {
		if c := w.Value(); c != nil {
			f(c)
			live = append(live, w)
		}
	}
	clear(k.configs[len(live):])
	k.configs = live
}

// Stop ends the rotation; the configurations keep the keys they have.
func (k *TicketKeys) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.timer.Stop()
}

// attach gives c the keys, now and at every rotation, for as long as c is
// in use. A weak pointer, so that a configuration a reload replaced is
// collected without the caller telling.
func (k *TicketKeys) attach(c *tls.Config) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.eachLocked(func(*tls.Config) {}) // reloads add configurations; drop the collected ones
	k.configs = append(k.configs, weak.Make(c))
	c.SetSessionTicketKeys(k.keys)
}
