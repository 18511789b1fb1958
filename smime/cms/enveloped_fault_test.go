package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// TestNoRecipient: a certificate the message is not addressed to gives
// ErrNoRecipient without any private-key operation.
func TestNoRecipient(t *testing.T) {
	f := envPKI(t)
	for _, c := range []ContentCipher{AES256CBC, AES256GCM} {
		msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert}, {Certificate: f.p256.Cert}}, Cipher: c}, []byte("secret"))
		for _, id := range []*testpki.Identity{f.rsa2, f.p256b, f.rsaSKI} {
			key, counter := envCountedKey(id)
			got, err := envDecrypt(msg, key, id.Cert, DecryptOptions{})
			if !errors.Is(err, ErrNoRecipient) || got != nil {
				t.Errorf("%v %s: %v", c, id.Email, err)
			}
			if counter.count() != 0 {
				t.Errorf("%v %s: %d key operations", c, id.Email, counter.count())
			}
		}
		if _, err := envDecrypt(msg, f.rsa.Key, nil, DecryptOptions{}); !errors.Is(err, ErrNoRecipient) {
			t.Errorf("nil certificate: %v", err)
		}
	}
}

// TestWrongKeyForCertificate: the right certificate with another key gives
// ErrDecryption, again without using the key.
func TestWrongKeyForCertificate(t *testing.T) {
	f := envPKI(t)
	for _, c := range []ContentCipher{AES128CBC, AES128GCM} {
		msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert}, {Certificate: f.p256.Cert}}, Cipher: c}, []byte("secret"))
		for _, tc := range []struct{ cert, key *testpki.Identity }{{f.rsa, f.rsa2}, {f.p256, f.p256b}} {
			key, counter := envCountedKey(tc.key)
			got, err := envDecrypt(msg, key, tc.cert.Cert, DecryptOptions{})
			if !errors.Is(err, ErrDecryption) || got != nil {
				t.Errorf("%v %s: %v", c, tc.cert.Email, err)
			}
			if counter.count() != 0 {
				t.Errorf("%d key operations", counter.count())
			}
		}
		// A key of the wrong kind.
		if _, err := envDecrypt(msg, f.p256.Key, f.rsa.Cert, DecryptOptions{}); err == nil {
			t.Error("EC key for RSA recipient accepted")
		}
		if _, err := envDecrypt(msg, f.rsa.Key, f.p256.Cert, DecryptOptions{}); err == nil {
			t.Error("RSA key for EC recipient accepted")
		}
	}
}

// TestCorruptedEncryptedKey alters the encrypted content key. Every key
// form must fail with ErrDecryption after exactly one key operation; RSA
// PKCS #1 v1.5 continues with a random key (no padding oracle), so with CBC
// the failure shows at the padding check, which a random key passes with
// probability about 1/256: then the output must at least not be the
// plaintext.
func TestCorruptedEncryptedKey(t *testing.T) {
	f := envPKI(t)
	content := envContent(4096)
	for _, c := range []ContentCipher{AES256CBC, AES256GCM, AES128CBC, AES128GCM} {
		for _, rc := range []struct {
			name string
			id   *testpki.Identity
			r    Recipient
		}{
			{"v15", f.rsa, Recipient{}},
			{"oaep", f.rsa, Recipient{Padding: OAEP}},
			{"ecdh", f.p256, Recipient{}},
		} {
			r := rc.r
			r.Certificate = rc.id.Cert
			msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{r}, Cipher: c}, content)
			er, err := NewEnvelopedReader(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			ek := er.entries[0].encryptedKey
			off := int64(bytes.Index(msg, ek))
			if off < 0 {
				t.Fatal("encrypted key not found")
			}
			bad := envFlip(msg, off+int64(len(ek))/2, 0x40)
			key, counter := envCountedKey(rc.id)
			got, err := envDecrypt(bad, key, rc.id.Cert, DecryptOptions{})
			switch {
			case errors.Is(err, ErrDecryption):
			case err == nil && !c.Authenticated() && rc.name == "v15" && !bytes.Equal(got, content):
				t.Logf("%v/%s: random key passed the padding check (p≈1/256)", c, rc.name)
			default:
				t.Errorf("%v/%s: %v", c, rc.name, err)
			}
			if c.Authenticated() && len(got) != 0 {
				t.Errorf("%v/%s: %d plaintext bytes released", c, rc.name, len(got))
			}
			if counter.count() != 1 {
				t.Errorf("%v/%s: %d key operations", c, rc.name, counter.count())
			}
		}
	}
}

