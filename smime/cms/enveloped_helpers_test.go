package cms

// Test helpers of the EnvelopedData half. Every name starts with "env" so it
// cannot collide with the SignedData half's helpers in the same package.

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/internal/ber"
)

// envFixture holds identities shared by all tests of this half: generating
// RSA keys is the slow part of the suite.
type envFixture struct {
	pki                     *testpki.PKI
	rsa, rsa2, rsaOther     *testpki.Identity
	p256, p384, p521, p256b *testpki.Identity
	rsaSKI, p256SKI         *testpki.Identity
	rsa4096                 *testpki.Identity
	byName                  map[string]*testpki.Identity
}

var (
	envFixOnce sync.Once
	envFix     *envFixture
)

// envTB lets the fixture outlive the test that happened to create it: the
// PKI's temporary directory is one of our own, never removed by a test's
// cleanup.
type envTB struct {
	testing.TB
	dir string
}

func (e envTB) TempDir() string { return e.dir }

func envPKI(t testing.TB) *envFixture {
	t.Helper()
	envFixOnce.Do(func() {
		dir, err := os.MkdirTemp("", "smimed-env-pki-")
		if err != nil {
			t.Fatal(err)
		}
		tb := envTB{TB: t, dir: dir}
		p := testpki.New(tb)
		f := &envFixture{pki: p}
		f.rsa = p.Issue(tb, testpki.Options{Email: "rsa@example.org", Key: testpki.RSA2048})
		f.rsa2 = p.Issue(tb, testpki.Options{Email: "rsa2@example.org", Key: testpki.RSA2048})
		f.rsaOther = p.Issue(tb, testpki.Options{Email: "other@example.org", Key: testpki.RSA2048})
		f.rsa4096 = p.Issue(tb, testpki.Options{Email: "rsa4096@example.org", Key: testpki.RSA4096})
		f.p256 = p.Issue(tb, testpki.Options{Email: "p256@example.org", Key: testpki.P256})
		f.p256b = p.Issue(tb, testpki.Options{Email: "p256b@example.org", Key: testpki.P256})
		f.p384 = p.Issue(tb, testpki.Options{Email: "p384@example.org", Key: testpki.P384})
		f.p521 = p.Issue(tb, testpki.Options{Email: "p521@example.org", Key: testpki.P521})
		f.rsaSKI = envIssueSKI(tb, p, testpki.RSA2048, "rsa-ski@example.org")
		f.p256SKI = envIssueSKI(tb, p, testpki.P256, "p256-ski@example.org")
		f.byName = map[string]*testpki.Identity{
			"rsa": f.rsa, "rsa2": f.rsa2, "rsaOther": f.rsaOther, "rsa4096": f.rsa4096,
			"p256": f.p256, "p256b": f.p256b, "p384": f.p384, "p521": f.p521,
			"rsaSKI": f.rsaSKI, "p256SKI": f.p256SKI,
		}
		envFix = f
	})
	if envFix == nil {
		t.Fatal("test PKI could not be built")
	}
	return envFix
}

// envIssueSKI issues an end-entity certificate carrying a
// subjectKeyIdentifier (testpki adds one only to CA certificates).
func envIssueSKI(t testing.TB, p *testpki.PKI, kt testpki.KeyType, email string) *testpki.Identity {
	t.Helper()
	var key crypto.Signer
	var err error
	usage := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	switch kt {
	case testpki.RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case testpki.P256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		usage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
	default:
		t.Fatalf("envIssueSKI: key type %s", kt)
	}
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	ski := sha1.Sum(spki)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: email, Organization: []string{"smimed tests"}},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       usage,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{email},
		SubjectKeyId:   ski[:],
	}
	issuer := p.Intermediate
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testpki.Identity{Cert: cert, Key: key, Chain: []*x509.Certificate{issuer.Cert}, Email: email}
}

// envContent returns n bytes of deterministic, non-repeating content.
func envContent(n int) []byte {
	out := make([]byte, n)
	var x uint32 = 2463534242
	for i := range out {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		out[i] = byte(x)
	}
	return out
}

// envEncrypt encrypts content and returns the message.
func envEncrypt(t testing.TB, opts EncryptOptions, content []byte) []byte {
	t.Helper()
	return envEncryptHooks(t, opts, encryptHooks{}, content)
}

