package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/smimed/smimed/internal/testpki"
)

var envAllCiphers = []ContentCipher{AES128CBC, AES192CBC, AES256CBC, AES128GCM, AES256GCM}

// envRecipientCase is one way of addressing one recipient.
type envRecipientCase struct {
	name    string
	id      string // fixture identity
	r       Recipient
	wantAlg string // RecipientInfo.KeyAlgorithm; "%d" is the wrap key size in bits
}

func envRecipientCases() []envRecipientCase {
	cases := []envRecipientCase{
		{name: "rsa-v15", id: "rsa", r: Recipient{}, wantAlg: "rsa-pkcs1v15"},
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		for _, label := range [][]byte{nil, []byte("smimed label")} {
			name := fmt.Sprintf("rsa-oaep-%v", h)
			if label != nil {
				name += "-label"
			}
			cases = append(cases, envRecipientCase{name: name, id: "rsa", r: Recipient{Padding: OAEP, OAEPHash: h, OAEPLabel: label}, wantAlg: "rsa-oaep"})
		}
	}
	cases = append(cases, envRecipientCase{name: "rsa-oaep-default", id: "rsa", r: Recipient{Padding: OAEP}, wantAlg: "rsa-oaep"})
	kdfNames := map[crypto.Hash]string{crypto.SHA1: "sha1", crypto.SHA224: "sha224", crypto.SHA256: "sha256", crypto.SHA384: "sha384", crypto.SHA512: "sha512"}
	for _, curve := range []string{"p256", "p384", "p521"} {
		for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			cases = append(cases, envRecipientCase{
				name: curve + "-" + kdfNames[h], id: curve, r: Recipient{KDFHash: h},
				wantAlg: "ecdh-" + kdfNames[h] + "kdf-aes%dwrap",
			})
		}
	}
	cases = append(cases,
		envRecipientCase{name: "p256-default", id: "p256", r: Recipient{}, wantAlg: "ecdh-sha256kdf-aes%dwrap"},
		envRecipientCase{name: "rsa-ski", id: "rsaSKI", r: Recipient{SubjectKeyID: true}, wantAlg: "rsa-pkcs1v15"},
		envRecipientCase{name: "rsa-ski-oaep", id: "rsaSKI", r: Recipient{SubjectKeyID: true, Padding: OAEP}, wantAlg: "rsa-oaep"},
		envRecipientCase{name: "p256-ski", id: "p256SKI", r: Recipient{SubjectKeyID: true}, wantAlg: "ecdh-sha256kdf-aes%dwrap"},
		envRecipientCase{name: "rsa4096-oaep-sha512", id: "rsa4096", r: Recipient{Padding: OAEP, OAEPHash: crypto.SHA512}, wantAlg: "rsa-oaep"},
	)
	return cases
}

