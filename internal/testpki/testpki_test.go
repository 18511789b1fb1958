package testpki

import (
	"crypto/x509"
	"testing"
)

func TestIssueVerifiesToRoot(t *testing.T) {
	p := New(t)
	for _, kt := range []KeyType{RSA2048, P256, P384} {
		t.Run(string(kt), func(t *testing.T) {
			id := p.Issue(t, Options{Email: "alice@example.org", Key: kt})
			inter := x509.NewCertPool()
			for _, c := range id.Chain {
				inter.AddCert(c)
			}
			_, err := id.Cert.Verify(x509.VerifyOptions{
				Roots:         p.Roots(),
				Intermediates: inter,
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
			})
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if len(id.PKCS12(t, "pw", kt == RSA2048)) == 0 {
				t.Fatal("empty PKCS#12")
			}
		})
	}
}

func TestIssueTSA(t *testing.T) {
	p := New(t)
	id := p.IssueTSA(t, TSAOptions{Key: P256})
	if len(id.Cert.ExtKeyUsage) != 1 || id.Cert.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping {
		t.Fatalf("extended key usage %v", id.Cert.ExtKeyUsage)
	}
	critical := false
	for _, e := range id.Cert.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			critical = e.Critical
		}
	}
	if !critical {
		t.Fatal("extended key usage is not critical")
	}
	inter := x509.NewCertPool()
	for _, c := range id.Chain {
		inter.AddCert(c)
	}
	if _, err := id.Cert.Verify(x509.VerifyOptions{Roots: p.Roots(), Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}
