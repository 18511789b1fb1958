package peer

import (
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// GPGSM runs GnuPG's gpgsm with a home directory of its own (and so a
// gpg-agent of its own, killed when the test ends). gpgsm 2.2 handles RSA
// only: no EC keys (importing one crashes it), no OAEP, GCM or PSS. Calls
// are serialised: gpgsm writes to its keybox even while verifying.
type GPGSM struct {
	gpgsm, gpgconf string
	home           string
	dir            string // working files

	mu     sync.Mutex
	known  map[string]bool // certificate DER imported
	secret map[string]bool // identity imported with its key
}

// gpgsmPassphrase protects imported keys inside the agent.
const gpgsmPassphrase = "peer-gpgsm-passphrase"

// NewGPGSM prepares a home: CRL checks off (the test PKI has no CRLs and no
// dirmngr runs), loopback pinentry allowed, a cheap key-protection
// iteration count, the PKI's root trusted for
// S/MIME in trustlist.txt ("<SHA-1 fingerprint> S relax"), root and
// intermediate imported.
func NewGPGSM(tb testing.TB, pki *testpki.PKI) *GPGSM {
	tb.Helper()
	g := &GPGSM{
		gpgsm:   need(tb, "gpgsm", "gpgsm"),
		gpgconf: need(tb, "gpgconf", "gpgconf"),
		dir:     tb.TempDir(),
		known:   map[string]bool{},
		secret:  map[string]bool{},
	}
	need(tb, "gpg-agent", "gpg-agent")
	// The agent's socket lives in the home and a Unix socket path must stay
	// under 108 bytes, so the home is a short directory in os.TempDir, not
	// the (long) test temp dir.
	home, err := os.MkdirTemp("", "gpgsm")
	if err != nil {
		tb.Fatalf("peer: %v", err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		tb.Fatalf("peer: %v", err)
	}
	g.home = home
	tb.Cleanup(func() {
		// Kill the agent this home started; then remove the home.
		_, _, _ = run(tb, command{name: g.gpgconf, args: []string{"--homedir", home, "--kill", "all"}})
		os.RemoveAll(home)
	})
	writeFile(tb, filepath.Join(home, "gpgsm.conf"), []byte(
		"disable-crl-checks\ndisable-trusted-cert-crl-check\ndisable-dirmngr\ndisable-ocsp\n"))
	// s2k-count: the agent re-derives the key-protection key from the
	// cached passphrase on every private-key use; with the count it
	// calibrates itself this takes seconds per signature on a busy machine.
	writeFile(tb, filepath.Join(home, "gpg-agent.conf"), []byte("allow-loopback-pinentry\ns2k-count 65536\n"))
	writeFile(tb, filepath.Join(home, "trustlist.txt"), []byte(colonFingerprint(pki.Root.Cert)+" S relax\n"))
	g.mu.Lock()
	defer g.mu.Unlock()
	g.importCertsLocked(tb, pki.Root.Cert, pki.Intermediate.Cert)
	return g
}

// Home returns the gpgsm home directory.
func (g *GPGSM) Home() string { return g.home }

// colonFingerprint is the SHA-1 fingerprint as colon-separated upper-case
// hex, the form trustlist.txt uses.
func colonFingerprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// fingerprint is the SHA-1 fingerprint as gpgsm takes it for -u and -r.
func fingerprint(c *x509.Certificate) string {
	return fmt.Sprintf("0x%X", sha1.Sum(c.Raw))
}

func (g *GPGSM) cmd(stdin []byte, args ...string) command {
	return command{name: g.gpgsm, args: append([]string{"--homedir", g.home, "--batch", "--no-tty"}, args...), stdin: stdin}
}

// withPassphrase adds the loopback pinentry options that answer the agent's
// passphrase inquiry from stdin.
func (g *GPGSM) withPassphrase(args ...string) command {
	return g.cmd([]byte(gpgsmPassphrase+"\n"), append([]string{"--pinentry-mode", "loopback", "--passphrase-fd", "0"}, args...)...)
}

func (g *GPGSM) importCertsLocked(tb testing.TB, certs ...*x509.Certificate) {
	tb.Helper()
	var pem []byte
	for _, c := range certs {
		if !g.known[string(c.Raw)] {
			pem = append(pem, testpki.CertPEM(c)...)
		}
	}
	if pem == nil {
		return
	}
	d := workDir(tb, g.dir)
	p := filepath.Join(d, "certs.pem")
	writeFile(tb, p, pem)
	mustRun(tb, g.cmd(nil, "--import", p))
	for _, c := range certs {
		g.known[string(c.Raw)] = true
	}
}

// AddCert imports a recipient's certificate.
func (g *GPGSM) AddCert(tb testing.TB, c *x509.Certificate) {
	tb.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.importCertsLocked(tb, c)
}

// AddIdentity imports an RSA identity from a legacy (PBE-SHA1-3DES) PKCS#12
// file, the only kind gpgsm 2.2 reads.
func (g *GPGSM) AddIdentity(tb testing.TB, id *testpki.Identity) {
	tb.Helper()
	if _, ok := id.Key.(*rsa.PrivateKey); !ok {
		tb.Fatalf("peer: gpgsm 2.2 handles RSA keys only (an EC PKCS#12 crashes it), got %T", id.Key)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.secret[string(id.Cert.Raw)] {
		return
	}
	d := workDir(tb, g.dir)
	p := filepath.Join(d, "id.p12")
	writeFile(tb, p, id.PKCS12(tb, gpgsmPassphrase, true))
	_, stderr := mustRun(tb, g.withPassphrase("--import", p))
	if !strings.Contains(string(stderr), "secret keys imported: 1") {
		tb.Fatalf("peer: gpgsm imported no secret key from the PKCS#12 file:\n%s", stderr)
	}
	g.secret[string(id.Cert.Raw)] = true
	g.known[string(id.Cert.Raw)] = true
}

// GPGSMSign says how gpgsm signs.
type GPGSMSign struct {
	// Opaque makes application/pkcs7-mime; smime-type=signed-data instead
	// of multipart/signed.
	Opaque bool
	// Digest is gpgsm's --digest-algo ("SHA256", "SHA384", "SHA512");
	// gpgsm's choice (SHA-256) when empty.
	Digest string
}

// Sign signs msg, a canonical MIME entity, with id (imported if needed) and
// wraps gpgsm's CMS into an S/MIME message.
func (g *GPGSM) Sign(tb testing.TB, id *testpki.Identity, msg []byte, opt GPGSMSign) []byte {
	tb.Helper()
	g.AddIdentity(tb, id)
	d := workDir(tb, g.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out.p7")
	writeFile(tb, in, msg)
	args := []string{"--status-fd", "1", "-u", fingerprint(id.Cert), "--output", out}
	micalg := "sha-256"
	if opt.Digest != "" {
		args = append(args, "--digest-algo", opt.Digest)
		micalg = Micalg(opt.Digest)
	}
	if opt.Opaque {
		args = append(args, "--sign", in)
	} else {
		args = append(args, "--detach-sign", in)
	}
	g.mu.Lock()
	func() {
		defer g.mu.Unlock()
		mustRun(tb, g.withPassphrase(args...))
	}()
	der := readFile(tb, out)
	if opt.Opaque {
		return WrapPKCS7MIME(der, SignedData)
	}
	return WrapSigned(msg, der, micalg)
}

// Verify checks a signed S/MIME message (either form). The verdict is good
// when gpgsm reports GOODSIG and VALIDSIG, full trust, and nothing bad.
// Status lists gpgsm's status keywords in order.
func (g *GPGSM) Verify(tb testing.TB, msg []byte) Verdict {
	tb.Helper()
	m, err := Parse(msg)
	if err != nil {
		return Verdict{Status: "error", Log: err.Error()}
	}
	d := workDir(tb, g.dir)
	in, out := filepath.Join(d, "in.p7"), filepath.Join(d, "out")
	writeFile(tb, in, m.CMS)
	args := []string{"--status-fd", "1", "--verify"}
	var content []byte
	if m.MediaType == "multipart/signed" {
		content = Canonical(m.Content)
		c := filepath.Join(d, "content")
		writeFile(tb, c, content)
		args = append(args, in, c)
	} else {
		args = []string{"--status-fd", "1", "--output", out, "--verify", in}
	}
	c := g.cmd(nil, args...)
	g.mu.Lock()
	stdout, stderr, runErr := run(tb, c)
	g.mu.Unlock()
	keys := statusKeywords(stdout)
	v := Verdict{Status: strings.Join(keys, " "), Log: c.String() + "\n" + string(stdout) + string(stderr)}
	if runErr != nil {
		v.Log += "\n" + runErr.Error()
	}
	v.Good = runErr == nil && contains(keys, "GOODSIG") && contains(keys, "VALIDSIG") &&
		(contains(keys, "TRUST_FULLY") || contains(keys, "TRUST_ULTIMATE"))
	for _, bad := range []string{"BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "TRUST_UNDEFINED", "TRUST_NEVER"} {
		if contains(keys, bad) {
			v.Good = false
		}
	}
	if content != nil {
		v.Content = content
	} else if b, err := os.ReadFile(out); err == nil {
		v.Content = b
	}
	return v
}

// statusKeywords returns the keywords of gpgsm's "[GNUPG:] KEYWORD ..."
// status lines.
func statusKeywords(out []byte) []string {
	var keys []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "[GNUPG:]" {
			keys = append(keys, f[1])
		}
	}
	return keys
}

// Encrypt envelopes msg, a canonical MIME entity, for the certificates
// (imported as needed). cipher is gpgsm's --cipher-algo: "AES" (AES-128-CBC,
// the default when empty), "AES256", "3DES". Key transport is RSA PKCS#1
// v1.5.
func (g *GPGSM) Encrypt(tb testing.TB, msg []byte, cipher string, recipients ...*x509.Certificate) []byte {
	tb.Helper()
	if len(recipients) == 0 {
		tb.Fatal("peer: GPGSM.Encrypt without recipients")
	}
	d := workDir(tb, g.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out.p7m")
	writeFile(tb, in, msg)
	args := []string{"--status-fd", "1", "--output", out}
	if cipher != "" {
		args = append(args, "--cipher-algo", cipher)
	}
	for _, c := range recipients {
		args = append(args, "-r", fingerprint(c))
	}
	args = append(args, "--encrypt", in)
	g.mu.Lock()
	func() {
		defer g.mu.Unlock()
		g.importCertsLocked(tb, recipients...)
		mustRun(tb, g.cmd(nil, args...))
	}()
	return WrapPKCS7MIME(readFile(tb, out), EnvelopedData)
}

// Decrypt opens an enveloped S/MIME message with any imported identity's key
// and returns the content exactly as decrypted.
func (g *GPGSM) Decrypt(tb testing.TB, msg []byte) ([]byte, error) {
	tb.Helper()
	m, err := Parse(msg)
	if err != nil {
		return nil, err
	}
	d := workDir(tb, g.dir)
	in, out := filepath.Join(d, "in.p7m"), filepath.Join(d, "out")
	writeFile(tb, in, m.CMS)
	g.mu.Lock()
	defer g.mu.Unlock()
	stdout, _, err := run(tb, g.withPassphrase("--status-fd", "1", "--output", out, "--decrypt", in))
	if err != nil {
		return nil, err
	}
	if !contains(statusKeywords(stdout), "DECRYPTION_OKAY") {
		return nil, fmt.Errorf("peer: gpgsm --decrypt exited 0 without DECRYPTION_OKAY:\n%s", stdout)
	}
	return readFile(tb, out), nil
}
