package cms

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// These tests run the real OpenSSL 3.0 `openssl cms` in both directions.
// A missing openssl fails them (envOpenSSL); they are never skipped.

// TestOpenSSLDecryptsOurs has OpenSSL decrypt what NewEncrypter writes, for
// every cipher OpenSSL can read and every kind of recipient.
func TestOpenSSLDecryptsOurs(t *testing.T) {
	f := envPKI(t)
	envOpenSSL(t)
	recips := []struct {
		name string
		id   *testpki.Identity
		r    Recipient
	}{
		{"rsa-v15", f.rsa, Recipient{}},
		{"rsa-oaep-sha1", f.rsa, Recipient{Padding: OAEP, OAEPHash: crypto.SHA1}},
		{"rsa-oaep-sha256", f.rsa, Recipient{Padding: OAEP}},
		{"rsa-oaep-sha384-label", f.rsa, Recipient{Padding: OAEP, OAEPHash: crypto.SHA384, OAEPLabel: []byte("smimed")}},
		{"rsa-oaep-sha512", f.rsa, Recipient{Padding: OAEP, OAEPHash: crypto.SHA512}},
		{"rsa-ski", f.rsaSKI, Recipient{SubjectKeyID: true}},
		{"p256-sha256", f.p256, Recipient{}},
		{"p256-sha1", f.p256, Recipient{KDFHash: crypto.SHA1}},
		{"p256-sha224", f.p256, Recipient{KDFHash: crypto.SHA224}},
		{"p384-sha384", f.p384, Recipient{KDFHash: crypto.SHA384}},
		{"p521-sha512", f.p521, Recipient{KDFHash: crypto.SHA512}},
		{"p256-ski", f.p256SKI, Recipient{SubjectKeyID: true}},
	}
	for _, c := range envAllCiphers {
		for _, rc := range recips {
			t.Run(c.String()+"/"+rc.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				r := rc.r
				r.Certificate = rc.id.Cert
				content := envContent(10000)
				msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{r}, Cipher: c}, content)
				got := envOpenSSLDecrypt(t, dir, msg, rc.id)
				if !bytes.Equal(got, content) {
					t.Fatalf("OpenSSL's plaintext differs: %d bytes", len(got))
				}
			})
		}
	}
	t.Run("empty", func(t *testing.T) {
		for _, c := range envAllCiphers {
			msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c}, nil)
			if got := envOpenSSLDecrypt(t, t.TempDir(), msg, f.p256); len(got) != 0 {
				t.Fatalf("%v: %d bytes", c, len(got))
			}
		}
	})
	t.Run("mixed", func(t *testing.T) {
		ids := []*testpki.Identity{f.rsa, f.rsa2, f.p256, f.p384, f.p521, f.rsaSKI}
		rs := []Recipient{
			{Certificate: f.rsa.Cert},
			{Certificate: f.rsa2.Cert, Padding: OAEP},
			{Certificate: f.p256.Cert},
			{Certificate: f.p384.Cert, KDFHash: crypto.SHA384},
			{Certificate: f.p521.Cert, KDFHash: crypto.SHA1},
			{Certificate: f.rsaSKI.Cert, SubjectKeyID: true},
		}
		content := envContent(70000)
		for _, c := range []ContentCipher{AES256CBC, AES256GCM} {
			msg := envEncrypt(t, EncryptOptions{Recipients: rs, Cipher: c}, content)
			for _, id := range ids {
				if got := envOpenSSLDecrypt(t, t.TempDir(), msg, id); !bytes.Equal(got, content) {
					t.Fatalf("%v: %s: plaintext differs", c, id.Email)
				}
			}
		}
	})
	t.Run("content-type", func(t *testing.T) {
		// OpenSSL reads the authAttrs this package adds for a content
		// type other than id-data and checks the tag over them.
		ct := []int{1, 2, 840, 113549, 1, 7, 2}
		msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: AES128GCM, ContentType: ct}, []byte("inner"))
		dir := t.TempDir()
		cert, key := envWriteID(t, dir, f.p256)
		in := envWrite(t, dir, "msg.der", msg)
		out, err := envRunOpenSSL(t, dir, nil, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in, "-recip", cert, "-inkey", key)
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		if string(out) != "inner" {
			t.Fatalf("got %q", out)
		}
	})
}

