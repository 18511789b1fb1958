package smime

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/cms"
)

// splitBody splits a message at its first blank line.
func splitBody(t testing.TB, msg []byte) (head, body []byte) {
	t.Helper()
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatal("message has no blank line")
	}
	return msg[:i+4], msg[i+4:]
}

// mutateOpaque decodes the base64 body of an application/pkcs7-mime
// message, applies f to the CMS bytes and re-encodes it.
func mutateOpaque(t testing.TB, msg []byte, f func([]byte) []byte) []byte {
	t.Helper()
	head, body := splitBody(t, msg)
	der, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	out.Write(head)
	w := newBase64Writer(&out)
	w.Write(f(der))
	w.Close()
	return out.Bytes()
}

// signatureBytes returns a copy of the CMS with one byte of the first
// signer's signature value flipped.
func flipSignature(t testing.TB, der []byte) []byte {
	t.Helper()
	sd, _, err := cms.ParseSignedData(der)
	if err != nil {
		t.Fatal(err)
	}
	sig := sd.Signers[0].Signature
	i := bytes.Index(der, sig)
	if i < 0 {
		t.Fatal("signature value not found in the encoding")
	}
	out := bytes.Clone(der)
	out[i+len(sig)/2] ^= 0x40
	return out
}

// mutateSignaturePart applies f to the DER of a multipart/signed message's
// signature part.
func mutateSignaturePart(t testing.TB, msg []byte, f func([]byte) []byte) []byte {
	t.Helper()
	s := string(msg)
	i := strings.Index(s, "Content-Type: application/pkcs7-signature")
	j := i + strings.Index(s[i:], "\r\n\r\n") + 4
	k := j + strings.Index(s[j:], "\r\n--")
	der, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(s[j:k]))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w := newBase64Writer(&b)
	w.Write(f(der))
	w.Close()
	return []byte(s[:j] + strings.TrimSuffix(b.String(), "\r\n") + s[k:])
}

