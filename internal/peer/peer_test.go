package peer

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// The peers check each other: what one produces, the others read. This
// proves the harness before it is pointed at smimed's engine.

var sample = []byte("Content-Type: text/plain; charset=us-ascii\r\n" +
	"Content-Transfer-Encoding: 7bit\r\n" +
	"\r\n" +
	"Hello from the peer harness.\r\n" +
	"A line with trailing space \r\n" +
	"\r\n" +
	"-- \r\n" +
	"sig\r\n")

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"a\nb\n":   "a\r\nb\r\n",
		"a\r\nb":   "a\r\nb",
		"\n\r\n\n": "\r\n\r\n\r\n",
		"x\ry\n":   "x\ry\r\n",
	} {
		if got := string(Canonical([]byte(in))); got != want {
			t.Errorf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBase64Lines(t *testing.T) {
	data := bytes.Repeat([]byte{0xab}, 200)
	out := string(Base64Lines(data))
	lines := strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n")
	for i, l := range lines {
		if (i < len(lines)-1 && len(l) != 76) || len(l) > 76 || len(l) == 0 {
			t.Fatalf("line %d has %d characters: %q", i, len(l), l)
		}
	}
	if !strings.HasSuffix(out, "\r\n") {
		t.Fatal("no final CRLF")
	}
}

func TestWrapParse(t *testing.T) {
	sig := bytes.Repeat([]byte{1, 2, 3}, 100)
	msg := WrapSigned(sample, sig, "sha-256")
	for _, m := range [][]byte{msg, bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))} {
		p, err := Parse(m)
		if err != nil {
			t.Fatal(err)
		}
		if p.MediaType != "multipart/signed" || p.Params["micalg"] != "sha-256" {
			t.Fatalf("parsed %q %v", p.MediaType, p.Params)
		}
		if !bytes.Equal(Canonical(p.Content), sample) {
			t.Fatalf("content %q, want %q", p.Content, sample)
		}
		if !bytes.Equal(p.CMS, sig) {
			t.Fatal("signature differs")
		}
	}
	p, err := Parse(WrapPKCS7MIME(sig, EnvelopedData))
	if err != nil {
		t.Fatal(err)
	}
	if p.Params["smime-type"] != EnvelopedData || !bytes.Equal(p.CMS, sig) {
		t.Fatalf("pkcs7-mime round trip: %v", p.Params)
	}
	if _, err := Parse(msg[:len(msg)/2]); err == nil {
		t.Fatal("truncated multipart/signed parsed")
	}
}