// TestGCMTamper flips bytes of the ciphertext and of the mac: Decrypt must
// fail with ErrDecryption and release no plaintext at all.
func TestGCMTamper(t *testing.T) {
	f := envPKI(t)
	for _, c := range []ContentCipher{AES128GCM, AES256GCM} {
		for _, n := range []int{1, 100, 100000} {
			msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c}, envContent(n))
			p := envSplit(t, msg)
			offsets := map[string]int64{
				"first ciphertext byte": p.ciphertextOffset(t, 0),
				"middle":                p.ciphertextOffset(t, int64(n/2)),
				"last ciphertext byte":  p.ciphertextOffset(t, -1),
				"mac":                   p.afterContentEnds + 2 + 5,
			}
			for name, off := range offsets {
				dir := t.TempDir()
				er, err := NewEnvelopedReader(bytes.NewReader(envFlip(msg, off, 0x01)))
				if err != nil {
					t.Fatal(err)
				}
				rc, err := er.Decrypt(f.p256.Key, f.p256.Cert, DecryptOptions{SpoolDir: dir})
				if !errors.Is(err, ErrDecryption) || rc != nil {
					t.Errorf("%v/%d/%s: %v", c, n, name, err)
				}
				envCheckNoSpool(t, dir)
			}
		}
	}
}

// TestCBCBadPadding alters the last plaintext byte through the previous
// ciphertext block so that the padding is certainly invalid.
func TestCBCBadPadding(t *testing.T) {
	f := envPKI(t)
	for _, c := range []ContentCipher{AES128CBC, AES256CBC} {
		msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c}, envContent(32))
		p := envSplit(t, msg)
		// The content is a multiple of 16, so the last block is 16 bytes
		// of 0x10; 0x10^0x20 = 0x30 is no valid padding.
		bad := envFlip(msg, p.ciphertextOffset(t, -17), 0x20)
		got, err := envDecrypt(bad, f.p256.Key, f.p256.Cert, DecryptOptions{})
		if !errors.Is(err, ErrDecryption) {
			t.Errorf("%v: %v", c, err)
		}
		if len(got) != 0 {
			t.Errorf("%v: %d bytes released", c, len(got))
		}
	}
}

// TestTruncated cuts messages at every length: never a panic, never
// success, always ErrMalformed (or ErrDecryption), and for GCM never any
// plaintext.
func TestTruncated(t *testing.T) {
	f := envPKI(t)
	for _, c := range []ContentCipher{AES128CBC, AES256GCM} {
		for _, id := range []*testpki.Identity{f.p256, f.rsa} {
			content := envContent(300)
			msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: id.Cert}}, Cipher: c}, content)
			step := 1
			if id == f.rsa {
				step = 7 // RSA decryption is slower; still well spread
			}
			for n := 0; n < len(msg); n += step {
				got, err := envDecrypt(msg[:n], id.Key, id.Cert, DecryptOptions{SpoolDir: t.TempDir()})
				if !envIsAny(err, ErrMalformed, ErrDecryption) {
					t.Fatalf("%v %s: cut at %d of %d: %v", c, id.Email, n, len(msg), err)
				}
				if c.Authenticated() && len(got) != 0 {
					t.Fatalf("%v: cut at %d: %d plaintext bytes", c, n, len(got))
				}
			}
			// Trailing garbage is refused too.
			_, err := envDecrypt(append(append([]byte(nil), msg...), 0x05, 0x00), id.Key, id.Cert, DecryptOptions{})
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%v: trailing data: %v", c, err)
			}
		}
	}
}

// TestUnknownCipher replaces the content-encryption OID: Cipher() is 0 and
// Decrypt reports ErrUnsupported naming the OID, before any key operation.
func TestUnknownCipher(t *testing.T) {
	f := envPKI(t)
	for _, c := range []ContentCipher{AES256CBC, AES256GCM} {
		msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert}}, Cipher: c}, []byte("x"))
		oid := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01}
		i := bytes.Index(msg, oid)
		if i < 0 {
			t.Fatal("cipher OID not found")
		}
		bad := append([]byte(nil), msg...)
		bad[i+len(oid)] = 0x7f // 2.16.840.1.101.3.4.1.127
		er, err := NewEnvelopedReader(bytes.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if er.Cipher() != 0 {
			t.Errorf("Cipher() = %v", er.Cipher())
		}
		key, counter := envCountedKey(f.rsa)
		_, err = er.Decrypt(key, f.rsa.Cert, DecryptOptions{})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "2.16.840.1.101.3.4.1.127") {
			t.Errorf("%v: %v", c, err)
		}
		if counter.count() != 0 {
			t.Errorf("%d key operations", counter.count())
		}
	}
}