func envEncryptHooks(t testing.TB, opts EncryptOptions, hooks encryptHooks, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newEncrypter(&buf, opts, hooks)
	if err != nil {
		t.Fatalf("NewEncrypter: %v", err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// envDecrypt parses msg and decrypts it with key and cert, returning the
// plaintext read (even on error) and the first error met.
func envDecrypt(msg []byte, key crypto.PrivateKey, cert *x509.Certificate, opts DecryptOptions) ([]byte, error) {
	return envDecryptFrom(bytes.NewReader(msg), key, cert, opts)
}

func envDecryptFrom(r io.Reader, key crypto.PrivateKey, cert *x509.Certificate, opts DecryptOptions) ([]byte, error) {
	er, err := NewEnvelopedReader(r)
	if err != nil {
		return nil, err
	}
	rc, err := er.Decrypt(key, cert, opts)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// envCountingKey wraps a private key and counts its private-key operations.
type envCountingKey struct {
	key   crypto.PrivateKey
	calls atomic.Int32
}

func (c *envCountingKey) Public() crypto.PublicKey {
	return c.key.(interface{ Public() crypto.PublicKey }).Public()
}

func (c *envCountingKey) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	c.calls.Add(1)
	return c.key.(crypto.Decrypter).Decrypt(r, msg, opts)
}

// envKeyAgreer adapts an *ecdsa.PrivateKey to KeyAgreer, counting ECDH
// operations. Its Public returns the *ecdsa.PublicKey, as a PKCS#11 key
// would.
type envKeyAgreer struct {
	key   *ecdsa.PrivateKey
	calls atomic.Int32
}

func (k *envKeyAgreer) Public() crypto.PublicKey { return &k.key.PublicKey }

func (k *envKeyAgreer) ECDH(remote *ecdh.PublicKey) ([]byte, error) {
	k.calls.Add(1)
	priv, err := k.key.ECDH()
	if err != nil {
		return nil, err
	}
	return priv.ECDH(remote)
}

// envCounted wraps an identity's key for counting: a crypto.Decrypter for
// RSA, a KeyAgreer for EC.
type envCounted interface {
	count() int
}

func (c *envCountingKey) count() int { return int(c.calls.Load()) }
func (k *envKeyAgreer) count() int   { return int(k.calls.Load()) }

func envCountedKey(id *testpki.Identity) (crypto.PrivateKey, envCounted) {
	if ek, ok := id.Key.(*ecdsa.PrivateKey); ok {
		k := &envKeyAgreer{key: ek}
		return k, k
	}
	k := &envCountingKey{key: id.Key}
	return k, k
}

// envOpenSSL returns the path of the openssl binary. A missing OpenSSL fails
// the test: an interop test must never be skipped.
func envOpenSSL(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not installed (apt-get install -y openssl): %v", err)
	}
	return path
}

// envRunOpenSSL runs openssl with args in dir and returns stdout.
func envRunOpenSSL(t testing.TB, dir string, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(envOpenSSL(t), args...)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), errors.New(err.Error() + ": " + errb.String())
	}
	return out.Bytes(), nil
}

// envWriteID writes an identity's certificate and key as PEM into dir.
func envWriteID(t testing.TB, dir string, id *testpki.Identity) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath, _ = id.WriteFiles(t, dir)
	return certPath, keyPath
}

// envWrite writes data to dir/name and returns the path.
func envWrite(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// envParts locates the pieces of a message by walking it with the BER
// decoder: the RecipientInfos SET as received, the version, and the byte
// range of the encrypted content's contents.
type envParts struct {
	version          int64
	recipientInfos   []byte
	contentStart     int64      // offset of the [0] encryptedContent header
	contentEnd       int64      // offset just past it
	afterContentEnds int64      // offset of the first byte after EncryptedContentInfo
	segments         [][2]int64 // byte ranges of the ciphertext in the message
}

// ciphertextOffset returns the message offset of ciphertext byte i
// (negative i counts from the end).
func (p envParts) ciphertextOffset(t testing.TB, i int64) int64 {
	t.Helper()
	var total int64
	for _, s := range p.segments {
		total += s[1] - s[0]
	}
	if i < 0 {
		i += total
	}
	for _, s := range p.segments {
		if n := s[1] - s[0]; i < n {
			return s[0] + i
		} else {
			i -= n
		}
	}
	t.Fatalf("ciphertext byte %d out of range (%d bytes)", i, total)
	return 0
}

func envSplit(t testing.TB, msg []byte) envParts {
	t.Helper()
	d := ber.NewDecoder(bytes.NewReader(msg))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("walking message: %v", err)
		}
	}
	var p envParts
	_, err := d.Next() // ContentInfo
	must(err)
	must(d.Enter())
	_, err = d.Next() // contentType
	must(err)
	must(d.Skip())
	_, err = d.Next() // [0]
	must(err)
	must(d.Enter())
	_, err = d.Next() // EnvelopedData
	must(err)
	must(d.Enter())
	_, err = d.Next() // version
	must(err)
	v, err := d.ReadDER(16)
	must(err)
	p.version = int64(v[len(v)-1])
	h, err := d.Next()
	must(err)
	if h.Is(ber.ClassContext, 0) {
		must(d.Skip())
		_, err = d.Next()
		must(err)
	}
	p.recipientInfos, err = d.ReadRaw(1 << 20)
	must(err)
	_, err = d.Next() // EncryptedContentInfo
	must(err)
	must(d.Enter())
	_, err = d.Next()
	must(err)
	must(d.Skip())
	_, err = d.Next()
	must(err)
	must(d.Skip())
	p.contentStart = d.Offset()
	h, err = d.Next()
	must(err)
	if h.Constructed {
		must(d.Enter())
		for {
			_, err := d.Next()
			if err == io.EOF {
				break
			}
			must(err)
			start := d.Offset()
			must(d.Skip())
			p.segments = append(p.segments, [2]int64{start, d.Offset()})
		}
	} else {
		start := d.Offset()
		must(d.Skip())
		p.segments = append(p.segments, [2]int64{start, d.Offset()})
	}
	p.contentEnd = d.Offset()
	_, err = d.Next()
	if err != io.EOF {
		t.Fatalf("EncryptedContentInfo not closed: %v", err)
	}
	p.afterContentEnds = d.Offset()
	return p
}

// envKeyedRand is a Rand whose first bytes are fixed (so that the content
// key and IV are known to a test) and the rest from crypto/rand.
func envKeyedRand(prefix []byte) io.Reader {
	return io.MultiReader(bytes.NewReader(prefix), rand.Reader)
}

// envFlip returns a copy of msg with the byte at off XORed with x.
func envFlip(msg []byte, off int64, x byte) []byte {
	out := append([]byte(nil), msg...)
	out[off] ^= x
	return out
}

// envIsAny reports whether err wraps one of targets.
func envIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
