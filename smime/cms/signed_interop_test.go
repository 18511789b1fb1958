package cms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
)

// Interop at the CMS level with the real OpenSSL (openssl cms). A missing
// openssl fails these tests; it never skips them.

// TestOpenSSLVerifiesOurSignatures has openssl verify what we sign,
// detached and opaque, against the test root with the S/MIME signing
// purpose.
func TestOpenSSLVerifiesOurSignatures(t *testing.T) {
	f := sigPKI(t)
	caps, _ := CapabilitiesAttribute(DefaultCapabilities())
	tests := []struct {
		kt    testpki.KeyType
		pss   bool
		hash  crypto.Hash
		ski   bool
		attrs bool
		size  int
	}{
		{testpki.RSA2048, false, crypto.SHA256, false, false, 1000},
		{testpki.RSA2048, false, crypto.SHA512, true, true, 0},
		{testpki.RSA2048, true, crypto.SHA256, false, true, 16 << 10},
		{testpki.RSA2048, true, crypto.SHA384, true, false, 1},
		{testpki.P256, false, crypto.SHA256, false, true, 70000},
		{testpki.P384, false, crypto.SHA384, true, false, 5},
		{testpki.P521, false, crypto.SHA512, false, false, 333},
		{testpki.P256, false, crypto.SHA512, true, true, 1 << 20},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/pss=%v/%s/ski=%v/attrs=%v/%d", tt.kt, tt.pss, Micalg(tt.hash), tt.ski, tt.attrs, tt.size)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			id := f.identity(t, tt.kt, tt.ski)
			o := sigOpts(id)
			o.Hash, o.PSS, o.SubjectKeyID = tt.hash, tt.pss, tt.ski
			if tt.attrs {
				kp, err := EncryptionKeyPreferenceAttribute(id.Cert)
				if err != nil {
					t.Fatal(err)
				}
				o.Attributes = []Attribute{caps, kp}
			}
			content := sigContent(tt.size)
			root := f.writeRoot(t, dir)
			data := sigWrite(t, dir, "data.bin", content)

			sigWrite(t, dir, "sig.der", sigDetached(t, o, content))
			sigOpenSSL(t, dir, "cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.der",
				"-content", data, "-CAfile", root, "-purpose", "smimesign", "-out", "out.bin")
			if got, _ := os.ReadFile(filepath.Join(dir, "out.bin")); !bytes.Equal(got, content) {
				t.Fatal("openssl output differs from the content (detached)")
			}
			// Sanity: openssl does notice a change.
			changed := append(bytes.Clone(content), 'x')
			sigWrite(t, dir, "changed.bin", changed)
			if out, err := sigOpenSSLErr(t, dir, "cms", "-verify", "-binary", "-inform", "DER", "-in", "sig.der",
				"-content", "changed.bin", "-CAfile", root, "-out", "/dev/null"); err == nil {
				t.Fatalf("openssl accepted changed content: %s", out)
			}

			sigWrite(t, dir, "opaque.ber", sigOpaque(t, o, content))
			sigOpenSSL(t, dir, "cms", "-verify", "-binary", "-inform", "DER", "-in", "opaque.ber",
				"-CAfile", root, "-purpose", "smimesign", "-out", "out2.bin")
			if got, _ := os.ReadFile(filepath.Join(dir, "out2.bin")); !bytes.Equal(got, content) {
				t.Fatal("openssl output differs from the content (opaque)")
			}
		})
	}
}