// TestRoundTripRecipients encrypts to every kind of recipient with every
// cipher and decrypts with the recipient's key, checking that exactly one
// private-key operation happens.
func TestRoundTripRecipients(t *testing.T) {
	f := envPKI(t)
	content := envContent(1000)
	for _, c := range envAllCiphers {
		for _, rc := range envRecipientCases() {
			t.Run(c.String()+"/"+rc.name, func(t *testing.T) {
				id := f.byName[rc.id]
				r := rc.r
				r.Certificate = id.Cert
				msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{r}, Cipher: c}, content)

				er, err := NewEnvelopedReader(bytes.NewReader(msg))
				if err != nil {
					t.Fatal(err)
				}
				if er.Cipher() != c {
					t.Errorf("Cipher() = %v, want %v", er.Cipher(), c)
				}
				if !er.ContentType().Equal(oidData) {
					t.Errorf("ContentType() = %v", er.ContentType())
				}
				ris := er.Recipients()
				if len(ris) != 1 {
					t.Fatalf("%d recipients", len(ris))
				}
				want := rc.wantAlg
				if bytes.Contains([]byte(want), []byte("%d")) {
					want = fmt.Sprintf(want, cipherSpecs[c].keyLen*8)
				}
				if ris[0].KeyAlgorithm != want {
					t.Errorf("KeyAlgorithm = %q, want %q", ris[0].KeyAlgorithm, want)
				}
				if !ris[0].Matches(id.Cert) {
					t.Errorf("RecipientInfo %+v does not match the certificate", ris[0])
				}
				if r.SubjectKeyID != (ris[0].SubjectKeyID != nil) || r.SubjectKeyID == (ris[0].IssuerAndSerial != nil) {
					t.Errorf("identifier form: %+v", ris[0])
				}
				wantKind := "ktri"
				if _, ok := id.Cert.PublicKey.(*ecdsa.PublicKey); ok {
					wantKind = "kari"
				}
				if ris[0].Kind != wantKind {
					t.Errorf("Kind = %q, want %q", ris[0].Kind, wantKind)
				}

				key, counter := envCountedKey(id)
				rcl, err := er.Decrypt(key, id.Cert, DecryptOptions{SpoolDir: t.TempDir()})
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				got, err := io.ReadAll(rcl)
				if err != nil {
					t.Fatalf("reading plaintext: %v", err)
				}
				if err := rcl.Close(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, content) {
					t.Fatalf("plaintext differs: got %d bytes", len(got))
				}
				if n := counter.count(); n != 1 {
					t.Errorf("%d private-key operations, want 1", n)
				}
			})
		}
	}
}

// TestRoundTripSizes covers the block and segment boundaries for every
// cipher, writing in uneven pieces and reading through a one-byte or
// half-size reader.
func TestRoundTripSizes(t *testing.T) {
	f := envPKI(t)
	sizes := []int{0, 1, 15, 16, 17, 31, 32, 33, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1 << 20}
	for _, c := range envAllCiphers {
		for i, n := range sizes {
			id := f.p256
			if i%2 == 1 {
				id = f.rsa
			}
			t.Run(fmt.Sprintf("%v/%d", c, n), func(t *testing.T) {
				content := envContent(n)
				var buf bytes.Buffer
				w, err := NewEncrypter(&buf, EncryptOptions{Recipients: []Recipient{{Certificate: id.Cert}}, Cipher: c})
				if err != nil {
					t.Fatal(err)
				}
				for rest := content; len(rest) > 0; {
					k := min(len(rest), 7777)
					if _, err := w.Write(rest[:k]); err != nil {
						t.Fatal(err)
					}
					rest = rest[k:]
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				var in io.Reader = bytes.NewReader(buf.Bytes())
				if n < 1024 {
					in = iotest.OneByteReader(in)
				} else {
					in = iotest.HalfReader(in)
				}
				got, err := envDecryptFrom(in, id.Key, id.Cert, DecryptOptions{SpoolDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, content) {
					t.Fatalf("plaintext differs: %d bytes, want %d", len(got), n)
				}
			})
		}
	}
}

// TestMixedRecipients addresses one message to RSA and EC recipients of
// every kind at once; each opens it with its own key.
func TestMixedRecipients(t *testing.T) {
	f := envPKI(t)
	recips := []Recipient{
		{Certificate: f.rsa.Cert},
		{Certificate: f.rsa2.Cert, Padding: OAEP, OAEPHash: crypto.SHA384, OAEPLabel: []byte("x")},
		{Certificate: f.p256.Cert},
		{Certificate: f.p256b.Cert, KDFHash: crypto.SHA1},
		{Certificate: f.p384.Cert, KDFHash: crypto.SHA384},
		{Certificate: f.p521.Cert, KDFHash: crypto.SHA512},
		{Certificate: f.rsaSKI.Cert, SubjectKeyID: true},
		{Certificate: f.p256SKI.Cert, SubjectKeyID: true},
	}
	ids := []*testpki.Identity{f.rsa, f.rsa2, f.p256, f.p256b, f.p384, f.p521, f.rsaSKI, f.p256SKI}
	content := envContent(5000)
	for _, c := range []ContentCipher{AES128CBC, AES256CBC, AES128GCM, AES256GCM} {
		msg := envEncrypt(t, EncryptOptions{Recipients: recips, Cipher: c}, content)
		er, err := NewEnvelopedReader(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(er.Recipients()); n != len(recips) {
			t.Fatalf("%v: %d recipients, want %d", c, n, len(recips))
		}
		for i, id := range ids {
			key, counter := envCountedKey(id)
			got, err := envDecrypt(msg, key, id.Cert, DecryptOptions{})
			if err != nil {
				t.Fatalf("%v: recipient %d (%s): %v", c, i, id.Email, err)
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("%v: recipient %d: plaintext differs", c, i)
			}
			if counter.count() != 1 {
				t.Errorf("%v: recipient %d: %d key operations", c, i, counter.count())
			}
		}
		if _, err := envDecrypt(msg, f.rsaOther.Key, f.rsaOther.Cert, DecryptOptions{}); !errors.Is(err, ErrNoRecipient) {
			t.Errorf("%v: stranger: %v, want ErrNoRecipient", c, err)
		}
	}
}

// TestEphemeralKeysFresh checks that every EC recipient, and every message,
// gets its own ephemeral key.
func TestEphemeralKeysFresh(t *testing.T) {
	f := envPKI(t)
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}, {Certificate: f.p256b.Cert}}}, []byte("x"))
		er, err := NewEnvelopedReader(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range er.entries {
			k := string(e.kari.originatorPoint)
			if seen[k] {
				t.Fatal("ephemeral key reused")
			}
			seen[k] = true
		}
	}
}

