package tokens_test

import (
	"crypto"
	"crypto/x509"
	"testing"

	"github.com/smimed/smimed/prompt"
)

// BenchmarkSign measures one token signature through the Manager: prepare,
// prompt (answered at once), login, sign, logout, across the worker pipe.
func BenchmarkSign(b *testing.B) {
	hsm := newSoftHSM(b)
	keys := standardToken(b, hsm, "T")
	f := newFixture(b, hsm, fixtureOptions{noOpenSC: true})
	ctx := ctxT(b)
	for _, bc := range []struct {
		name string
		cert *x509.Certificate
	}{{"rsa2048-always-auth", keys.RSA}, {"rsa2048", keys.Plain}, {"p256-always-auth", keys.EC}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := f.m.Signer(ctx, f.identity(b, bc.cert), prompt.Request{})
			if err != nil {
				b.Fatal(err)
			}
			d := digest(crypto.SHA256, "bench")
			for b.Loop() {
				if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