func TestSignatureOutcomes(t *testing.T) {
	f := getFixture(t)
	otherRoots := OpenOptions{Roots: f.other.Roots()}
	later := f.opts()
	later.Now = time.Now().Add(2 * 365 * 24 * time.Hour)
	fromBob := strings.Replace(plainMsg, "From: Alice <alice@example.com>", "From: Bob <bob@example.org>", 1)
	noFrom := strings.Replace(plainMsg, "From: Alice <alice@example.com>\r\n", "", 1)

	type tc struct {
		name    string
		signer  *testpki.Identity
		msg     string
		opaque  bool
		mutate  func(t testing.TB, msg []byte) []byte
		opts    OpenOptions
		outcome string
		reason  string // substring of the reason
	}
	var cases []tc
	for _, opaque := range []bool{false, true} {
		tamperBody := func(t testing.TB, m []byte) []byte { return bytes.Replace(m, []byte("noon"), []byte("nine"), 1) }
		tamperSig := func(t testing.TB, m []byte) []byte {
			return mutateSignaturePart(t, m, func(d []byte) []byte { return flipSignature(t, d) })
		}
		if opaque {
			tamperBody = func(t testing.TB, m []byte) []byte {
				return mutateOpaque(t, m, func(d []byte) []byte { return bytes.Replace(d, []byte("noon"), []byte("nine"), 1) })
			}
			tamperSig = func(t testing.TB, m []byte) []byte {
				return mutateOpaque(t, m, func(d []byte) []byte { return flipSignature(t, d) })
			}
		}
		cases = append(cases,
			tc{"good", f.alice, plainMsg, opaque, nil, f.opts(), OutcomeGood, "signed by alice@example.com"},
			tc{"good-no-from", f.alice, noFrom, opaque, nil, f.opts(), OutcomeGood, ""},
			tc{"good-from-option-case-insensitive", f.alice, fromBob, opaque, nil,
				OpenOptions{Roots: f.pki.Roots(), From: "ALICE@Example.COM"}, OutcomeGood, ""},
			tc{"bad-tampered-body", f.alice, plainMsg, opaque, tamperBody, f.opts(), OutcomeBad, "changed after it was signed"},
			tc{"bad-tampered-signature", f.alice, plainMsg, opaque, tamperSig, f.opts(), OutcomeBad, "does not verify"},
			tc{"untrusted-other-root", f.alice, plainMsg, opaque, nil, otherRoots, OutcomeUntrusted, "trusted root"},
			tc{"untrusted-foreign-ca", f.mallory, plainMsg, opaque, nil, f.opts(), OutcomeUntrusted, "trusted root"},
			tc{"untrusted-key-usage", f.noSignKU, plainMsg, opaque, nil, f.opts(), OutcomeUntrusted, "key usage"},
			tc{"untrusted-extended-key-usage", f.tlsEKU, plainMsg, opaque, nil, f.opts(), OutcomeUntrusted, "emailProtection"},
			tc{"expired", f.expired, plainMsg, opaque, nil, f.opts(), OutcomeExpired, "not valid at the claimed signing time"},
			tc{"expired-but-valid-at-signing", f.alice, plainMsg, opaque, nil, later, OutcomeExpired, "valid at the signing time"},
			tc{"weak-rsa1024", f.rsa1024, plainMsg, opaque, nil, f.opts(), OutcomeWeak, "1024 bits"},
			tc{"weak-beats-untrusted", f.rsa1024, plainMsg, opaque, nil, otherRoots, OutcomeWeak, "1024"},
			tc{"expired-beats-untrusted", f.expired, plainMsg, opaque, nil, otherRoots, OutcomeExpired, "expired"},
			tc{"email-mismatch", f.alice, fromBob, opaque, nil, f.opts(), OutcomeEmailMismatch, "bob@example.org"},
			tc{"untrusted-beats-email-mismatch", f.mallory, fromBob, opaque, nil, f.opts(), OutcomeUntrusted, ""},
		)
	}
	for _, c := range cases {
		form := map[bool]string{false: "detached", true: "opaque"}[c.opaque]
		t.Run(form+"/"+c.name, func(t *testing.T) {
			o := signOpts(c.signer)
			o.Opaque = c.opaque
			msg := signBytes(t, c.msg, o)
			if c.mutate != nil {
				msg = c.mutate(t, msg)
			}
			st, _, err := openBytes(t, msg, c.opts)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			sr := st.Layers[0].Signers[0]
			if st.Signature != c.outcome || sr.Outcome != c.outcome {
				t.Fatalf("outcome = %s (%s), want %s", sr.Outcome, sr.Reason, c.outcome)
			}
			if !strings.Contains(sr.Reason, c.reason) {
				t.Fatalf("reason %q lacks %q", sr.Reason, c.reason)
			}
			if sr.Reason == "" {
				t.Fatal("empty reason")
			}
		})
	}
}

