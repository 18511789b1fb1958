package smime

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/cms"
)

var updateFuzzCorpus = flag.Bool("update-fuzz-corpus", false,
	"regenerate testdata/fuzz-pki.pem and the seed corpus in testdata/fuzz/FuzzOpen")

const fuzzPKIFile = "testdata/fuzz-pki.pem"

// fuzzPKI is the fixed PKI the fuzz seeds were made with: stored so that
// the seeds' encrypted layers can be decrypted in every run.
type fuzzPKI struct {
	root, inter  *x509.Certificate
	rsa, ec      *x509.Certificate
	rsaKey, ecKy crypto.PrivateKey
}

func (p *fuzzPKI) options(spool string) OpenOptions {
	roots := x509.NewCertPool()
	roots.AddCert(p.root)
	return OpenOptions{
		Roots:    roots,
		Now:      p.rsa.NotBefore.Add(time.Hour),
		SpoolDir: spool,
		FindKey: func(_ context.Context, rs []cms.RecipientInfo) (*DecryptionKey, error) {
			for _, r := range rs {
				if r.Matches(p.rsa) {
					return &DecryptionKey{Certificate: p.rsa, PrivateKey: p.rsaKey}, nil
				}
				if r.Matches(p.ec) {
					return &DecryptionKey{Certificate: p.ec, PrivateKey: p.ecKy}, nil
				}
			}
			return nil, ErrNoKey
		},
	}
}

// loadFuzzPKI reads testdata/fuzz-pki.pem: root, intermediate, RSA
// certificate and key, EC certificate and key.
func loadFuzzPKI(tb testing.TB) *fuzzPKI {
	tb.Helper()
	data, err := os.ReadFile(fuzzPKIFile)
	if err != nil {
		tb.Fatalf("%v (regenerate with go test -run TestFuzzCorpus -update-fuzz-corpus)", err)
	}
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) != 6 {
		tb.Fatalf("%s: %d PEM blocks, want 6", fuzzPKIFile, len(blocks))
	}
	cert := func(i int) *x509.Certificate {
		c, err := x509.ParseCertificate(blocks[i].Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	key := func(i int) crypto.PrivateKey {
		k, err := x509.ParsePKCS8PrivateKey(blocks[i].Bytes)
		if err != nil {
			tb.Fatal(err)
		}
		return k
	}
	return &fuzzPKI{root: cert(0), inter: cert(1), rsa: cert(2), rsaKey: key(3), ec: cert(4), ecKy: key(5)}
}

// TestFuzzCorpus checks that the stored seed corpus opens as it should
// (and regenerates it, with -update-fuzz-corpus).
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzOpen")
	if *updateFuzzCorpus {
		writeFuzzCorpus(t, dir)
	}
	p := loadFuzzPKI(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	valid := 0
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msg := parseCorpusFile(t, data)
		st, _, err := openBytes(t, msg, p.options(t.TempDir()))
		if strings.HasPrefix(e.Name(), "valid-") {
			valid++
			if err != nil {
				t.Errorf("%s: %v", e.Name(), err)
				continue
			}
			if st.Signed && st.Signature != OutcomeGood || st.Encrypted && st.Decryption != DecryptionOK {
				t.Errorf("%s: %+v", e.Name(), st)
			}
		}
	}
	if valid < 10 {
		t.Fatalf("only %d valid seeds in %s", valid, dir)
	}
}

// parseCorpusFile reads a "go test fuzz v1" file holding one []byte.
func parseCorpusFile(t testing.TB, data []byte) []byte {
	t.Helper()
	s := strings.TrimPrefix(string(data), "go test fuzz v1\n")
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "[]byte(") || !strings.HasSuffix(s, ")") {
		t.Fatalf("corpus file is not a single []byte")
	}
	var out string
	if _, err := fmt.Sscanf(s[len("[]byte("):len(s)-1], "%q", &out); err != nil {
		t.Fatalf("corpus file: %v", err)
	}
	return []byte(out)
}

