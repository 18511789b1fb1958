package tokens_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/smime/cms"
	"github.com/smimed/smimed/tokens"
)

func pubPEM(t testing.TB, c *x509.Certificate) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(c.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func digest(h crypto.Hash, msg string) []byte {
	d := h.New()
	d.Write([]byte(msg))
	return d.Sum(nil)
}

// TestSign signs with always-auth RSA (PKCS #1 v1.5 and PSS) and EC keys
// and a plain RSA key, one prompt each, and has Go and OpenSSL check the
// signatures.
func TestSign(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{})
	ctx := ctxT(t)

	cases := []struct {
		name string
		cert *x509.Certificate
		hash crypto.Hash
		pss  bool
	}{
		{"rsa-always-auth-sha256", keys.RSA, crypto.SHA256, false},
		{"rsa-always-auth-sha384", keys.RSA, crypto.SHA384, false},
		{"rsa-always-auth-sha512", keys.RSA, crypto.SHA512, false},
		{"rsa-always-auth-pss-sha256", keys.RSA, crypto.SHA256, true},
		{"rsa-always-auth-pss-sha512", keys.RSA, crypto.SHA512, true},
		{"rsa-plain-sha256", keys.Plain, crypto.SHA256, false},
		{"rsa-plain-pss-sha384", keys.Plain, crypto.SHA384, true},
		{"ec-always-auth-sha256", keys.EC, crypto.SHA256, false},
		{"ec-always-auth-sha512", keys.EC, crypto.SHA512, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := f.identity(t, tc.cert)
			s, err := f.m.Signer(ctx, id, prompt.Request{Subject: "Quarterly report", Counterpart: "bob@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			before := f.prompter.count()
			d := digest(tc.hash, "hello "+tc.name)
			var opts crypto.SignerOpts = tc.hash
			if tc.pss {
				opts = &rsa.PSSOptions{Hash: tc.hash, SaltLength: rsa.PSSSaltLengthEqualsHash}
			}
			sig, err := s.Sign(nil, d, opts)
			if err != nil {
				t.Fatal(err)
			}
			reqs := f.prompter.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d prompts for one signature, want 1: %+v", len(reqs), reqs)
			}
			r := reqs[0]
			if r.Kind != prompt.PIN || r.Operation != prompt.OpSign || r.TokenLabel != "T" || r.KeyLabel != id.Label ||
				r.Subject != "Quarterly report" || r.Counterpart != "bob@example.com" || r.TriesLeft != prompt.TriesUnknown || r.Error != "" {
				t.Errorf("prompt request %+v", r)
			}

			// Go.
			switch pub := tc.cert.PublicKey.(type) {
			case *rsa.PublicKey:
				if tc.pss {
					err = rsa.VerifyPSS(pub, tc.hash, d, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
				} else {
					err = rsa.VerifyPKCS1v15(pub, tc.hash, d, sig)
				}
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, d, sig) {
					err = errBadSig
				}
			}
			if err != nil {
				t.Fatalf("Go rejects the signature: %v", err)
			}

			// OpenSSL.
			args := []string{"pkeyutl", "-verify", "-pubin", "-inkey", pubPEM(t, tc.cert),
				"-in", writeTemp(t, "digest", d), "-sigfile", writeTemp(t, "sig", sig),
				"-pkeyopt", "digest:" + strings.ToLower(strings.ReplaceAll(tc.hash.String(), "-", ""))}
			if tc.pss {
				args = append(args, "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest")
			}
			if out := openssl(t, args...); !strings.Contains(out, "Signature Verified Successfully") {
				t.Fatalf("openssl: %s", out)
			}
		})
	}
	if n := f.prompter.count(); n != len(cases) {
		t.Errorf("%d prompts for %d signatures", n, len(cases))
	}
}

type sigError string

func (e sigError) Error() string { return string(e) }

const errBadSig = sigError("bad signature")

// TestSignCMS wraps token signatures into CMS with smime/cms and has
// `openssl cms -verify` check them against the test root.
func TestSignCMS(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{})
	ctx := ctxT(t)
	root := writeTemp(t, "root.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hsm.PKI.Root.Cert.Raw}))
	msg := []byte("Content-Type: text/plain\r\n\r\nsigned on a token\r\n")
	content := writeTemp(t, "content", msg)
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		pss  bool
	}{{"rsa", keys.RSA, false}, {"rsa-pss", keys.RSA, true}, {"ec", keys.EC, false}} {
		t.Run(tc.name, func(t *testing.T) {
			id := f.identity(t, tc.cert)
			if len(id.Chain) != 1 || !id.Chain[0].Equal(hsm.PKI.Intermediate.Cert) {
				t.Fatalf("identity chain %v, want the intermediate from the token", id.Chain)
			}
			s, err := f.m.Signer(ctx, id, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			before := f.prompter.count()
			ds, err := cms.NewDetachedSigner(cms.SignOptions{Signer: s, Certificate: id.Certificate, Chain: id.Chain, PSS: tc.pss})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ds.Write(msg); err != nil {
				t.Fatal(err)
			}
			der, err := ds.Sign()
			if err != nil {
				t.Fatal(err)
			}
			if n := f.prompter.count() - before; n != 1 {
				t.Fatalf("%d prompts, want 1", n)
			}
			out := openssl(t, "cms", "-verify", "-binary", "-inform", "DER", "-in", writeTemp(t, "sig.der", der),
				"-content", content, "-CAfile", root, "-out", filepath.Join(t.TempDir(), "out"))
			if !strings.Contains(out, "Verification successful") {
				t.Fatalf("openssl cms -verify: %s", out)
			}
		})
	}
}

// TestSignChecksBeforePrompt: bad input fails without a prompt.
func TestSignChecksBeforePrompt(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{noOpenSC: true})
	ctx := ctxT(t)
	s, err := f.m.Signer(ctx, f.identity(t, keys.RSA), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, []byte("short"), crypto.SHA256); err == nil {
		t.Fatal("a 5-byte SHA-256 digest was signed")
	}
	if _, err := s.Sign(nil, bytes.Repeat([]byte{1}, 16), crypto.MD5); !strings.Contains(errString(err), "not supported") {
		t.Fatalf("MD5: %v", err)
	}
	if n := f.prompter.count(); n != 0 {
		t.Fatalf("%d prompts for refused input", n)
	}
	if !tokens.WorkerSupported {
		t.Fatal("this test binary cannot run PKCS#11 workers")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