// TestOpenSSLSigned covers what our own signer cannot make: SHA-1, several
// signers, a signer whose certificate is left out.
func TestOpenSSLSigned(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	aCert, aKey, aChain := writeIdentity(t, f.alice, dir, "alice")
	mCert, mKey, _ := writeIdentity(t, f.mallory, dir, "mallory")
	bCert, bKey, _ := writeIdentity(t, f.bob, dir, "bob")
	entity := []byte(plainInner)
	sign := func(args ...string) []byte {
		out := runOpenSSL(t, dir, entity, append([]string{"cms", "-sign", "-binary", "-certfile", aChain}, args...)...)
		return append([]byte("From: alice@example.com\r\n"), out...)
	}
	t.Run("sha1-is-weak", func(t *testing.T) {
		msg := sign("-md", "sha1", "-signer", aCert, "-inkey", aKey)
		st, inner, err := openBytes(t, msg, f.opts())
		if err != nil {
			t.Fatal(err)
		}
		if string(inner) != plainInner {
			t.Fatalf("inner = %q", inner)
		}
		sr := st.Layers[0].Signers[0]
		if st.Signature != OutcomeWeak || !strings.Contains(sr.Reason, "SHA-1") || sr.Hash != "SHA-1" {
			t.Fatalf("SHA-1 signature: %s %q", sr.Outcome, sr.Reason)
		}
	})
	t.Run("two-signers", func(t *testing.T) {
		for _, order := range [][]string{
			{"-signer", aCert, "-inkey", aKey, "-signer", mCert, "-inkey", mKey},
			{"-signer", mCert, "-inkey", mKey, "-signer", aCert, "-inkey", aKey},
		} {
			msg := sign(append([]string{"-md", "sha256"}, order...)...)
			st, _, err := openBytes(t, msg, f.opts())
			if err != nil {
				t.Fatal(err)
			}
			ss := st.Layers[0].Signers
			if len(ss) != 2 {
				t.Fatalf("%d signers reported", len(ss))
			}
			got := map[string]bool{ss[0].Outcome: true, ss[1].Outcome: true}
			if !got[OutcomeGood] || !got[OutcomeUntrusted] {
				t.Fatalf("outcomes = %s, %s", ss[0].Outcome, ss[1].Outcome)
			}
			if st.Signature != OutcomeGood || st.Signer == nil || st.Signer.SHA256 != fingerprint(f.alice.Cert) {
				t.Fatalf("summary = %s %+v", st.Signature, st.Signer)
			}
		}
	})
	t.Run("two-signers-one-bad-key-usage-first", func(t *testing.T) {
		// Bob is trusted but the message is from Alice: email-mismatch
		// for him, good for her; the summary takes the good one.
		msg := sign("-md", "sha256", "-signer", bCert, "-inkey", bKey, "-signer", aCert, "-inkey", aKey)
		st, _, err := openBytes(t, msg, f.opts())
		if err != nil {
			t.Fatal(err)
		}
		if st.Signature != OutcomeGood || st.Signer.Email != "alice@example.com" {
			t.Fatalf("summary = %s %+v", st.Signature, st.Signer)
		}
	})
	t.Run("signer-certificate-missing", func(t *testing.T) {
		out := runOpenSSL(t, dir, entity, "cms", "-sign", "-binary", "-nocerts", "-md", "sha256", "-signer", aCert, "-inkey", aKey)
		st, _, err := openBytes(t, out, f.opts())
		if err != nil {
			t.Fatal(err)
		}
		if st.Signature != OutcomeBad || !strings.Contains(st.Layers[0].Signers[0].Reason, "not included") {
			t.Fatalf("status = %+v", st.Layers)
		}
	})
	t.Run("opaque-from-openssl", func(t *testing.T) {
		out := runOpenSSL(t, dir, entity, "cms", "-sign", "-binary", "-nodetach", "-md", "sha384", "-certfile", aChain, "-signer", aCert, "-inkey", aKey)
		st, inner, err := openBytes(t, out, f.opts())
		if err != nil {
			t.Fatal(err)
		}
		if st.Signature != OutcomeGood || st.Layers[0].Form != FormOpaque || string(inner) != plainInner {
			t.Fatalf("status = %+v inner %q", st.Layers, inner)
		}
	})
}

func fingerprint(c *x509.Certificate) string {
	var r SignerResult
	identify(&r, c)
	return r.SHA256
}