// TestOAEPMGFHashDiffers decrypts OAEP where the MGF1 hash differs from the
// OAEP hash (produced through a test hook; OpenSSL's are in the interop
// tests).
func TestOAEPMGFHashDiffers(t *testing.T) {
	f := envPKI(t)
	for _, tc := range []struct{ h, mgf crypto.Hash }{
		{crypto.SHA256, crypto.SHA1},
		{crypto.SHA1, crypto.SHA256},
		{crypto.SHA512, crypto.SHA384},
	} {
		content := envContent(100)
		msg := envEncryptHooks(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert, Padding: OAEP, OAEPHash: tc.h, OAEPLabel: []byte("L")}}},
			encryptHooks{mgfHash: tc.mgf}, content)
		er, err := NewEnvelopedReader(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		alg := er.entries[0].ktri
		if alg.hash != tc.h || alg.mgfHash != tc.mgf || string(alg.label) != "L" {
			t.Fatalf("parsed %+v", alg)
		}
		got, err := envDecrypt(msg, f.rsa.Key, f.rsa.Cert, DecryptOptions{})
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%v/%v: %v", tc.h, tc.mgf, err)
		}
	}
}

// TestUKM decrypts key agreement with user keying material.
func TestUKM(t *testing.T) {
	f := envPKI(t)
	for _, ukm := range [][]byte{{}, []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")} {
		content := envContent(33)
		msg := envEncryptHooks(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p384.Cert}}}, encryptHooks{ukm: ukm}, content)
		got, err := envDecrypt(msg, f.p384.Key, f.p384.Cert, DecryptOptions{})
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("ukm %d bytes: %v", len(ukm), err)
		}
	}
}

