package certbook

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Issuers keeps intermediate CA certificates learnt from verified messages
// (and fetched from AIA caIssuers URLs), so that chains can be completed
// later: a recipient's certificate learnt from a message whose sender
// included the intermediate, checked for revocation when composing, needs
// it again. They are never trust anchors: a chain must still end at one.
//
// Each certificate is a PEM file named by its SHA-256 fingerprint under the
// directory, written atomically. Pool is cached until the directory
// changes. Issuers is safe for concurrent use.
type Issuers struct {
	dir string

	mu    sync.Mutex
	mod   time.Time
	valid bool
	certs []*x509.Certificate
	pool  *x509.CertPool
	known map[string]bool // fingerprints of certs
}

// maxIssuers bounds the store; a message cannot fill the disk with CAs.
const maxIssuers = 1000

// OpenIssuers opens (creating it 0700) the intermediate store in dir.
func OpenIssuers(dir string) (*Issuers, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certbook: intermediates: %w", err)
	}
	return &Issuers{dir: dir}, nil
}

// Add stores the CA certificates of certs that are not stored yet and
// reports whether any was added. End-entity certificates are ignored.
func (s *Issuers) Add(ctx context.Context, certs []*x509.Certificate) (bool, error) {
	added := false
	for _, c := range certs {
		if err := ctx.Err(); err != nil {
			return added, err
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			continue
		}
		fp := Fingerprint(c)
		if s.stored(fp) {
			continue // the common case: a colleague's CA seen again
		}
		path := filepath.Join(s.dir, fp+".pem")
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if n, err := s.count(); err != nil || n >= maxIssuers {
			return added, errors.Join(err, fmt.Errorf("certbook: the intermediate store holds %d certificates already", n))
		}
		if err := writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})); err != nil {
			return added, fmt.Errorf("certbook: store an intermediate: %w", err)
		}
		added = true
	}
	if added {
		s.mu.Lock()
		s.valid = false
		s.mu.Unlock()
	}
	return added, nil
}

func (s *Issuers) count() (int, error) {
	ents, err := os.ReadDir(s.dir)
	return len(ents), err
}

// List returns the stored certificates; unreadable files are skipped.
func (s *Issuers) List(ctx context.Context) ([]*x509.Certificate, error) {
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*x509.Certificate(nil), s.certs...), nil
}

// Pool returns the pool of the stored certificates. It is shared: callers
// must not add to it (Clone it first).
func (s *Issuers) Pool(ctx context.Context) (*x509.CertPool, error) {
	if err := s.load(ctx); err != nil {
		return x509.NewCertPool(), err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pool, nil
}

// stored reports whether the certificate with fingerprint fp was in the
// directory when it was last read.
func (s *Issuers) stored(fp string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.valid && s.known[fp]
}

// load reads the directory when it changed since the last read.
func (s *Issuers) load(ctx context.Context) error {
	st, err := os.Stat(s.dir)
	if err != nil {
		return fmt.Errorf("certbook: intermediates: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.valid && s.mod.Equal(st.ModTime()) {
		return nil
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("certbook: intermediates: %w", err)
	}
	var certs []*x509.Certificate
	pool := x509.NewCertPool()
	known := map[string]bool{}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		c, err := readAnchor(filepath.Join(s.dir, e.Name()))
		if err != nil {
			continue // a damaged file only loses one intermediate
		}
		certs = append(certs, c)
		pool.AddCert(c)
		known[Fingerprint(c)] = true
	}
	s.certs, s.pool, s.known, s.mod, s.valid = certs, pool, known, st.ModTime(), true
	return nil
}