// TestWeVerifyOpenSSLSignatures parses and verifies what openssl cms -sign
// makes, with both parsers.
func TestWeVerifyOpenSSLSignatures(t *testing.T) {
	f := sigPKI(t)
	tests := []struct {
		name     string
		kt       testpki.KeyType
		ski      bool
		args     []string
		opaque   bool
		hash     crypto.Hash
		alg      string
		noAttrs  bool
		weakness string
		size     int
	}{
		{"rsa default", testpki.RSA2048, false, nil, false, crypto.SHA256, "rsa-pkcs1v15", false, "", 100},
		{"rsa sha384", testpki.RSA2048, false, []string{"-md", "sha384"}, false, crypto.SHA384, "rsa-pkcs1v15", false, "", 100},
		{"rsa sha512 nodetach", testpki.RSA2048, false, []string{"-md", "sha512", "-nodetach"}, true, crypto.SHA512, "rsa-pkcs1v15", false, "", 5000},
		{"rsa noattr", testpki.RSA2048, false, []string{"-noattr"}, false, crypto.SHA256, "rsa-pkcs1v15", true, "", 100},
		{"rsa noattr nodetach", testpki.RSA2048, false, []string{"-noattr", "-nodetach"}, true, crypto.SHA256, "rsa-pkcs1v15", true, "", 100},
		{"rsa sha1", testpki.RSA2048, false, []string{"-md", "sha1"}, false, crypto.SHA1, "rsa-pkcs1v15", false, "SHA-1 digest", 100},
		{"rsa pss", testpki.RSA2048, false, []string{"-keyopt", "rsa_padding_mode:pss"}, false, crypto.SHA256, "rsa-pss", false, "", 100},
		{"rsa pss sha384 salt 20", testpki.RSA2048, false, []string{"-md", "sha384", "-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:20"}, false, crypto.SHA384, "rsa-pss", false, "", 100},
		{"rsa pss digest salt noattr", testpki.RSA2048, false, []string{"-md", "sha512", "-noattr", "-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:digest"}, false, crypto.SHA512, "rsa-pss", true, "", 100},
		{"rsa pss nodetach", testpki.RSA2048, false, []string{"-nodetach", "-keyopt", "rsa_padding_mode:pss"}, true, crypto.SHA256, "rsa-pss", false, "", 100},
		{"rsa keyid", testpki.RSA2048, true, []string{"-keyid"}, false, crypto.SHA256, "rsa-pkcs1v15", false, "", 100},
		{"p256", testpki.P256, false, nil, false, crypto.SHA256, "ecdsa", false, "", 100},
		{"p256 sha512", testpki.P256, false, []string{"-md", "sha512"}, false, crypto.SHA512, "ecdsa", false, "", 100},
		{"p384 sha384 nodetach", testpki.P384, false, []string{"-md", "sha384", "-nodetach"}, true, crypto.SHA384, "ecdsa", false, "", 100},
		{"p521 noattr", testpki.P521, false, []string{"-md", "sha512", "-noattr"}, false, crypto.SHA512, "ecdsa", true, "", 100},
		{"p256 keyid nodetach", testpki.P256, true, []string{"-keyid", "-nodetach"}, true, crypto.SHA256, "ecdsa", false, "", 0},
		{"stream BER nodetach", testpki.RSA2048, false, []string{"-stream", "-nodetach"}, true, crypto.SHA256, "rsa-pkcs1v15", false, "", 300000},
		// With DER output openssl embeds the content even without -nodetach.
		{"stream BER p256", testpki.P256, false, []string{"-stream", "-md", "sha384"}, true, crypto.SHA384, "ecdsa", false, "", 300000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			id := f.identity(t, tt.kt, tt.ski)
			cert, key, chain := id.WriteFiles(t, dir)
			content := sigContent(tt.size)
			data := sigWrite(t, dir, "data.bin", content)
			args := append([]string{"cms", "-sign", "-binary", "-in", data, "-signer", cert, "-inkey", key,
				"-certfile", chain, "-outform", "DER", "-out", "msg.der"}, tt.args...)
			sigOpenSSL(t, dir, args...)
			msg, err := os.ReadFile(filepath.Join(dir, "msg.der"))
			if err != nil {
				t.Fatal(err)
			}

			var sd *SignedData
			if tt.opaque {
				var got []byte
				sd, got, err = sigCheckOpaque(msg)
				if err != nil {
					t.Fatalf("streamed: %v", err)
				}
				if !bytes.Equal(got, content) {
					t.Fatal("streamed content differs")
				}
				sd2, got2, err := ParseSignedData(msg)
				if err != nil || !bytes.Equal(got2, content) {
					t.Fatalf("in memory: %v", err)
				}
				d := NewDigester(sd2.DigestAlgorithms...)
				d.Write(got2)
				if err := sigVerifyAll(sd2, d.Sums()); err != nil {
					t.Fatalf("in memory: %v", err)
				}
				if _, _, err := sigCheckOpaque(sigFlip(t, msg, content[:min(len(content), 64)], 0)); len(content) > 0 && err == nil {
					t.Fatal("changed content verified")
				}
			} else {
				sd, err = sigCheckDetached(msg, content)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sigCheckDetached(msg, append(bytes.Clone(content), 0)); err == nil {
					t.Fatal("changed content verified")
				}
			}
			si := sd.Signers[0]
			if si.Hash != tt.hash || si.SignatureAlgorithm != tt.alg {
				t.Fatalf("hash %v alg %q", si.Hash, si.SignatureAlgorithm)
			}
			if tt.alg == "rsa-pss" && si.PSSHash != tt.hash {
				t.Fatalf("PSS hash %v", si.PSSHash)
			}
			if tt.noAttrs != (si.RawSignedAttrs == nil) {
				t.Fatalf("signed attributes present: %v", si.RawSignedAttrs != nil)
			}
			if !tt.noAttrs {
				if si.SigningTime.IsZero() || time.Since(si.SigningTime) > time.Hour {
					t.Fatalf("signing time %v", si.SigningTime)
				}
				if len(si.Capabilities) == 0 {
					t.Fatal("openssl's SMIMECapabilities not decoded")
				}
			}
			if tt.ski != (si.SubjectKeyID != nil) {
				t.Fatalf("SKI %x", si.SubjectKeyID)
			}
			if c := si.FindCertificate(sd.Certificates); c == nil || !c.Equal(id.Cert) {
				t.Fatal("signer certificate not found")
			}
			if w := si.Weakness(id.Cert); w != tt.weakness {
				t.Fatalf("weakness %q, want %q", w, tt.weakness)
			}
			if len(sd.Certificates) != 2 {
				t.Fatalf("%d certificates", len(sd.Certificates))
			}
		})
	}
}