// TestVersions checks the EnvelopedData version rules of RFC 5652 §6.1.
func TestVersions(t *testing.T) {
	f := envPKI(t)
	tests := []struct {
		name   string
		cipher ContentCipher
		recips []Recipient
		want   int64
	}{
		{"ktri issuerAndSerial", AES256CBC, []Recipient{{Certificate: f.rsa.Cert}, {Certificate: f.rsa2.Cert, Padding: OAEP}}, 0},
		{"ktri SKI", AES256CBC, []Recipient{{Certificate: f.rsa.Cert}, {Certificate: f.rsaSKI.Cert, SubjectKeyID: true}}, 2},
		{"kari", AES256CBC, []Recipient{{Certificate: f.p256.Cert}}, 2},
		{"mixed", AES128CBC, []Recipient{{Certificate: f.rsa.Cert}, {Certificate: f.p256.Cert}}, 2},
		{"AuthEnvelopedData", AES256GCM, []Recipient{{Certificate: f.rsaSKI.Cert, SubjectKeyID: true}, {Certificate: f.p256.Cert}}, 0},
	}
	for _, tt := range tests {
		msg := envEncrypt(t, EncryptOptions{Recipients: tt.recips, Cipher: tt.cipher}, []byte("v"))
		if got := envSplit(t, msg).version; got != tt.want {
			t.Errorf("%s: version %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestContentType carries a content type other than id-data; for GCM it is
// then also named in an authenticated attribute.
func TestContentType(t *testing.T) {
	f := envPKI(t)
	ct := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2} // signedData
	for _, c := range []ContentCipher{AES256CBC, AES128GCM} {
		content := envContent(300)
		msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c, ContentType: ct}, content)
		er, err := NewEnvelopedReader(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if !er.ContentType().Equal(ct) {
			t.Errorf("%v: ContentType %v", c, er.ContentType())
		}
		rc, err := er.Decrypt(f.p256.Key, f.p256.Cert, DecryptOptions{})
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%v: %v", c, err)
		}
		hasAuthAttrs := bytes.Contains(msg, []byte{0xa1, 0x1a, 0x30, 0x18, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03})
		if hasAuthAttrs != c.Authenticated() {
			t.Errorf("%v: authAttrs present = %v", c, hasAuthAttrs)
		}
	}
}

// TestEncryptOptionErrors covers options NewEncrypter refuses.
func TestEncryptOptionErrors(t *testing.T) {
	f := envPKI(t)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edTmpl := &x509.Certificate{SerialNumber: f.rsa.Cert.SerialNumber, NotBefore: f.rsa.Cert.NotBefore, NotAfter: f.rsa.Cert.NotAfter}
	edDER, err := x509.CreateCertificate(rand.Reader, edTmpl, edTmpl, edPub, edKey)
	if err != nil {
		t.Fatal(err)
	}
	edCert, _ := x509.ParseCertificate(edDER)
	tests := []struct {
		name        string
		opts        EncryptOptions
		unsupported bool
	}{
		{"no recipients", EncryptOptions{}, false},
		{"nil certificate", EncryptOptions{Recipients: []Recipient{{}}}, false},
		{"DES3 encrypt", EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert}}, Cipher: DES3CBC}, true},
		{"unknown cipher", EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert}}, Cipher: 99}, true},
		{"ed25519 recipient", EncryptOptions{Recipients: []Recipient{{Certificate: edCert}}}, true},
		{"SKI missing", EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert, SubjectKeyID: true}}}, false},
		{"OAEP MD5", EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert, Padding: OAEP, OAEPHash: crypto.MD5}}}, true},
		{"bad padding", EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert, Padding: 7}}}, false},
		{"KDF MD5", EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert, KDFHash: crypto.MD5}}}, true},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		w, err := NewEncrypter(&buf, tt.opts)
		if err == nil {
			w.Close()
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if errors.Is(err, ErrUnsupported) != tt.unsupported {
			t.Errorf("%s: %v (unsupported=%v)", tt.name, err, tt.unsupported)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", tt.name, buf.Len())
		}
	}
}

