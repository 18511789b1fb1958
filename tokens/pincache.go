package tokens

import (
	"time"

	"github.com/smimed/smimed/prompt"
)

// cachedPIN is a token's PIN kept for Options.CachePIN after a successful
// login.
type cachedPIN struct {
	s     *prompt.Secret
	timer *time.Timer
}

func (c *cachedPIN) wipe() {
	c.timer.Stop()
	c.s.Wipe()
}

// cachedPIN returns a copy of the token's cached PIN (the caller wipes
// it), or nil.
func (m *Manager) cachedPIN(tokenID string) *prompt.Secret {
	if m.o.CachePIN <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.pins[tokenID]
	if !ok || c.s.Len() == 0 {
		return nil
	}
	return prompt.NewSecret(c.s.Bytes())
}

// cachePIN keeps a copy of pin for the token, unless one is cached
// already (the expiry counts from the first successful login, it does not
// slide).
func (m *Manager) cachePIN(tokenID string, pin *prompt.Secret) {
	if pin.Len() == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.isClosed() {
		return
	}
	if _, ok := m.pins[tokenID]; ok {
		return
	}
	c := &cachedPIN{s: prompt.NewSecret(pin.Bytes())}
	c.timer = time.AfterFunc(m.o.CachePIN, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.pins[tokenID] == c {
			delete(m.pins, tokenID)
		}
		c.s.Wipe()
	})
	m.pins[tokenID] = c
}

// dropPIN forgets and zeroes the token's cached PIN.
func (m *Manager) dropPIN(tokenID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.pins[tokenID]; ok {
		delete(m.pins, tokenID)
		c.wipe()
	}
}