// TestCertsOnlyOpenSSL exchanges certs-only messages with openssl in both
// directions, including one carrying a CRL.
func TestCertsOnlyOpenSSL(t *testing.T) {
	f := sigPKI(t)
	dir := t.TempDir()
	id := f.identity(t, testpki.P256, false)
	certPath, _, chainPath := id.WriteFiles(t, dir)
	root := f.writeRoot(t, dir)

	// openssl crl2pkcs7 -nocrl
	sigOpenSSL(t, dir, "crl2pkcs7", "-nocrl", "-certfile", certPath, "-certfile", chainPath, "-certfile", root,
		"-outform", "DER", "-out", "p7.der")
	p7, _ := os.ReadFile(filepath.Join(dir, "p7.der"))
	sd, content, err := ParseSignedData(p7)
	if err != nil {
		t.Fatal(err)
	}
	if !sd.CertsOnly() || content != nil || len(sd.Certificates) != 3 || !sd.Certificates[0].Equal(id.Cert) {
		t.Fatalf("crl2pkcs7 output parsed as %+v", sd)
	}

	// With a CRL, which we skip.
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(99), RevocationTime: time.Now().Add(-time.Minute)},
		},
	}, f.pki.Intermediate.Cert, f.pki.Intermediate.Key)
	if err != nil {
		t.Fatal(err)
	}
	sigWrite(t, dir, "crl.der", crl)
	sigOpenSSL(t, dir, "crl2pkcs7", "-inform", "DER", "-in", "crl.der", "-certfile", certPath,
		"-outform", "DER", "-out", "p7crl.der")
	p7, _ = os.ReadFile(filepath.Join(dir, "p7crl.der"))
	sd, _, err = ParseSignedData(p7)
	if err != nil {
		t.Fatal(err)
	}
	if !sd.CertsOnly() || len(sd.Certificates) != 1 {
		t.Fatalf("crl2pkcs7 with CRL parsed as %+v", sd)
	}

	// Ours, read by openssl.
	der, err := MarshalCertsOnly([]*x509.Certificate{id.Cert, f.pki.Intermediate.Cert})
	if err != nil {
		t.Fatal(err)
	}
	sigWrite(t, dir, "ours.p7c", der)
	out := string(sigOpenSSL(t, dir, "pkcs7", "-inform", "DER", "-in", "ours.p7c", "-print_certs", "-noout"))
	for _, cn := range []string{id.Cert.Subject.CommonName, f.pki.Intermediate.Cert.Subject.CommonName} {
		if !strings.Contains(out, cn) {
			t.Fatalf("openssl pkcs7 -print_certs does not show %q:\n%s", cn, out)
		}
	}
	out = string(sigOpenSSL(t, dir, "cms", "-cmsout", "-print", "-inform", "DER", "-in", "ours.p7c"))
	for _, want := range []string{"version: 1", "eContent: <ABSENT>", "signerInfos:\n      <EMPTY>"} {
		if !strings.Contains(out, want) {
			t.Fatalf("openssl cms -cmsout -print lacks %q:\n%s", want, out)
		}
	}
}