func TestInteropPeersReadEachOther(t *testing.T) {
	pki := testpki.New(t)
	rsaID := pki.Issue(t, testpki.Options{Email: "rsa@example.org", Key: testpki.RSA2048})
	ecID := pki.Issue(t, testpki.Options{Email: "ec@example.org", Key: testpki.P256})
	ossl := NewOpenSSL(t, pki)
	nss := NewNSS(t, pki)
	gpg := NewGPGSM(t, pki)
	nss.AddIdentity(t, rsaID)
	nss.AddIdentity(t, ecID)
	gpg.AddIdentity(t, rsaID)
	t.Logf("%s; NSS: %s", ossl.Version(t), nss.Version(t))

	type verifier struct {
		name   string
		verify func(testing.TB, []byte) Verdict
		rsa    bool // RSA only
	}
	verifiers := []verifier{{"openssl", ossl.Verify, false}, {"nss", nss.Verify, false}, {"gpgsm", gpg.Verify, true}}
	type signed struct {
		name string
		msg  []byte
		rsa  bool
	}
	var msgs []signed
	for _, opaque := range []bool{false, true} {
		form := "detached"
		if opaque {
			form = "opaque"
		}
		msgs = append(msgs,
			signed{"openssl-rsa-" + form, ossl.Sign(t, rsaID, sample, OpenSSLSign{Opaque: opaque}), true},
			signed{"openssl-pss-sha384-" + form, ossl.Sign(t, rsaID, sample, OpenSSLSign{Opaque: opaque, PSS: true, MD: "sha384"}), false},
			signed{"openssl-p256-" + form, ossl.Sign(t, ecID, sample, OpenSSLSign{Opaque: opaque}), false},
			signed{"nss-rsa-" + form, nss.Sign(t, rsaID, sample, NSSSign{Opaque: opaque}), true},
			signed{"nss-p256-sha512-" + form, nss.Sign(t, ecID, sample, NSSSign{Opaque: opaque, Hash: "SHA512"}), false},
			signed{"gpgsm-rsa-" + form, gpg.Sign(t, rsaID, sample, GPGSMSign{Opaque: opaque}), true},
		)
	}
	for _, m := range msgs {
		for _, v := range verifiers {
			if v.rsa && !m.rsa {
				continue
			}
			t.Run("verify/"+m.name+"/by-"+v.name, func(t *testing.T) {
				got := v.verify(t, m.msg)
				if !got.Good {
					t.Fatalf("not good: %v", got)
				}
				if !bytes.Equal(got.Content, sample) {
					t.Fatalf("content %q, want %q", got.Content, sample)
				}
				// One flipped body byte must turn every verdict bad.
				i := bytes.Index(m.msg, []byte("Hello from"))
				if i < 0 { // opaque: flip a byte in the base64 of the content
					p, err := Parse(m.msg)
					if err != nil {
						t.Fatal(err)
					}
					der := bytes.Clone(p.CMS)
					j := bytes.Index(der, []byte("Hello from"))
					if j < 0 {
						t.Fatal("content not found in the CMS")
					}
					der[j] ^= 0x20
					bad := WrapPKCS7MIME(der, SignedData)
					if got := v.verify(t, bad); got.Good {
						t.Fatalf("tampered opaque message verified: %v", got)
					}
					return
				}
				bad := bytes.Clone(m.msg)
				bad[i] ^= 0x20
				if got := v.verify(t, bad); got.Good {
					t.Fatalf("tampered message verified: %v", got)
				}
			})
		}
	}

	type encrypted struct {
		name string
		msg  []byte
		rsa  bool
	}
	encs := []encrypted{
		{"openssl-aes256cbc-rsa", ossl.Encrypt(t, sample, "aes-256-cbc", OpenSSLRecipient{Cert: rsaID.Cert}), true},
		{"openssl-aes128cbc-oaep256+ec", ossl.Encrypt(t, sample, "aes-128-cbc",
			OpenSSLRecipient{Cert: rsaID.Cert, OAEP: "sha256", MGF1: "sha256"},
			OpenSSLRecipient{Cert: ecID.Cert, KDF: "sha256"}), false},
		// gpgsm decrypts this one but exits 2: it cannot parse the EC
		// recipient's KeyAgreeRecipientInfo.
		{"nss-rsa+ec", nss.Encrypt(t, sample, rsaID.Cert, ecID.Cert), false},
		{"nss-rsa", nss.Encrypt(t, sample, rsaID.Cert), true},
		{"gpgsm-aes256", gpg.Encrypt(t, sample, "AES256", rsaID.Cert), true},
	}
	for _, e := range encs {
		t.Run("decrypt/"+e.name+"/by-openssl", func(t *testing.T) {
			for _, id := range []*testpki.Identity{rsaID, ecID} {
				if id == ecID && !strings.Contains(e.name, "ec") {
					continue
				}
				got, err := ossl.Decrypt(t, id, e.msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, sample) {
					t.Fatalf("%s decrypted %q", id.Email, got)
				}
			}
		})
		t.Run("decrypt/"+e.name+"/by-nss", func(t *testing.T) {
			got, err := nss.Decrypt(t, e.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, sample) {
				t.Fatalf("decrypted %q", got)
			}
		})
		if e.rsa {
			t.Run("decrypt/"+e.name+"/by-gpgsm", func(t *testing.T) {
				got, err := gpg.Decrypt(t, e.msg)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, sample) {
					t.Fatalf("decrypted %q", got)
				}
			})
		}
	}

	t.Run("nss-cannot-read-authenveloped", func(t *testing.T) {
		gcm := ossl.Encrypt(t, sample, "aes-256-gcm", OpenSSLRecipient{Cert: rsaID.Cert})
		if got, err := ossl.Decrypt(t, rsaID, gcm); err != nil || !bytes.Equal(got, sample) {
			t.Fatalf("openssl cannot read its own AES-GCM message: %v", err)
		}
		_, err := nss.Decrypt(t, gcm)
		if err == nil || !strings.Contains(err.Error(), "UNRECOGNIZED_OID") {
			t.Fatalf("NSS read AuthEnvelopedData (or failed otherwise): %v", err)
		}
	})
}
