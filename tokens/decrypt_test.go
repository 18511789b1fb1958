package tokens_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/smime/cms"
	"github.com/smimed/smimed/tokens"
)

// TestDecryptRSA decrypts PKCS #1 v1.5 and OAEP-SHA1 with an always-auth
// and a plain key, one prompt each; OAEP-SHA256, which SoftHSM does not
// implement, is ErrUnsupported naming it, before any prompt; bad padding
// wraps rsa.ErrDecryption.
func TestDecryptRSA(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{})
	ctx := ctxT(t)
	secret := []byte("0123456789abcdef0123456789abcdef")

	for _, cert := range []*x509.Certificate{keys.RSA, keys.Plain} {
		id := f.identity(t, cert)
		pub := cert.PublicKey.(*rsa.PublicKey)
		d, err := f.m.Decrypter(ctx, id, prompt.Request{Subject: "secret plans", Counterpart: "carol@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := d.(cms.KeyAgreer); ok {
			t.Error("an RSA decrypter offers ECDH")
		}
		for _, tc := range []struct {
			name string
			ct   func() ([]byte, error)
			opts crypto.DecrypterOpts
		}{
			{"pkcs1v15", func() ([]byte, error) { return encryptPKCS1v15(t, pub, secret), nil }, nil},
			//lint:ignore SA1019 the options crypto/rsa defines for PKCS #1 v1.5 key transport, which peers still send
			{"pkcs1v15-opts", func() ([]byte, error) { return encryptPKCS1v15(t, pub, secret), nil }, &rsa.PKCS1v15DecryptOptions{}},
			{"oaep-sha1", func() ([]byte, error) { return rsa.EncryptOAEP(crypto.SHA1.New(), rand.Reader, pub, secret, nil) },
				&rsa.OAEPOptions{Hash: crypto.SHA1}},
		} {
			ct, err := tc.ct()
			if err != nil {
				t.Fatal(err)
			}
			before := f.prompter.count()
			pt, err := d.Decrypt(nil, ct, tc.opts)
			if err != nil {
				t.Fatalf("%s %s: %v", id.KeyLabel, tc.name, err)
			}
			if !bytes.Equal(pt, secret) {
				t.Fatalf("%s %s: plaintext %x", id.KeyLabel, tc.name, pt)
			}
			reqs := f.prompter.requests()[before:]
			if len(reqs) != 1 || reqs[0].Operation != prompt.OpDecrypt || reqs[0].Counterpart != "carol@example.com" {
				t.Fatalf("%s %s: prompts %+v", id.KeyLabel, tc.name, reqs)
			}
		}

		// OAEP with SHA-256: SoftHSM refuses the parameters; the public key
		// object lets this show before the prompt.
		ct, err := rsa.EncryptOAEP(crypto.SHA256.New(), rand.Reader, pub, secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := f.prompter.count()
		_, err = d.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
		wantErr(t, err, tokens.ErrUnsupported)
		if !strings.Contains(err.Error(), "RSA-OAEP with SHA-256") {
			t.Errorf("error does not name the mechanism: %v", err)
		}
		if n := f.prompter.count() - before; n != 0 {
			t.Errorf("%d prompts for an unsupported OAEP hash", n)
		}

		// Bad padding: a ciphertext for another key.
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		bad := encryptPKCS1v15(t, &other.PublicKey, secret)
		for bytes.Compare(bad, pub.N.Bytes()) >= 0 { // must be < N to reach the padding check
			bad = encryptPKCS1v15(t, &other.PublicKey, secret)
		}
		_, err = d.Decrypt(nil, bad, nil)
		if !errors.Is(err, rsa.ErrDecryption) {
			t.Fatalf("bad padding: %v, want rsa.ErrDecryption", err)
		}
		// crypto/rsa's SessionKeyLen contract: a random key, no error.
		//lint:ignore SA1019 crypto/rsa's options for PKCS #1 v1.5 key transport
		k, err := d.Decrypt(nil, bad, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32})
		if err != nil || len(k) != 32 {
			t.Fatalf("SessionKeyLen: %x, %v", k, err)
		}
	}
}

// TestECDH derives on the token and compares with Go's ECDH against the
// token's public key.
func TestECDH(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{})
	ctx := ctxT(t)
	id := f.identity(t, keys.EC)
	if !id.CanDecrypt || id.KeyType != "ec" {
		t.Fatalf("identity %+v", id)
	}
	d, err := f.m.Decrypter(ctx, id, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	ka, ok := d.(cms.KeyAgreer)
	if !ok {
		t.Fatalf("%T is not a cms.KeyAgreer", d)
	}
	if _, err := d.Decrypt(nil, []byte{1}, nil); !errors.Is(err, tokens.ErrUnsupported) {
		t.Fatalf("EC Decrypt: %v", err)
	}
	tokenPub, err := keys.EC.PublicKey.(*ecdsa.PublicKey).ECDH()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		eph, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		want, err := eph.ECDH(tokenPub)
		if err != nil {
			t.Fatal(err)
		}
		before := f.prompter.count()
		got, err := ka.ECDH(eph.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("token ECDH %x, Go %x", got, want)
		}
		if n := f.prompter.count() - before; n != 1 {
			t.Fatalf("%d prompts for one ECDH", n)
		}
	}
	other, _ := ecdh.P384().GenerateKey(rand.Reader)
	if _, err := ka.ECDH(other.PublicKey()); err == nil {
		t.Fatal("ECDH with a P-384 key on a P-256 token key worked")
	}
}

// TestDecryptCMS opens EnvelopedData made by smime/cms for token keys:
// RSA PKCS #1 v1.5 and OAEP-SHA1 key transport, and ECDH key agreement.
func TestDecryptCMS(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{})
	ctx := ctxT(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nfor your token only\r\n")
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		rcpt cms.Recipient
	}{
		{"rsa-pkcs1v15", keys.RSA, cms.Recipient{Certificate: keys.RSA}},
		{"rsa-oaep-sha1", keys.RSA, cms.Recipient{Certificate: keys.RSA, Padding: cms.OAEP, OAEPHash: crypto.SHA1}},
		{"plain-rsa", keys.Plain, cms.Recipient{Certificate: keys.Plain}},
		{"ec", keys.EC, cms.Recipient{Certificate: keys.EC}},
		{"ec-aes-gcm", keys.EC, cms.Recipient{Certificate: keys.EC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var env bytes.Buffer
			opts := cms.EncryptOptions{Recipients: []cms.Recipient{tc.rcpt}}
			if strings.HasSuffix(tc.name, "gcm") {
				opts.Cipher = cms.AES256GCM
			}
			w, err := cms.NewEncrypter(&env, opts)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(msg)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := cms.NewEnvelopedReader(&env)
			if err != nil {
				t.Fatal(err)
			}
			id := f.identity(t, tc.cert)
			d, err := f.m.Decrypter(ctx, id, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			before := f.prompter.count()
			pr, err := r.Decrypt(d, id.Certificate, cms.DecryptOptions{SpoolDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			got, err := io.ReadAll(pr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("plaintext %q", got)
			}
			if n := f.prompter.count() - before; n != 1 {
				t.Fatalf("%d prompts for one message", n)
			}
		})
	}
}
