package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/internal/peer"
	"github.com/smimed/smimed/internal/testpki"
)

// Thunderbird's CMS engine (NSS through cmsutil) in both directions. NSS
// does not read AuthEnvelopedData, so only CBC is exchanged.

// envCheckCmsutil fails the test unless the cmsutil on PATH is the real
// NSS tool: without arguments it prints its usage. A stand-in that exits 0
// and does nothing would make every decode "succeed" with no output.
func envCheckCmsutil(t *testing.T) {
	t.Helper()
	path, err := exec.LookPath("cmsutil")
	if err != nil {
		t.Fatalf("cmsutil not installed (apt-get install -y libnss3-tools): %v", err)
	}
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH=/usr/lib/thunderbird")
	out, _ := cmd.CombinedOutput()
	if !bytes.Contains(out, []byte("Usage:")) {
		t.Fatalf("%s is not a working NSS cmsutil (no usage text; output %q): reinstall libnss3-tools", path, out)
	}
}

// TestNSSDecryptsOurs has cmsutil decrypt what NewEncrypter writes.
func TestNSSDecryptsOurs(t *testing.T) {
	f := envPKI(t)
	envCheckCmsutil(t)
	nss := peer.NewNSS(t, f.pki)
	recips := []struct {
		name string
		id   *testpki.Identity
		r    Recipient
	}{
		{"rsa-v15", f.rsa, Recipient{}},
		{"rsa-oaep-sha256", f.rsa, Recipient{Padding: OAEP}},
		{"rsa-oaep-sha1", f.rsa2, Recipient{Padding: OAEP, OAEPHash: crypto.SHA1}},
		{"rsa-oaep-sha512", f.rsa2, Recipient{Padding: OAEP, OAEPHash: crypto.SHA512}},
		{"rsa-ski", f.rsaSKI, Recipient{SubjectKeyID: true}},
		{"p256-sha256", f.p256, Recipient{}},
		{"p256-sha1", f.p256b, Recipient{KDFHash: crypto.SHA1}},
		{"p384-sha384", f.p384, Recipient{KDFHash: crypto.SHA384}},
		{"p521-sha512", f.p521, Recipient{KDFHash: crypto.SHA512}},
		{"p256-ski", f.p256SKI, Recipient{SubjectKeyID: true}},
	}
	for _, rc := range recips {
		nss.AddIdentity(t, rc.id)
	}
	content := envContent(20000)
	for _, c := range []ContentCipher{AES128CBC, AES192CBC, AES256CBC} {
		for _, rc := range recips {
			t.Run(c.String()+"/"+rc.name, func(t *testing.T) {
				r := rc.r
				r.Certificate = rc.id.Cert
				msg := envEncrypt(t, EncryptOptions{Recipients: []Recipient{r}, Cipher: c}, content)
				d, err := nss.DecodeCMS(t, msg, nil)
				if err != nil {
					t.Fatalf("cmsutil: %v", err)
				}
				if !bytes.Equal(d.Content, content) {
					t.Fatalf("cmsutil's plaintext differs (%d bytes)\n%s", len(d.Content), d.Log)
				}
			})
		}
	}
	t.Run("mixed", func(t *testing.T) {
		var rs []Recipient
		for _, rc := range recips {
			r := rc.r
			r.Certificate = rc.id.Cert
			rs = append(rs, r)
		}
		msg := envEncrypt(t, EncryptOptions{Recipients: rs}, content)
		d, err := nss.DecodeCMS(t, msg, nil)
		if err != nil || !bytes.Equal(d.Content, content) {
			t.Fatalf("cmsutil: %v", err)
		}
	})
}

// TestWeDecryptNSS decrypts what `cmsutil -E` writes, to RSA and EC
// recipients and both at once.
func TestWeDecryptNSS(t *testing.T) {
	f := envPKI(t)
	envCheckCmsutil(t)
	nss := peer.NewNSS(t, f.pki)
	content := []byte("Content-Type: text/plain\r\n\r\nfrom NSS\r\n")
	for _, tc := range []struct {
		name string
		ids  []*testpki.Identity
	}{
		{"rsa", []*testpki.Identity{f.rsa}},
		{"p256", []*testpki.Identity{f.p256}},
		{"p384", []*testpki.Identity{f.p384}},
		{"p521", []*testpki.Identity{f.p521}},
		{"mixed", []*testpki.Identity{f.rsa, f.rsa2, f.p256, f.p521}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var certs []*x509.Certificate
			for _, id := range tc.ids {
				certs = append(certs, id.Cert)
			}
			m, err := peer.Parse(nss.Encrypt(t, content, certs...))
			if err != nil {
				t.Fatal(err)
			}
			er, err := NewEnvelopedReader(bytes.NewReader(m.CMS))
			if err != nil {
				t.Fatal(err)
			}
			for _, ri := range er.Recipients() {
				t.Logf("NSS chose %v, %s %s", er.Cipher(), ri.Kind, ri.KeyAlgorithm)
			}
			for _, id := range tc.ids {
				got, err := envDecrypt(m.CMS, id.Key, id.Cert, DecryptOptions{})
				if err != nil {
					t.Fatalf("%s: %v", id.Email, err)
				}
				if !bytes.Equal(got, content) {
					t.Fatalf("%s: plaintext differs: %q", id.Email, got)
				}
			}
		})
	}
}

// TestNSSVector decrypts a message written by Thunderbird's NSS 3.125
// (`cmsutil -E`, kept in the fuzz seed corpus) to the fixed fuzz identities:
// ECDH with a 64-byte ukm and NULL parameters on id-aes128-wrap, which the
// ECC-CMS-SharedInfo must repeat, plus RSA v1.5. It pins that behaviour
// even where cmsutil is not at hand.
func TestNSSVector(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzEnvelopedReader", "nss-ecdh-ukm-rsa"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := envParseCorpusFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	er, err := NewEnvelopedReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var ukm []byte
	for _, e := range er.entries {
		if e.kari != nil {
			ukm = e.kari.ukm
			if !bytes.Equal(e.kari.wrapAlg, []byte{0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x05, 0x05, 0x00}) {
				t.Errorf("wrap algorithm %x, want id-aes128-wrap with NULL", e.kari.wrapAlg)
			}
		}
	}
	if len(ukm) != 64 {
		t.Errorf("ukm of %d bytes, want NSS's 64", len(ukm))
	}
	want := "Content-Type: text/plain\r\n\r\nNSS seed\r\n"
	for _, id := range envFuzzIdentities(t) {
		got, err := envDecrypt(msg, id.key, id.cert, DecryptOptions{})
		if err != nil || string(got) != want {
			t.Errorf("%s: %q %v", id.cert.Subject, got, err)
		}
	}
}