// TestRewrapped builds a multipart/signed whose signature part embeds
// content of its own (a re-wrapped opaque message).
func TestRewrapped(t *testing.T) {
	f := getFixture(t)
	co, err := (&SignOptions{Signer: f.alice.Key, Certificate: f.alice.Cert, Chain: f.alice.Chain}).cmsOptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	embedded := "Content-Type: text/plain\r\n\r\nPay Alice 10 EUR.\r\n"
	var p7 bytes.Buffer
	w, err := cms.NewOpaqueSigner(&p7, co)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(embedded))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	build := func(first string) []byte {
		return []byte("From: alice@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b\"\r\n\r\n" +
			"--b\r\n" + first + "\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString(p7.Bytes()) + "\r\n--b--\r\n")
	}
	st, _, err := openBytes(t, build("Content-Type: text/plain\r\n\r\nPay Mallory 1000 EUR.\r\n"), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if st.Signature != OutcomeBad || !strings.Contains(st.Layers[0].Signers[0].Reason, "differ") {
		t.Fatalf("re-wrapped: %+v", st.Layers)
	}
	st, _, err = openBytes(t, build(embedded), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if st.Signature != OutcomeGood {
		t.Fatalf("same content detached and embedded: %+v", st.Layers)
	}
}

func TestNotSMIME(t *testing.T) {
	f := getFixture(t)
	signed := signBytes(t, plainMsg, signOpts(f.alice))
	cases := map[string]string{
		"plain": plainMsg,
		"mixed-with-smime-part": "From: alice@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n" +
			"--m\r\nContent-Type: text/plain\r\n\r\nUnprotected text glued on by an attacker.\r\n" +
			"--m\r\nContent-Type: message/rfc822\r\n\r\n" + string(signed) + "\r\n--m--\r\n",
		"pgp-mime": "From: alice@example.com\r\nContent-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=p\r\n\r\n--p\r\nContent-Type: text/plain\r\n\r\nx\r\n--p--\r\n",
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			st, out, err := openBytes(t, []byte(msg), f.opts())
			wantErr(t, err, ErrNotSMIME)
			if len(out) != 0 {
				t.Fatalf("%d bytes written for a non-S/MIME message", len(out))
			}
			if st.Signature != OutcomeNone || len(st.Layers) != 0 {
				t.Fatalf("status = %+v", st)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	f := getFixture(t)
	signed := signBytes(t, plainMsg, signOpts(f.alice))
	op := signOpts(f.alice)
	op.Opaque = true
	opaque := signBytes(t, plainMsg, op)
	sigStart := bytes.Index(signed, []byte("Content-Type: application/pkcs7-signature"))
	head := "From: alice@example.com\r\nMIME-Version: 1.0\r\n"
	ms := "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b\"\r\n\r\n"
	p7m := "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	compressed := []byte{0x30, 0x80, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x09, 0xa0, 0x80, 0x30, 0x00}
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrBadMessage},
		{"no-boundary", []byte(head + "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"\r\n\r\n--b\r\nx\r\n--b--\r\n"), ErrBadMessage},
		{"boundary-never-found", []byte(head + ms + "no delimiter here\r\n"), ErrBadMessage},
		{"truncated-detached", signed[:len(signed)*2/3], ErrBadMessage},
		{"truncated-in-content", signed[:sigStart-40], ErrBadMessage},
		{"truncated-opaque", opaque[:len(opaque)*2/3], ErrBadMessage},
		{"missing-signature-part", []byte(head + ms + "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"), ErrBadMessage},
		{"wrong-signature-part-type", []byte(head + ms + "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: text/plain\r\n\r\nsig\r\n--b--\r\n"), ErrBadMessage},
		{"garbage-base64-signature", []byte(head + ms + "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not*base64###\r\n--b--\r\n"), ErrBadMessage},
		{"not-cms-signature", []byte(head + ms + "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--b--\r\n"), ErrBadMessage},
		{"three-parts", []byte(strings.Replace(string(signed), "--\r\n", "\r\nContent-Type: text/plain\r\n\r\nextra\r\n--"+boundaryOf(signed)+"--\r\n", 1)), ErrBadMessage},
		{"garbage-base64-p7m", []byte(head + p7m + "@@@@ this is not base64 @@@@\r\n"), ErrBadMessage},
		{"not-cms-p7m", []byte(head + p7m + "aGVsbG8gd29ybGQsIHRoaXMgaXMgbm90IENNUw==\r\n"), ErrBadMessage},
		{"empty-p7m", []byte(head + p7m), ErrBadMessage},
		{"compressed-data", []byte(head + p7m + base64.StdEncoding.EncodeToString(compressed) + "\r\n"), ErrUnsupported},
		{"unknown-transfer-encoding", []byte(head + "Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: x-rot13\r\n\r\nabc\r\n"), ErrUnsupported},
		{"header-too-big", []byte(strings.Repeat("X-Filler: "+strings.Repeat("a", 900)+"\r\n", 1300) + "\r\nbody"), ErrBadMessage},
		{"header-line-too-long", []byte("Subject: " + strings.Repeat("a", 70000) + "\r\n\r\nbody"), ErrBadMessage},
		{"header-garbage", []byte("this is not a header\r\n\r\nbody"), ErrBadMessage},
		{"bad-content-type", []byte(head + "Content-Type: /\r\n\r\nbody"), ErrBadMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, _, err := openBytes(t, c.msg, f.opts())
			wantErr(t, err, c.want)
			if st.Signature == OutcomeGood {
				t.Fatal("malformed message reported good")
			}
		})
	}
}

func boundaryOf(msg []byte) string {
	s := string(msg)
	i := strings.Index(s, "boundary=\"") + len("boundary=\"")
	return s[i : i+strings.IndexByte(s[i:], '"')]
}

func TestTooDeep(t *testing.T) {
	f := getFixture(t)
	o := signOpts(f.alice)
	o.Opaque = true
	msg := []byte(plainMsg)
	for i := 0; i < 9; i++ {
		msg = signBytes(t, string(msg), o)
	}
	_, _, err := openBytes(t, msg, f.opts())
	wantErr(t, err, ErrTooDeep)
	opts := f.opts()
	opts.MaxLayers = 9
	st, inner, err := openBytes(t, msg, opts)
	if err != nil || len(st.Layers) != 9 || st.Signature != OutcomeGood || string(inner) != plainInner {
		t.Fatalf("9 layers with MaxLayers 9: %v %d layers %q", err, len(st.Layers), inner)
	}
}

func TestDecryptionFailures(t *testing.T) {
	f := getFixture(t)
	p256 := f.aliceP[testpki.P256]
	rsaMsg := encryptBytes(t, plainMsg, EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}})
	gcmMsg := encryptBytes(t, plainMsg, EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}, AllowModern: true})
	ecMsg := encryptBytes(t, plainMsg, EncryptOptions{Recipients: []Recipient{{Certificate: p256.Cert}}})
	errCancelled := context.Canceled
	key := func(cert *x509.Certificate, k any) func(context.Context, []cms.RecipientInfo) (*DecryptionKey, error) {
		return func(context.Context, []cms.RecipientInfo) (*DecryptionKey, error) {
			return &DecryptionKey{Certificate: cert, PrivateKey: k}, nil
		}
	}
	tamperGCM := mutateOpaque(t, gcmMsg, func(d []byte) []byte {
		d = bytes.Clone(d)
		d[len(d)-40] ^= 1 // inside the ciphertext or tag
		return d
	})
	cases := []struct {
		name       string
		msg        []byte
		find       func(context.Context, []cms.RecipientInfo) (*DecryptionKey, error)
		want       error
		decryption string
	}{
		{"find-key-says-no-key", rsaMsg, func(context.Context, []cms.RecipientInfo) (*DecryptionKey, error) { return nil, ErrNoKey }, ErrNoKey, DecryptionNoKey},
		{"find-key-returns-nil", rsaMsg, func(context.Context, []cms.RecipientInfo) (*DecryptionKey, error) { return nil, nil }, ErrNoKey, DecryptionNoKey},
		{"no-find-key", rsaMsg, nil, ErrNoKey, DecryptionNoKey},
		{"key-for-someone-else", rsaMsg, keyFor(f.bob), ErrNoKey, DecryptionNoKey},
		{"cert-not-a-recipient", rsaMsg, key(f.bob.Cert, f.bob.Key), ErrNoKey, DecryptionNoKey},
		{"wrong-rsa-key", rsaMsg, key(f.alice.Cert, f.bob.Key), ErrDecryptionFailed, DecryptionFail},
		{"wrong-rsa-key-gcm", gcmMsg, key(f.alice.Cert, f.bob.Key), ErrDecryptionFailed, DecryptionFail},
		{"wrong-ec-key", ecMsg, key(p256.Cert, f.carol.Key), ErrDecryptionFailed, DecryptionFail},
		{"tampered-gcm", tamperGCM, keyFor(f.alice), ErrDecryptionFailed, DecryptionFail},
		{"find-key-cancelled", rsaMsg, func(context.Context, []cms.RecipientInfo) (*DecryptionKey, error) { return nil, errCancelled }, context.Canceled, DecryptionFail},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := f.opts()
			o.FindKey = c.find
			o.SpoolDir = t.TempDir()
			st, out, err := openBytes(t, c.msg, o)
			wantErr(t, err, c.want)
			if st.Decryption != c.decryption || !st.Encrypted {
				t.Fatalf("decryption = %s, want %s (%+v)", st.Decryption, c.decryption, st)
			}
			if c.name == "tampered-gcm" && len(out) != 0 {
				t.Fatalf("GCM released %d bytes of unauthenticated plaintext", len(out))
			}
			if c.name == "tampered-gcm" {
				if left, _ := os.ReadDir(o.SpoolDir); len(left) != 0 {
					t.Fatalf("spool files left: %v", left)
				}
			}
		})
	}
}

