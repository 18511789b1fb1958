package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	encasn1 "encoding/asn1"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/internal/ber"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// sigFixture is a PKI shared by the tests of one binary run: key generation
// dominates otherwise. Each identity is made once per (key type, SKI).
type sigFixture struct {
	pki *testpki.PKI
	mu  sync.Mutex
	ids map[string]*testpki.Identity
}

var (
	sigFixtureOnce sync.Once
	sigFixtureVal  *sigFixture
)

// sigPKI returns the fixture shared by all tests of this run.
func sigPKI(t testing.TB) *sigFixture {
	t.Helper()
	sigFixtureOnce.Do(func() {
		// testpki.New asks its TB for a directory to write files into;
		// the shared PKI outlives the first test, so it gets one that is
		// removed at once: these tests write their files elsewhere.
		dir, err := os.MkdirTemp("", "cms-signed-test-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		p := testpki.New(&sigTB{TB: t, dir: dir})
		p.Dir = ""
		sigFixtureVal = &sigFixture{pki: p, ids: map[string]*testpki.Identity{}}
	})
	if sigFixtureVal == nil {
		t.Fatal("test PKI could not be made")
	}
	return sigFixtureVal
}

// sigTB hands testpki.New a directory not tied to one test's lifetime.
type sigTB struct {
	testing.TB
	dir string
}

func (s *sigTB) TempDir() string { return s.dir }

// writeRoot writes the root certificate as PEM into dir.
func (f *sigFixture) writeRoot(t testing.TB, dir string) string {
	return sigWrite(t, dir, "root.pem", testpki.CertPEM(f.pki.Root.Cert))
}

// identity returns an end-entity identity with the given key type; with
// ski its certificate carries a subjectKeyIdentifier extension.
func (f *sigFixture) identity(t testing.TB, kt testpki.KeyType, ski bool) *testpki.Identity {
	t.Helper()
	name := string(kt)
	if ski {
		name += "-ski"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if id := f.ids[name]; id != nil {
		return id
	}
	email := name + "@example.org"
	var id *testpki.Identity
	if ski {
		id = sigIssueSKI(t, f.pki, kt, email)
	} else {
		id = f.pki.Issue(t, testpki.Options{Email: email, Key: kt})
	}
	f.ids[name] = id
	return id
}

// sigIssueSKI issues an S/MIME certificate with a subjectKeyIdentifier
// (testpki leaves it out of end-entity certificates, as Go does).
func sigIssueSKI(t testing.TB, p *testpki.PKI, kt testpki.KeyType, email string) *testpki.Identity {
	t.Helper()
	var key crypto.Signer
	var err error
	usage := x509.KeyUsageDigitalSignature
	switch kt {
	case testpki.RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		usage |= x509.KeyUsageKeyEncipherment
	case testpki.P256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case testpki.P384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case testpki.P521:
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		t.Fatalf("sigIssueSKI: key type %s", kt)
	}
	if err != nil {
		t.Fatal(err)
	}
	ski := make([]byte, 20)
	rand.Read(ski)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: email, Organization: []string{"smimed tests"}},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       usage,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{email},
		SubjectKeyId:   ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Intermediate.Cert, key.Public(), p.Intermediate.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testpki.Identity{Cert: cert, Key: key, Chain: []*x509.Certificate{p.Intermediate.Cert}, Email: email}
}

// sigOpts returns SignOptions for id.
func sigOpts(id *testpki.Identity) SignOptions {
	return SignOptions{Signer: id.Key, Certificate: id.Cert, Chain: id.Chain}
}

// sigDetached signs content with a DetachedSigner.
func sigDetached(t testing.TB, opts SignOptions, content []byte) []byte {
	t.Helper()
	s, err := NewDetachedSigner(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(content); err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign()
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// sigOpaque signs content with NewOpaqueSigner, writing it in pieces.
func sigOpaque(t testing.TB, opts SignOptions, content []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewOpaqueSigner(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	for p := content; len(p) > 0; {
		n := min(len(p), 7001)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sigVerifyAll verifies every signer of a parsed message against the
// certificates it carries.
func sigVerifyAll(sd *SignedData, digests map[crypto.Hash][]byte) error {
	if len(sd.Signers) == 0 {
		return malformed("test", "no signers")
	}
	for _, si := range sd.Signers {
		cert := si.FindCertificate(sd.Certificates)
		if cert == nil {
			return malformed("test", "signer certificate not found")
		}
		if err := si.Verify(cert, sd.ContentType, digests); err != nil {
			return err
		}
	}
	return nil
}

// sigCheckDetached parses a detached signature and verifies it over content.
func sigCheckDetached(sig, content []byte) (*SignedData, error) {
	sd, got, err := ParseSignedData(sig)
	if err != nil {
		return nil, err
	}
	if got != nil || !sd.Detached {
		return nil, malformed("test", "detached signature carries content")
	}
	d := NewDigester(sd.DigestAlgorithms...)
	d.Write(content)
	return sd, sigVerifyAll(sd, d.Sums())
}

// sigCheckOpaque reads an opaque message with the streaming reader and
// verifies it; it returns the content.
func sigCheckOpaque(msg []byte) (*SignedData, []byte, error) {
	r, err := NewSignedDataReader(bytes.NewReader(msg))
	if err != nil {
		return nil, nil, err
	}
	content, err := io.ReadAll(r.Content())
	if err != nil {
		return nil, nil, err
	}
	sd, digests, err := r.Finish()
	if err != nil {
		return nil, nil, err
	}
	return sd, content, sigVerifyAll(sd, digests)
}

// sigOpenSSL runs openssl with args in dir and returns its stdout; it
// fails the test when openssl is missing or exits non-zero.
func sigOpenSSL(t testing.TB, dir string, args ...string) []byte {
	t.Helper()
	out, err := sigOpenSSLErr(t, dir, args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func sigOpenSSLErr(t testing.TB, dir string, args ...string) ([]byte, error) {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required for the CMS interop tests: %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// sigWrite writes data to a file in dir and returns its path.
func sigWrite(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sigContent returns n bytes of deterministic, varied content.
func sigContent(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// sigSignedDataVersion digs the SignedData version out of a message.
func sigSignedDataVersion(t testing.TB, msg []byte) int64 {
	t.Helper()
	der, err := ber.ToDER(msg)
	if err != nil {
		t.Fatal(err)
	}
	s := cryptobyte.String(der)
	var ci, content, sd cryptobyte.String
	var v int64
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.SkipASN1(cbasn1.OBJECT_IDENTIFIER) ||
		!ci.ReadASN1(&content, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!content.ReadASN1(&sd, cbasn1.SEQUENCE) || !sd.ReadASN1Integer(&v) {
		t.Fatal("cannot find the SignedData version")
	}
	return v
}

// sigFlip returns a copy of msg with the byte at the first occurrence of
// needle (plus off) changed.
func sigFlip(t testing.TB, msg, needle []byte, off int) []byte {
	t.Helper()
	i := bytes.Index(msg, needle)
	if i < 0 {
		t.Fatal("needle not found in message")
	}
	out := bytes.Clone(msg)
	out[i+off] ^= 0x01
	return out
}

// sigParts is a SignedData taken apart, to be reassembled with changes.
type sigParts struct {
	version      int64
	digestAlgs   []byte   // the whole SET
	eContentType []int    // eContentType
	eContent     []byte   // the element inside [0], nil when detached
	certs        [][]byte // certificate entries; nil for no certificates field
	crls         []byte   // the whole [1] element, or nil
	crlsFirst    bool     // put crls before certificates
	signers      [][]byte // SignerInfo elements
	noSigners    bool     // leave out signerInfos altogether
	indefinite   bool     // re-encode with indefinite lengths and segmented strings
}

func (p sigParts) clone() sigParts {
	q := p
	q.certs = slices.Clone(p.certs)
	q.signers = slices.Clone(p.signers)
	return q
}

// with returns the assembled message after mod.
func (p sigParts) with(t testing.TB, mod func(*sigParts)) []byte {
	q := p.clone()
	mod(&q)
	return q.assemble(t)
}

// sigSplit takes a DER ContentInfo{SignedData} apart.
func sigSplit(t testing.TB, msg []byte) sigParts {
	t.Helper()
	s := cryptobyte.String(msg)
	var ci, c0, sd, encap cryptobyte.String
	var p sigParts
	var algs cryptobyte.String
	var oid []int
	if !s.ReadASN1(&ci, cbasn1.SEQUENCE) || !ci.SkipASN1(cbasn1.OBJECT_IDENTIFIER) ||
		!ci.ReadASN1(&c0, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!c0.ReadASN1(&sd, cbasn1.SEQUENCE) || !sd.ReadASN1Integer(&p.version) ||
		!sd.ReadASN1Element(&algs, cbasn1.SET) || !sd.ReadASN1(&encap, cbasn1.SEQUENCE) {
		t.Fatal("sigSplit: bad message")
	}
	p.digestAlgs = []byte(algs)
	var eoid encasn1.ObjectIdentifier
	if !encap.ReadASN1ObjectIdentifier(&eoid) {
		t.Fatal("sigSplit: bad eContentType")
	}
	oid = eoid
	p.eContentType = oid
	if !encap.Empty() {
		var e0 cryptobyte.String
		encap.ReadASN1(&e0, cbasn1.Tag(0).Constructed().ContextSpecific())
		p.eContent = []byte(e0)
	}
	if sd.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		var certs cryptobyte.String
		sd.ReadASN1(&certs, cbasn1.Tag(0).Constructed().ContextSpecific())
		p.certs = [][]byte{}
		for !certs.Empty() {
			var c cryptobyte.String
			var tag cbasn1.Tag
			certs.ReadAnyASN1Element(&c, &tag)
			p.certs = append(p.certs, []byte(c))
		}
	}
	if sd.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()) {
		var crls cryptobyte.String
		sd.ReadASN1Element(&crls, cbasn1.Tag(1).Constructed().ContextSpecific())
		p.crls = []byte(crls)
	}
	var sis cryptobyte.String
	if !sd.ReadASN1(&sis, cbasn1.SET) || !sd.Empty() {
		t.Fatal("sigSplit: bad signerInfos")
	}
	for !sis.Empty() {
		var si cryptobyte.String
		sis.ReadASN1Element(&si, cbasn1.SEQUENCE)
		p.signers = append(p.signers, []byte(si))
	}
	return p
}

// assemble encodes the parts as a ContentInfo.
func (p sigParts) assemble(t testing.TB) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(p.version)
				b.AddBytes(p.digestAlgs)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(p.eContentType)
					if p.eContent != nil {
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddBytes(p.eContent)
						})
					}
				})
				if p.crlsFirst && p.crls != nil {
					b.AddBytes(p.crls)
				}
				if p.certs != nil {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						for _, c := range p.certs {
							b.AddBytes(c)
						}
					})
				}
				if !p.crlsFirst && p.crls != nil {
					b.AddBytes(p.crls)
				}
				if !p.noSigners {
					b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
						for _, s := range p.signers {
							b.AddBytes(s)
						}
					})
				}
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if p.indefinite {
		return sigIndefinite(der)
	}
	return der
}

// sigIndefinite re-encodes BER with every constructed element in the
// indefinite form and every OCTET STRING longer than one byte split into
// a constructed string of two segments. Elements it cannot frame (as in
// the deliberately broken ones) are copied as they are.
func sigIndefinite(in []byte) []byte {
	var out []byte
	s := cryptobyte.String(in)
	for !s.Empty() {
		var elem, body cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1Element(&elem, &tag) {
			return append(out, s...)
		}
		e := elem
		e.ReadAnyASN1(&body, &tag)
		switch {
		case tag&0x20 != 0:
			out = append(out, byte(tag), 0x80)
			out = append(out, sigIndefinite(body)...)
			out = append(out, 0, 0)
		case tag == cbasn1.OCTET_STRING && len(body) > 1:
			h := len(body) / 2
			out = append(out, 0x24, 0x80)
			out = ber.AppendHeader(out, 0, ber.TagOctetString, false, int64(h))
			out = append(out, body[:h]...)
			out = ber.AppendHeader(out, 0, ber.TagOctetString, false, int64(len(body)-h))
			out = append(out, body[h:]...)
			out = append(out, 0, 0)
		default:
			out = append(out, elem...)
		}
	}
	return out
}

// sigContentInfo wraps content in a ContentInfo of the given type.
func sigContentInfo(oid []int, content []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(content) })
	})
	return b.BytesOrPanic()
}

