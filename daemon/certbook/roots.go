package certbook

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
)

// trustCache keeps the anchors TrustAnchors read and the pools TrustPool
// built, per set of sources, for as long as nothing they were read from
// changed: verifying a message neither re-reads the anchor files nor
// copies the system pool.
type trustCache struct {
	mu   sync.Mutex
	sets map[string]*anchorSet // by sourcesKey
}

// maxCachedSources bounds trustCache.sets; the daemon uses one or two.
const maxCachedSources = 8

// anchorSet is what one TrustSources gave.
type anchorSet struct {
	stamps  []stamp // what was read, as it was before reading
	anchors []Anchor
	err     error // unreadable files, reported again on every call
	pools   map[poolKey]*x509.CertPool
}

type poolKey struct {
	system bool
	scope  Scope
}

// invalidate drops everything cached; AddAnchors and RemoveAnchors call it
// so a change is seen at once even within the directory's timestamp
// resolution.
func (t *trustCache) invalidate() {
	t.mu.Lock()
	t.sets = nil
	t.mu.Unlock()
}

// sourcesKey identifies the files src reads (System only chooses a pool).
func sourcesKey(src TrustSources) string {
	return fmt.Sprintf("%t\x00%q\x00%q\x00%q\x00%q", src.User, src.MachineDir, src.Anchors, src.SigningAnchors, src.EncryptionAnchors)
}

// fresh reports whether nothing the set was read from has changed.
func (s *anchorSet) fresh() bool {
	for _, st := range s.stamps {
		if !st.unchanged() {
			return false
		}
	}
	return true
}

// anchorSetLocked returns the cached anchors of src, reading them again
// when something changed. The caller holds b.trust.mu.
func (b *Book) anchorSetLocked(ctx context.Context, src TrustSources) (*anchorSet, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := &b.trust
	key := sourcesKey(src)
	if s, ok := t.sets[key]; ok && s.fresh() {
		return s, nil
	}
	s, err := b.loadAnchors(ctx, src)
	if err != nil {
		return nil, err
	}
	if t.sets == nil || len(t.sets) >= maxCachedSources {
		t.sets = map[string]*anchorSet{}
	}
	t.sets[key] = s
	return s, nil
}

// TrustPool returns a pool of the anchors of src whose scope covers scope
// (ScopeSigning, ScopeEncryption, or ScopeAll for anchors that have both),
// plus the system's roots when src.System. The anchors and the pool are
// cached until a source changes: the user's trust directory, the machine
// directory or its signing/ and encryption/ subdirectories, a configured
// file or directory, or any anchor file read from them (each is stat'ed on
// every call; nothing is re-read while they are unchanged). Callers must
// not add to the returned pool. Unreadable files are reported as for
// TrustAnchors, beside a pool of the readable anchors.
func (b *Book) TrustPool(ctx context.Context, src TrustSources, scope Scope) (*x509.CertPool, error) {
	if scope == 0 || scope&^ScopeAll != 0 {
		return nil, fmt.Errorf("certbook: invalid trust scope %d", scope)
	}
	t := &b.trust
	t.mu.Lock()
	defer t.mu.Unlock()
	set, err := b.anchorSetLocked(ctx, src)
	if err != nil {
		return nil, err
	}
	key := poolKey{system: src.System, scope: scope}
	if p, ok := set.pools[key]; ok {
		return p, set.err
	}
	pool := x509.NewCertPool()
	if src.System {
		sys, serr := x509.SystemCertPool()
		if serr != nil {
			b.logger.Warn("trust: no system roots", "err", serr)
		} else {
			pool = sys
		}
	}
	for _, a := range set.anchors {
		if a.Scope&scope == scope {
			pool.AddCert(a.Certificate)
		}
	}
	if set.pools == nil {
		set.pools = map[poolKey]*x509.CertPool{}
	}
	set.pools[key] = pool
	return pool, set.err
}

// Roots returns a pool of the user's trust anchors, plus the system's roots
// when withSystem is set: TrustPool with TrustSources{System: withSystem,
// User: true} and ScopeSigning, cached the same way.
func (b *Book) Roots(ctx context.Context, withSystem bool) (*x509.CertPool, error) {
	return b.TrustPool(ctx, TrustSources{System: withSystem, User: true}, ScopeSigning)
}
