package certbook

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// rootsCache keeps the pool Roots built, for as long as the trust
// directory is unchanged.
type rootsCache struct {
	mu     sync.Mutex
	valid  bool
	mod    time.Time // the trust directory's modification time when built
	system bool
	pool   *x509.CertPool
	err    error // unreadable anchor files, reported again on every call
}

// invalidate drops the cached pool; AddAnchors and RemoveAnchors call it so
// a change is seen at once even within the directory's timestamp
// resolution.
func (r *rootsCache) invalidate() {
	r.mu.Lock()
	r.valid = false
	r.mu.Unlock()
}

// Roots returns a pool of the trust anchors, plus the system's roots when
// withSystem is set. The pool is built once and reused until the trust
// directory changes (anchors added or removed, here or by hand), so that
// verifying a message neither re-reads the anchors nor copies the system
// pool. Callers must not add to the returned pool. Unreadable anchor files
// are reported as for Anchors, beside a pool of the readable ones.
func (b *Book) Roots(ctx context.Context, withSystem bool) (*x509.CertPool, error) {
	st, err := os.Stat(b.trustDir())
	if err != nil {
		return nil, fmt.Errorf("certbook: %w", err)
	}
	r := &b.roots
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.valid && r.system == withSystem && r.mod.Equal(st.ModTime()) {
		return r.pool, r.err
	}
	anchors, err := b.Anchors(ctx)
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, err
	}
	pool := x509.NewCertPool()
	if withSystem {
		sys, serr := x509.SystemCertPool()
		if serr != nil {
			b.logger.Warn("trust: no system roots", "err", serr)
		} else {
			pool = sys
		}
	}
	for _, c := range anchors {
		pool.AddCert(c)
	}
	r.valid, r.mod, r.system, r.pool, r.err = true, st.ModTime(), withSystem, pool, err
	return pool, err
}