func TestContextCancelled(t *testing.T) {
	f := getFixture(t)
	signed := signBytes(t, plainMsg, signOpts(f.alice))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	st, err := Open(ctx, &out, bytes.NewReader(signed), f.opts())
	if !errors.Is(err, context.Canceled) || st == nil {
		t.Fatalf("Open with a cancelled context: %v", err)
	}
	if err := Sign(ctx, &out, strings.NewReader(plainMsg), signOpts(f.alice)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sign with a cancelled context: %v", err)
	}
}

// TestNoGoroutineLeak opens good and broken messages and checks that no
// goroutine (layer, pipe, base64 stage) outlives Open or Sign.
func TestNoGoroutineLeak(t *testing.T) {
	f := getFixture(t)
	e := EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}}
	op := signOpts(f.alice)
	op.Opaque = true
	var b bytes.Buffer
	if err := SignAndEncrypt(context.Background(), &b, strings.NewReader(plainMsg), op, e); err != nil {
		t.Fatal(err)
	}
	nested := b.Bytes()
	enc := encryptBytes(t, plainMsg, e)
	opaque := signBytes(t, plainMsg, op)
	msgs := [][]byte{
		nested, nested[:len(nested)/2], enc, enc[:len(enc)-300], opaque, opaque[:len(opaque)/3],
		signBytes(t, plainMsg, signOpts(f.alice)),
		mutateOpaque(t, opaque, func(d []byte) []byte { return bytes.Replace(d, []byte("noon"), []byte("nine"), 1) }),
	}
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		for _, m := range msgs {
			for _, find := range []func(context.Context, []cms.RecipientInfo) (*DecryptionKey, error){nil, keyFor(f.alice), keyFor(f.bob)} {
				o := f.opts()
				o.FindKey = find
				Open(context.Background(), io.Discard, bytes.NewReader(m), o)
			}
		}
		// A writer that fails half way.
		Encrypt(context.Background(), &failWriter{n: 2000}, strings.NewReader(plainMsg), e)
		Sign(context.Background(), &failWriter{n: 100}, strings.NewReader(plainMsg), op)
		if err := Encrypt(context.Background(), &failWriter{n: 1 << 20}, newGenMessage(5<<20, false), e); err == nil {
			t.Fatal("Encrypt into a failing writer succeeded")
		}
		if err := Sign(context.Background(), &failWriter{n: 1 << 20}, newGenMessage(5<<20, true), op); err == nil {
			t.Fatal("Sign into a failing writer succeeded")
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// failWriter fails once n bytes have been written.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errors.New("disk full")
	}
	w.n -= len(p)
	return len(p), nil
}
