package certbook

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

func TestRootsFollowsAnchors(t *testing.T) {
	ctx := context.Background()
	b, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := testpki.New(t), testpki.New(t)
	leaf1 := p1.Issue(t, testpki.Options{Email: "a@example.org"})
	leaf2 := p2.Issue(t, testpki.Options{Email: "b@example.org"})
	verifies := func(pool *x509.CertPool, id *testpki.Identity) bool {
		inter := x509.NewCertPool()
		for _, c := range id.Chain {
			inter.AddCert(c)
		}
		_, err := id.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
		return err == nil
	}
	steps := []struct {
		name       string
		change     func()
		want1      bool
		want2      bool
		sameAsPrev bool
	}{
		{"empty", func() {}, false, false, false},
		{"unchanged is reused", func() {}, false, false, true},
		{"anchor added", func() {
			if _, err := b.AddAnchors(ctx, []*x509.Certificate{p1.Root.Cert}); err != nil {
				t.Fatal(err)
			}
		}, true, false, false},
		{"second anchor added", func() {
			if _, err := b.AddAnchors(ctx, []*x509.Certificate{p2.Root.Cert}); err != nil {
				t.Fatal(err)
			}
		}, true, true, false},
		{"anchor removed", func() {
			if _, err := b.RemoveAnchors(ctx, []string{Fingerprint(p1.Root.Cert)}); err != nil {
				t.Fatal(err)
			}
		}, false, true, false},
		{"anchor file removed by hand", func() {
			if err := os.Remove(filepath.Join(b.trustDir(), Fingerprint(p2.Root.Cert)+".pem")); err != nil {
				t.Fatal(err)
			}
		}, false, false, false},
	}
	var prev *x509.CertPool
	for _, s := range steps {
		s.change()
		pool, err := b.Roots(ctx, false)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if verifies(pool, leaf1) != s.want1 || verifies(pool, leaf2) != s.want2 {
			t.Fatalf("%s: verifies = %v, %v; want %v, %v", s.name, verifies(pool, leaf1), verifies(pool, leaf2), s.want1, s.want2)
		}
		if (pool == prev) != s.sameAsPrev {
			t.Fatalf("%s: pool reused = %v, want %v", s.name, pool == prev, s.sameAsPrev)
		}
		prev = pool
	}
}

func TestRootsReportsCorruptAnchor(t *testing.T) {
	ctx := context.Background()
	b, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := testpki.New(t)
	if _, err := b.AddAnchors(ctx, []*x509.Certificate{p.Root.Cert}); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(b.trustDir(), Fingerprint(p.Intermediate.Cert)+".pem")
	if err := os.WriteFile(bad, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 { // built, then reused: the corrupt file is reported both times
		pool, err := b.Roots(ctx, false)
		if !errors.Is(err, ErrCorrupt) || pool == nil {
			t.Fatalf("Roots = %v, %v; want a pool and ErrCorrupt", pool, err)
		}
		if _, verr := p.Root.Cert.Verify(x509.VerifyOptions{Roots: pool}); verr != nil {
			t.Fatalf("readable anchor missing from the pool: %v", verr)
		}
	}
}