// TestNotEnveloped: other content types are refused as unsupported, and
// non-CMS input as malformed.
func TestNotEnveloped(t *testing.T) {
	signed := []byte{0x30, 0x0f, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x02, 0x30, 0x00}
	if _, err := NewEnvelopedReader(bytes.NewReader(signed)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("signedData: %v", err)
	}
	for _, in := range [][]byte{nil, []byte("From: x\r\n\r\nhello"), {0x30, 0x80}, {0x04, 0x00}} {
		if _, err := NewEnvelopedReader(bytes.NewReader(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// envCheckNoSpool fails if dir holds files or this process holds a file of
// dir open.
func envCheckNoSpool(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("spool directory not empty: %v", entries)
	}
	if n := envOpenSpools(t, dir); n != 0 {
		t.Errorf("%d spool files still open", n)
	}
}

// envOpenSpools counts the files under dir this process has open (Linux).
func envOpenSpools(t *testing.T, dir string) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return 0
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			n++
		}
	}
	return n
}

// TestSpool checks that GCM ciphertext goes to a 0600 spool file in
// SpoolDir that is gone after Close and after every error.
func TestSpool(t *testing.T) {
	f := envPKI(t)
	content := envContent(200000)
	msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: AES256GCM}, content)

	dir := t.TempDir()
	er, err := NewEnvelopedReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := er.Decrypt(f.p256.Key, f.p256.Cert, DecryptOptions{SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" {
		if n := envOpenSpools(t, dir); n != 1 {
			t.Errorf("%d open spool files during reading, want 1", n)
		}
		sr := rc.(*spoolReader)
		st, err := sr.f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("spool mode %v", st.Mode().Perm())
		}
		if st.Size() != int64(len(content)) {
			t.Errorf("spool holds %d bytes, want the %d bytes of ciphertext", st.Size(), len(content))
		}
		// Only ciphertext is on disk.
		head := make([]byte, 64)
		if _, err := sr.f.ReadAt(head, 0); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(head, content[:64]) {
			t.Error("plaintext in the spool")
		}
	}
	got, err := io.ReadAll(io.LimitReader(rc, 1000))
	if err != nil || !bytes.Equal(got, content[:1000]) {
		t.Fatalf("partial read: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	envCheckNoSpool(t, dir)
	if _, err := rc.Read(make([]byte, 10)); err == nil {
		t.Error("Read after Close succeeded")
	}

	// Errors after the spool was made: a bad tag, a truncated trailer.
	p := envSplit(t, msg)
	for name, bad := range map[string][]byte{
		"bad tag":   envFlip(msg, p.ciphertextOffset(t, 5), 1),
		"truncated": msg[:len(msg)-3],
		"no mac":    msg[:p.afterContentEnds],
	} {
		dir := t.TempDir()
		if _, err := envDecrypt(bad, f.p256.Key, f.p256.Cert, DecryptOptions{SpoolDir: dir}); err == nil {
			t.Errorf("%s: no error", name)
		}
		envCheckNoSpool(t, dir)
	}
	// A spool directory that does not exist fails before the key is used.
	key, counter := envCountedKey(f.p256)
	_, err = envDecrypt(msg, key, f.p256.Cert, DecryptOptions{SpoolDir: filepath.Join(dir, "missing")})
	if err == nil || counter.count() != 0 {
		t.Errorf("missing spool dir: %v, %d key operations", err, counter.count())
	}
}

// TestDecryptOnce: a second Decrypt on the same reader fails.
func TestDecryptOnce(t *testing.T) {
	f := envPKI(t)
	msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}}, []byte("once"))
	er, err := NewEnvelopedReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := er.Decrypt(f.p256.Key, f.p256.Cert, DecryptOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := er.Decrypt(f.p256.Key, f.p256.Cert, DecryptOptions{}); err == nil {
		t.Fatal("second Decrypt succeeded")
	}
}

// TestCBCTrailerChecked: the end of the content is reported only after the
// structure behind it parsed; a broken trailer yields an error instead of
// io.EOF, and the last chunk of plaintext is held back.
func TestCBCTrailerChecked(t *testing.T) {
	f := envPKI(t)
	content := envContent(1000)
	msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: AES256CBC}, content)
	bad := append(append([]byte(nil), msg[:len(msg)-2]...), 0x05, 0x00, 0x00, 0x00) // NULL instead of the last EOC
	got, err := envDecrypt(bad, f.p256.Key, f.p256.Cert, DecryptOptions{})
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v", err)
	}
	if len(got) != 0 {
		t.Errorf("%d bytes released before the trailer was checked", len(got))
	}
}

// envGCMSeal encrypts content with AES-GCM in memory (crypto/cipher), for
// crafted messages.
func envGCMSeal(t testing.TB, key, nonce, content, aad []byte, tagLen int) (ct, tag []byte) {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCMWithTagSize(block, tagLen)
	if err != nil {
		t.Fatal(err)
	}
	out := g.Seal(nil, nonce, content, aad)
	return out[:len(content)], out[len(content):]
}

// envRandBytes returns n random bytes.
func envRandBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