// envOpenSSLDecrypt has OpenSSL decrypt msg with id's key.
func envOpenSSLDecrypt(t *testing.T, dir string, msg []byte, id *testpki.Identity) []byte {
	t.Helper()
	cert, key := envWriteID(t, dir, id)
	in := envWrite(t, dir, "msg.der", msg)
	outPath := filepath.Join(dir, "out.bin")
	if _, err := envRunOpenSSL(t, dir, nil, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in,
		"-recip", cert, "-inkey", key, "-out", outPath); err != nil {
		t.Fatalf("openssl cms -decrypt: %v", err)
	}
	out, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// envOpenSSLRecip is one -recip with its -keyopt options.
type envOpenSSLRecip struct {
	id      *testpki.Identity
	keyopts []string
}

// envOpenSSLEncrypt has OpenSSL encrypt content for the recipients.
func envOpenSSLEncrypt(t *testing.T, dir, cipher string, content []byte, extra []string, recips ...envOpenSSLRecip) []byte {
	t.Helper()
	in := envWrite(t, dir, "content.bin", content)
	outPath := filepath.Join(dir, "enc.der")
	args := []string{"cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, "-out", outPath, "-" + cipher}
	args = append(args, extra...)
	for _, r := range recips {
		cert, _ := envWriteID(t, dir, r.id)
		args = append(args, "-recip", cert)
		for _, o := range r.keyopts {
			args = append(args, "-keyopt", o)
		}
	}
	if _, err := envRunOpenSSL(t, dir, nil, args...); err != nil {
		t.Fatalf("openssl %s: %v", strings.Join(args, " "), err)
	}
	msg, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestWeDecryptOpenSSL decrypts what `openssl cms -encrypt` writes.
func TestWeDecryptOpenSSL(t *testing.T) {
	f := envPKI(t)
	envOpenSSL(t)
	oaep256 := []string{"rsa_padding_mode:oaep", "rsa_oaep_md:sha256", "rsa_mgf1_md:sha256"}
	recips := []struct {
		name    string
		id      *testpki.Identity
		keyopts []string
		wantAlg string
	}{
		{"rsa-v15", f.rsa, nil, "rsa-pkcs1v15"},
		{"rsa-oaep-sha1", f.rsa, []string{"rsa_padding_mode:oaep"}, "rsa-oaep"},
		{"rsa-oaep-sha256", f.rsa, oaep256, "rsa-oaep"},
		{"rsa-oaep-sha256-mgf-sha1", f.rsa, []string{"rsa_padding_mode:oaep", "rsa_oaep_md:sha256", "rsa_mgf1_md:sha1"}, "rsa-oaep"},
		{"rsa-oaep-sha512-mgf-sha256-label", f.rsa, []string{"rsa_padding_mode:oaep", "rsa_oaep_md:sha512", "rsa_mgf1_md:sha256", "rsa_oaep_label:736d696d6564"}, "rsa-oaep"},
		{"rsa-oaep-sha384", f.rsa, []string{"rsa_padding_mode:oaep", "rsa_oaep_md:sha384", "rsa_mgf1_md:sha384"}, "rsa-oaep"},
		{"p256-default", f.p256, nil, "ecdh-sha1kdf-aes%dwrap"},
		{"p256-sha256", f.p256, []string{"ecdh_kdf_md:sha256"}, "ecdh-sha256kdf-aes%dwrap"},
		{"p256-sha224", f.p256, []string{"ecdh_kdf_md:sha224"}, "ecdh-sha224kdf-aes%dwrap"},
		{"p384-sha384", f.p384, []string{"ecdh_kdf_md:sha384"}, "ecdh-sha384kdf-aes%dwrap"},
		{"p521-sha512", f.p521, []string{"ecdh_kdf_md:sha512"}, "ecdh-sha512kdf-aes%dwrap"},
		{"p256-cofactor", f.p256, []string{"ecdh_cofactor_mode:1"}, "ecdh-cofactor-sha1kdf-aes%dwrap"},
		{"p384-cofactor-sha256", f.p384, []string{"ecdh_cofactor_mode:1", "ecdh_kdf_md:sha256"}, "ecdh-cofactor-sha256kdf-aes%dwrap"},
	}
	ciphers := []struct {
		flag string
		c    ContentCipher
	}{
		{"aes-128-cbc", AES128CBC},
		{"aes-192-cbc", AES192CBC},
		{"aes-256-cbc", AES256CBC},
		{"aes-128-gcm", AES128GCM},
		{"aes-256-gcm", AES256GCM},
		{"des3", DES3CBC},
	}
	for _, c := range ciphers {
		for _, rc := range recips {
			t.Run(c.flag+"/"+rc.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				content := envContent(20000)
				msg := envOpenSSLEncrypt(t, dir, c.flag, content, nil, envOpenSSLRecip{rc.id, rc.keyopts})
				er, err := NewEnvelopedReader(bytes.NewReader(msg))
				if err != nil {
					t.Fatal(err)
				}
				if er.Cipher() != c.c {
					t.Errorf("Cipher() = %v, want %v", er.Cipher(), c.c)
				}
				ris := er.Recipients()
				if len(ris) != 1 {
					t.Fatalf("%d recipients", len(ris))
				}
				if want := rc.wantAlg; !strings.Contains(want, "%d") && ris[0].KeyAlgorithm != want {
					t.Errorf("KeyAlgorithm %q, want %q", ris[0].KeyAlgorithm, want)
				} else if strings.Contains(want, "%d") && !strings.HasPrefix(ris[0].KeyAlgorithm, strings.TrimSuffix(want, "aes%dwrap")) {
					t.Errorf("KeyAlgorithm %q, want %q", ris[0].KeyAlgorithm, want)
				}
				key, counter := envCountedKey(rc.id)
				rcl, err := er.Decrypt(key, rc.id.Cert, DecryptOptions{SpoolDir: dir})
				if err != nil {
					t.Fatalf("Decrypt: %v", err)
				}
				defer rcl.Close()
				got, err := readAllClose(rcl)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if !bytes.Equal(got, content) {
					t.Fatalf("plaintext differs: %d bytes", len(got))
				}
				if counter.count() != 1 {
					t.Errorf("%d key operations", counter.count())
				}
			})
		}
	}
}

func readAllClose(r interface {
	Read([]byte) (int, error)
	Close() error
}) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// TestWeDecryptOpenSSLForms covers OpenSSL output beyond one recipient:
// several mixed recipients, subject key identifiers (-keyid), streamed
// indefinite-length BER (-stream) and empty content.
func TestWeDecryptOpenSSLForms(t *testing.T) {
	f := envPKI(t)
	envOpenSSL(t)
	all := []envOpenSSLRecip{
		{f.rsa, nil},
		{f.rsa2, []string{"rsa_padding_mode:oaep", "rsa_oaep_md:sha256", "rsa_mgf1_md:sha256"}},
		{f.p256, []string{"ecdh_kdf_md:sha256"}},
		{f.p384, nil},
		{f.p521, []string{"ecdh_kdf_md:sha512"}},
	}
	tests := []struct {
		name    string
		cipher  string
		extra   []string
		recips  []envOpenSSLRecip
		content []byte
	}{
		{"mixed-cbc", "aes-256-cbc", nil, all, envContent(100000)},
		{"mixed-gcm", "aes-256-gcm", nil, all, envContent(100000)},
		{"mixed-des3", "des3", nil, all, envContent(1000)},
		{"stream-cbc", "aes-128-cbc", []string{"-stream"}, all[:3], envContent(300000)},
		{"stream-gcm", "aes-128-gcm", []string{"-stream"}, all[:3], envContent(300000)},
		{"keyid", "aes-256-cbc", []string{"-keyid"}, []envOpenSSLRecip{{f.rsaSKI, nil}, {f.p256SKI, []string{"ecdh_kdf_md:sha256"}}}, envContent(999)},
		{"keyid-gcm", "aes-256-gcm", []string{"-keyid"}, []envOpenSSLRecip{{f.rsaSKI, []string{"rsa_padding_mode:oaep"}}, {f.p256SKI, nil}}, envContent(999)},
		{"empty-cbc", "aes-256-cbc", nil, all[:1], nil},
		{"empty-gcm", "aes-256-gcm", nil, all[2:3], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			msg := envOpenSSLEncrypt(t, dir, tt.cipher, tt.content, tt.extra, tt.recips...)
			er, err := NewEnvelopedReader(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(er.Recipients()) != len(tt.recips) {
				t.Fatalf("%d recipients, want %d", len(er.Recipients()), len(tt.recips))
			}
			for _, r := range tt.recips {
				got, err := envDecrypt(msg, r.id.Key, r.id.Cert, DecryptOptions{SpoolDir: dir})
				if err != nil {
					t.Fatalf("%s: %v", r.id.Email, err)
				}
				if !bytes.Equal(got, tt.content) {
					t.Fatalf("%s: plaintext differs", r.id.Email)
				}
			}
			if _, err := envDecrypt(msg, f.rsaOther.Key, f.rsaOther.Cert, DecryptOptions{}); !envIsAny(err, ErrNoRecipient) {
				t.Fatalf("stranger: %v", err)
			}
		})
	}
}
