package certbook

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// TestIssuers: only CA certificates are kept, once each; they survive a
// reopen; the pool completes a chain; a damaged file loses only itself.
func TestIssuers(t *testing.T) {
	ctx := context.Background()
	pki := testpki.New(t)
	leaf := pki.Issue(t, testpki.Options{Email: "a@example.org", Key: testpki.P256})
	dir := filepath.Join(t.TempDir(), "issuers")
	s, err := OpenIssuers(dir)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := s.Pool(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(pool *x509.CertPool) error {
		_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pki.Roots(), Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
		return err
	}
	if verify(pool) == nil {
		t.Fatal("an empty store completed the chain")
	}
	for i, want := range []bool{true, false} {
		added, err := s.Add(ctx, []*x509.Certificate{leaf.Cert, pki.Intermediate.Cert})
		if err != nil || added != want {
			t.Fatalf("Add #%d: added %v, %v; want %v", i, added, err, want)
		}
	}
	s2, err := OpenIssuers(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, err := s2.List(ctx)
	if err != nil || len(list) != 1 || !list[0].Equal(pki.Intermediate.Cert) {
		t.Fatalf("after reopen: %d certificates, %v; want the intermediate only", len(list), err)
	}
	if pool, _ := s2.Pool(ctx); verify(pool) != nil {
		t.Errorf("the stored intermediate does not complete the chain: %v", verify(pool))
	}
	if err := os.WriteFile(filepath.Join(dir, "damaged.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if list, err := s2.List(ctx); err != nil || len(list) != 1 {
		t.Errorf("with a damaged file: %d certificates, %v", len(list), err)
	}
}