// TestWriterErrors checks that a failing destination is reported and that
// Write after Close fails.
func TestWriterErrors(t *testing.T) {
	f := envPKI(t)
	boom := errors.New("disk full")
	for _, c := range []ContentCipher{AES256CBC, AES256GCM} {
		w, err := NewEncrypter(&envFailWriter{after: 4000, err: boom}, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c})
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		for i := 0; i < 100 && werr == nil; i++ {
			_, werr = w.Write(make([]byte, 10000))
		}
		if werr == nil {
			werr = w.Close()
		}
		if !errors.Is(werr, boom) {
			t.Errorf("%v: %v, want the writer's error", c, werr)
		}
		var buf bytes.Buffer
		w, _ = NewEncrypter(&buf, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c})
		w.Close()
		if _, err := w.Write([]byte("x")); err == nil {
			t.Errorf("%v: Write after Close succeeded", c)
		}
	}
}

type envFailWriter struct {
	after int
	n     int
	err   error
}

func (w *envFailWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.after {
		return 0, w.err
	}
	w.n += len(p)
	return len(p), nil
}

// TestMatches checks RecipientInfo.Matches.
func TestMatches(t *testing.T) {
	f := envPKI(t)
	msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.rsa.Cert}, {Certificate: f.p256SKI.Cert, SubjectKeyID: true}}}, nil)
	er, err := NewEnvelopedReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	ris := er.Recipients()
	var isn, ski RecipientInfo
	for _, ri := range ris {
		if ri.IssuerAndSerial != nil {
			isn = ri
		} else {
			ski = ri
		}
	}
	if !isn.Matches(f.rsa.Cert) || isn.Matches(f.rsa2.Cert) || isn.Matches(nil) || isn.Matches(f.p256SKI.Cert) {
		t.Error("issuerAndSerial matching wrong")
	}
	if !ski.Matches(f.p256SKI.Cert) || ski.Matches(f.rsaSKI.Cert) || ski.Matches(f.rsa.Cert) {
		t.Error("SKI matching wrong")
	}
	// A serial number with a non-minimal encoding still matches.
	serial := f.rsa.Cert.SerialNumber.Bytes()
	loose, err := asn1.Marshal(struct {
		Issuer asn1.RawValue
		Serial asn1.RawValue
	}{asn1.RawValue{FullBytes: f.rsa.Cert.RawIssuer}, asn1.RawValue{Tag: 2, Bytes: append([]byte{0, 0}, serial...)}})
	if err != nil {
		t.Fatal(err)
	}
	if !(RecipientInfo{IssuerAndSerial: loose}).Matches(f.rsa.Cert) {
		t.Error("non-minimal serial does not match")
	}
}

// TestCipherNames checks String and Authenticated.
func TestCipherNames(t *testing.T) {
	want := map[ContentCipher]string{AES128CBC: "aes-128-cbc", AES192CBC: "aes-192-cbc", AES256CBC: "aes-256-cbc", AES128GCM: "aes-128-gcm", AES256GCM: "aes-256-gcm", DES3CBC: "des-ede3-cbc", 0: "ContentCipher(0)"}
	for c, name := range want {
		if c.String() != name {
			t.Errorf("%d: %q", int(c), c.String())
		}
		if c.Authenticated() != (c == AES128GCM || c == AES256GCM) {
			t.Errorf("%v.Authenticated() = %v", c, c.Authenticated())
		}
	}
}

// TestKeyAgreerForms decrypts with the key forms Decrypt accepts for EC:
// *ecdsa.PrivateKey, *ecdh.PrivateKey and a KeyAgreer whose Public returns
// an *ecdsa.PublicKey.
func TestKeyAgreerForms(t *testing.T) {
	f := envPKI(t)
	msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p521.Cert}}}, []byte("forms"))
	ecdhKey, err := f.p521.Key.(interface {
		ECDH() (*ecdh.PrivateKey, error)
	}).ECDH()
	if err != nil {
		t.Fatal(err)
	}
	ka, _ := envCountedKey(f.p521)
	for _, key := range []crypto.PrivateKey{f.p521.Key, ecdhKey, ka} {
		if got, err := envDecrypt(msg, key, f.p521.Cert, DecryptOptions{}); err != nil || string(got) != "forms" {
			t.Errorf("%T: %q %v", key, got, err)
		}
	}
}