// sigBigAttrs replaces a SignerInfo's signed attributes with one attribute
// just over the size limit.
func sigBigAttrs(t testing.TB, si []byte) []byte {
	t.Helper()
	s := cryptobyte.String(si)
	var seq, ver, sid, dalg cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Element(&ver, cbasn1.INTEGER) ||
		!seq.ReadAnyASN1Element(&sid, &tag) || !seq.ReadASN1Element(&dalg, cbasn1.SEQUENCE) ||
		!seq.SkipASN1(cbasn1.Tag(0).Constructed().ContextSpecific()) {
		t.Fatal("sigBigAttrs: bad SignerInfo")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(ver)
		b.AddBytes(sid)
		b.AddBytes(dalg)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier([]int{1, 2, 3, 4})
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1OctetString(make([]byte, maxSignedAttrsSize))
				})
			})
		})
		b.AddBytes(seq)
	})
	return b.BytesOrPanic()
}

// sigSignWithHash makes a detached RSA PKCS #1 v1.5 signature with a
// digest the public API refuses (MD5, SHA-1), through the internals.
func sigSignWithHash(t testing.TB, id *testpki.Identity, h crypto.Hash, content []byte) []byte {
	t.Helper()
	core, err := newSignerCore(sigOpts(id))
	if err != nil {
		t.Fatal(err)
	}
	if core.kind != sigPKCS1v15 {
		t.Fatal("sigSignWithHash needs an RSA identity")
	}
	core.hash = h
	ds := &DetachedSigner{core: core, h: h.New()}
	ds.Write(content)
	sig, err := ds.Sign()
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// sigP224Cert returns a self-signed certificate with a P-224 key.
func sigP224Cert(t testing.TB) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "p224"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// sigMethod1KeyID computes the RFC 5280 method 1 key identifier with
// encoding/asn1, independently of the code under test.
func sigMethod1KeyID(t testing.TB, cert *x509.Certificate) []byte {
	t.Helper()
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey encasn1.BitString
	}
	if _, err := encasn1.Unmarshal(cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:]
}
