package tokens

import (
	"context"
	"sync"
	"time"
)

// EventKind says what happened to a token or module.
type EventKind string

// Event kinds.
const (
	// TokenInserted: a token appeared (a card was inserted).
	TokenInserted EventKind = "inserted"
	// TokenRemoved: a token disappeared (a card was pulled), or its module
	// failed.
	TokenRemoved EventKind = "removed"
	// ModuleFailed: a module stopped answering or crashed, or cannot be
	// loaded; Err says why. Reported once until it works again.
	ModuleFailed EventKind = "module-failed"
)

// Event is a change Watch noticed.
type Event struct {
	// Kind is what happened.
	Kind EventKind
	// Token is the token inserted or removed (zero for ModuleFailed).
	Token Token
	// Module is the module's name.
	Module string
	// Err is the module's failure (ModuleFailed).
	Err error
	// Time is when the change was noticed.
	Time time.Time
}

// Watch polls every module every Options.PollInterval for the tokens
// present (C_GetSlotList with tokenPresent, re-initialising modules every
// RescanInterval while they are idle, because C_WaitForSlotEvent cannot be
// relied on) and sends a TokenInserted or TokenRemoved event for each
// change, until ctx ends or the Manager is closed; then the channel is
// closed.
//
// Watch first takes the modules' current tokens as its starting point
// (waiting at most a few seconds for slow modules) and reports only
// changes from there: call Tokens for the current state. Each call polls
// on its own; the daemon calls it once. A slow receiver loses events
// rather than holding the poll up (the channel buffers 64).
//
// A removed token's cached PIN is forgotten.
func (m *Manager) Watch(ctx context.Context) <-chan Event {
	ch := make(chan Event, 64)
	m.mu.Lock()
	if m.isClosed() {
		m.mu.Unlock()
		close(ch)
		return ch
	}
	m.bg.Add(1) // under mu: Close waits for it
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{m: m, ch: ch}
	var ready sync.WaitGroup
	var loops sync.WaitGroup
	for _, md := range m.modules {
		ready.Add(1)
		loops.Add(1)
		go func() {
			defer loops.Done()
			w.loop(ctx, md, ready.Done)
		}()
	}
	go func() {
		defer m.bg.Done()
		select {
		case <-ctx.Done():
		case <-m.closed:
		}
		cancel()
		loops.Wait()
		close(ch)
	}()
	waitTimeout(&ready, min(m.o.CallTimeout, 5*time.Second))
	return ch
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

type watcher struct {
	m  *Manager
	ch chan Event
}

func (w *watcher) send(ctx context.Context, e Event) {
	e.Time = time.Now()
	select {
	case w.ch <- e:
	case <-ctx.Done():
	default:
		w.m.log.Warn("tokens: watch receiver too slow, event dropped", "kind", e.Kind, "token", e.Token.Label)
	}
}

// loop polls one module. The first answer is the starting point (ready is
// called then, or after the first failure).
func (w *watcher) loop(ctx context.Context, md *module, ready func()) {
	var once sync.Once
	defer once.Do(ready)
	var prev map[string]Token // nil until the first answer
	failing := false
	t := time.NewTicker(w.m.o.PollInterval)
	defer t.Stop()
	for {
		toks, err := md.tokens(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !failing {
				failing = true
				w.m.log.Warn("tokens: module failed", "module", md.name, "err", err)
				w.send(ctx, Event{Kind: ModuleFailed, Module: md.name, Err: err})
			}
			for id, tok := range prev {
				w.removed(ctx, md, tok)
				delete(prev, id)
			}
			if prev == nil {
				prev = map[string]Token{} // tokens that appear later are news
			}
		} else {
			failing = false
			cur := make(map[string]Token, len(toks))
			for _, tok := range toks {
				cur[tok.ID] = tok
			}
			if prev != nil {
				for id, tok := range cur {
					if _, ok := prev[id]; !ok {
						w.m.log.Info("tokens: token inserted", "token", tok.Label, "module", md.name)
						w.send(ctx, Event{Kind: TokenInserted, Token: tok, Module: md.name})
					}
				}
				for id, tok := range prev {
					if _, ok := cur[id]; !ok {
						w.removed(ctx, md, tok)
					}
				}
			}
			prev = cur
		}
		once.Do(ready)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *watcher) removed(ctx context.Context, md *module, tok Token) {
	w.m.dropPIN(tok.ID)
	w.m.log.Info("tokens: token removed", "token", tok.Label, "module", md.name)
	w.send(ctx, Event{Kind: TokenRemoved, Token: tok, Module: md.name})
}