// writeFuzzCorpus makes a long-lived PKI and one seed per message form.
func writeFuzzCorpus(t *testing.T, dir string) {
	p := testpki.New(t)
	long := time.Now().Add(20 * 365 * 24 * time.Hour)
	rsaID := p.Issue(t, testpki.Options{Email: "fuzz@example.com", NotAfter: long})
	ecID := p.Issue(t, testpki.Options{Email: "fuzz@example.com", Key: testpki.P256, NotAfter: long})
	var pemOut bytes.Buffer
	pemOut.Write(testpki.CertPEM(p.Root.Cert))
	pemOut.Write(testpki.CertPEM(p.Intermediate.Cert))
	pemOut.Write(testpki.CertPEM(rsaID.Cert))
	pemOut.Write(rsaID.KeyPEM(t))
	pemOut.Write(testpki.CertPEM(ecID.Cert))
	pemOut.Write(ecID.KeyPEM(t))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fuzzPKIFile, pemOut.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	msg := "From: fuzz@example.com\r\nTo: someone@example.org\r\nSubject: seed\r\n" +
		"Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\npreamble\r\n--mix\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n--mix\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgc=\r\n--mix--\r\n"
	simple := "From: fuzz@example.com\r\nSubject: seed\r\n\r\nhello\r\n"
	rsaSign := signOpts(rsaID)
	ecSign := signOpts(ecID)
	ecSign.Hash = crypto.SHA384
	opaque := signOpts(rsaID)
	opaque.Opaque = true
	toRSA := EncryptOptions{Recipients: []Recipient{{Certificate: rsaID.Cert}}}
	toEC := EncryptOptions{Recipients: []Recipient{{Certificate: ecID.Cert}}}
	toBothGCM := EncryptOptions{Recipients: []Recipient{{Certificate: rsaID.Cert}, {Certificate: ecID.Cert}}, AllowModern: true}
	seeds := map[string][]byte{}
	seeds["valid-detached-rsa"] = signBytes(t, msg, rsaSign)
	seeds["valid-detached-ec-sha384"] = signBytes(t, simple, ecSign)
	seeds["valid-opaque"] = signBytes(t, msg, opaque)
	seeds["valid-enveloped-rsa"] = encryptBytes(t, simple, toRSA)
	seeds["valid-enveloped-ec"] = encryptBytes(t, simple, toEC)
	seeds["valid-authenveloped"] = encryptBytes(t, simple, toBothGCM)
	var b bytes.Buffer
	if err := SignAndEncrypt(context.Background(), &b, strings.NewReader(msg), rsaSign, toRSA); err != nil {
		t.Fatal(err)
	}
	seeds["valid-sign-then-encrypt"] = bytes.Clone(b.Bytes())
	b.Reset()
	if err := EncryptAndSign(context.Background(), &b, strings.NewReader(simple), opaque, toEC); err != nil {
		t.Fatal(err)
	}
	seeds["valid-encrypt-then-sign"] = bytes.Clone(b.Bytes())
	b.Reset()
	if err := CertsOnly(&b, []*x509.Certificate{rsaID.Cert, p.Intermediate.Cert}); err != nil {
		t.Fatal(err)
	}
	seeds["valid-certs-only"] = bytes.Clone(b.Bytes())
	seeds["valid-detached-lf"] = bytes.ReplaceAll(signBytes(t, simple, rsaSign), []byte("\r\n"), []byte("\n"))
	seeds["notsmime-mixed"] = []byte(msg)
	seeds["bad-truncated"] = []byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\n")
	for name, data := range seeds {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzOpen feeds arbitrary bytes to Open, with a key for the seeds'
// recipients and their root trusted. Open must never panic, must say why
// whenever it fails, and must write nothing for a message that is not
// S/MIME.
func FuzzOpen(f *testing.F) {
	p := loadFuzzPKI(f)
	catchPanics = false
	f.Cleanup(func() { catchPanics = true })
	spool := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		var out bytes.Buffer
		st, err := Open(context.Background(), &out, bytes.NewReader(data), p.options(spool))
		if st == nil {
			t.Fatal("nil Status")
		}
		if (err == nil) != (st.Error == "") {
			t.Fatalf("err %v but Status.Error %q", err, st.Error)
		}
		if errors.Is(err, ErrNotSMIME) && out.Len() > 0 {
			t.Fatalf("%d bytes written for a message that is not S/MIME", out.Len())
		}
		if st.Signature == OutcomeGood && !st.Signed {
			t.Fatal("good signature on an unsigned message")
		}
		if out.Len() > len(data) {
			t.Fatalf("%d bytes out of %d in", out.Len(), len(data))
		}
	})
}

// FuzzSignVerify signs arbitrary messages: whatever Sign accepts, Open must
// find well signed, however odd its MIME structure.
func FuzzSignVerify(f *testing.F) {
	p := loadFuzzPKI(f)
	catchPanics = false
	f.Cleanup(func() { catchPanics = true })
	for _, s := range []string{
		plainMsg,
		"Subject: x\n\nbody without content type\n",
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n\xff\xfe\n--b--\n",
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\x02\n",
		"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	o := SignOptions{Signer: p.ecKy.(crypto.Signer), Certificate: p.ec, Chain: []*x509.Certificate{p.inter}}
	f.Fuzz(func(t *testing.T, msg []byte, opaque bool) {
		o := o
		o.Opaque = opaque
		var signed bytes.Buffer
		if err := Sign(context.Background(), &signed, bytes.NewReader(msg), o); err != nil {
			if !errors.Is(err, ErrBadMessage) && !errors.Is(err, ErrTooDeep) {
				t.Fatalf("Sign failed with an untyped error: %v", err)
			}
			return
		}
		opts := p.options(t.TempDir())
		opts.From = "fuzz@example.com"
		st, _, err := openBytes(t, signed.Bytes(), opts)
		if len(st.Layers) == 0 || st.Layers[0].Type != LayerSigned {
			t.Fatalf("signed message not recognised: %v", err)
		}
		if err != nil && len(st.Layers) > 1 {
			return // the signed content is itself (broken) S/MIME
		}
		if err != nil {
			t.Fatalf("Open of our own signed message: %v\n%q", err, signed.Bytes())
		}
		if s := st.Layers[0].Signers; len(s) != 1 || s[0].Outcome != OutcomeGood {
			t.Fatalf("our own signature is not good: %+v\n%q", s, signed.Bytes())
		}
	})
}
