// Package testpki builds throw-away certificate authorities and S/MIME
// identities for tests: a root, an intermediate, and end-entity certificates
// with RSA or EC keys, written out as PEM and PKCS#12 files for the real peers
// (OpenSSL, NSS, gpgsm) that the interop tests run.
//
// Nothing outside tests may import it.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// KeyType names the kind of key an identity gets.
type KeyType string

// The key types tests can ask for.
const (
	RSA1024 KeyType = "rsa1024"
	RSA2048 KeyType = "rsa2048"
	RSA3072 KeyType = "rsa3072"
	RSA4096 KeyType = "rsa4096"
	P256    KeyType = "p256"
	P384    KeyType = "p384"
	P521    KeyType = "p521"
)

// IsEC reports whether k is an elliptic-curve key type.
func (k KeyType) IsEC() bool { return strings.HasPrefix(string(k), "p") }

// Identity is a certificate, its private key and the chain above it.
type Identity struct {
	// Cert is the identity's own certificate.
	Cert *x509.Certificate
	// Key is the private key: *rsa.PrivateKey or *ecdsa.PrivateKey.
	Key crypto.Signer
	// Chain holds the issuing certificates from the issuer up to, but not
	// including, the root.
	Chain []*x509.Certificate
	// Email is the rfc822Name in the certificate, if any.
	Email string
}

// PKI is a root CA with one intermediate CA below it.
type PKI struct {
	// Root is the self-signed trust anchor.
	Root *Identity
	// Intermediate is issued by Root and issues end entities by default.
	Intermediate *Identity
	// Dir is a per-test temporary directory for files the PKI writes.
	Dir string
}

// Options describe an end-entity certificate to issue.
type Options struct {
	// Email goes into the subjectAltName and the subject's CN.
	Email string
	// Key is the key type; RSA2048 when empty.
	Key KeyType
	// NotBefore and NotAfter default to an hour ago and a year from now.
	NotBefore, NotAfter time.Time
	// KeyUsage defaults to digitalSignature plus keyEncipherment (RSA) or
	// keyAgreement (EC).
	KeyUsage x509.KeyUsage
	// ExtKeyUsage defaults to emailProtection. Set NoExtKeyUsage to omit it.
	ExtKeyUsage []x509.ExtKeyUsage
	// NoExtKeyUsage omits the extended key usage extension.
	NoExtKeyUsage bool
	// Issuer signs the certificate; the PKI's intermediate when nil.
	Issuer *Identity
	// SignatureAlgorithm is the issuer's signature algorithm, e.g.
	// x509.SHA1WithRSA for a weak certificate; Go's default when zero.
	SignatureAlgorithm x509.SignatureAlgorithm
	// IssuingCertificateURL are the caIssuers URLs of the Authority
	// Information Access extension; none when empty.
	IssuingCertificateURL []string
}

// New makes a root (RSA 2048, so gpgsm accepts the chain) and an
// intermediate CA for one test.
func New(tb testing.TB) *PKI {
	tb.Helper()
	now := time.Now()
	rootKey := newKey(tb, RSA2048)
	root := mustIssue(tb, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "smimed test root", Organization: []string{"smimed tests"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, rootKey, nil)
	interKey := newKey(tb, RSA2048)
	inter := mustIssue(tb, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "smimed test intermediate", Organization: []string{"smimed tests"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, interKey, root)
	return &PKI{Root: root, Intermediate: inter, Dir: tb.TempDir()}
}

// Issue makes an end-entity S/MIME identity.
func (p *PKI) Issue(tb testing.TB, o Options) *Identity {
	tb.Helper()
	if o.Key == "" {
		o.Key = RSA2048
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(365 * 24 * time.Hour)
	}
	if o.KeyUsage == 0 {
		o.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
		if o.Key.IsEC() {
			o.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
		}
	}
	if o.ExtKeyUsage == nil && !o.NoExtKeyUsage {
		o.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}
	}
	if o.Issuer == nil {
		o.Issuer = p.Intermediate
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: o.Email, Organization: []string{"smimed tests"}},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              o.KeyUsage,
		ExtKeyUsage:           o.ExtKeyUsage,
		SignatureAlgorithm:    o.SignatureAlgorithm,
		IssuingCertificateURL: o.IssuingCertificateURL,
	}
	if o.Email != "" {
		tmpl.EmailAddresses = []string{o.Email}
	}
	id := mustIssue(tb, tmpl, newKey(tb, o.Key), o.Issuer)
	id.Email = o.Email
	return id
}

// TSAOptions describe a time-stamping authority certificate to issue.
type TSAOptions struct {
	// Name is the subject's CN; "smimed test TSA" when empty.
	Name string
	// Key is the key type; RSA2048 when empty.
	Key KeyType
	// NotBefore and NotAfter default to an hour ago and a year from now.
	NotBefore, NotAfter time.Time
	// Issuer signs the certificate; the PKI's intermediate when nil.
	Issuer *Identity
	// NonCritical marks the extended key usage extension non-critical
	// (RFC 3161 asks for critical; OpenSSL's TSA refuses to sign with it).
	NonCritical bool
}

// oidExtKeyUsage and oidTimeStamping build the RFC 3161 extended key
// usage extension by hand: Go writes ExtKeyUsage non-critical.
var (
	oidExtKeyUsage  = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
)

// IssueTSA makes a time-stamping authority identity (RFC 3161 section
// 2.3): key usage digitalSignature and nonRepudiation, and an extended key
// usage of id-kp-timeStamping alone, marked critical. It has no e-mail
// address.
func (p *PKI) IssueTSA(tb testing.TB, o TSAOptions) *Identity {
	tb.Helper()
	if o.Name == "" {
		o.Name = "smimed test TSA"
	}
	if o.Key == "" {
		o.Key = RSA2048
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(365 * 24 * time.Hour)
	}
	if o.Issuer == nil {
		o.Issuer = p.Intermediate
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidTimeStamping})
	if err != nil {
		tb.Fatalf("testpki: marshal extended key usage: %v", err)
	}
	tmpl := &x509.Certificate{
		Subject:         pkix.Name{CommonName: o.Name, Organization: []string{"smimed tests"}},
		NotBefore:       o.NotBefore,
		NotAfter:        o.NotAfter,
		KeyUsage:        x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: !o.NonCritical, Value: eku}},
	}
	return mustIssue(tb, tmpl, newKey(tb, o.Key), o.Issuer)
}

// Roots returns a pool holding only the PKI's root.
func (p *PKI) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.Root.Cert)
	return pool
}

// WriteRoot writes the root certificate as PEM and returns its path.
func (p *PKI) WriteRoot(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(p.Dir, "root.pem")
	writeFile(tb, path, CertPEM(p.Root.Cert))
	return path
}

// WriteFiles writes the identity's certificate, PKCS#8 key and chain (the
// intermediates, no root) as PEM under dir and returns the three paths.
func (id *Identity) WriteFiles(tb testing.TB, dir string) (certPath, keyPath, chainPath string) {
	tb.Helper()
	base := filepath.Join(dir, fileBase(id))
	certPath, keyPath, chainPath = base+".cert.pem", base+".key.pem", base+".chain.pem"
	writeFile(tb, certPath, CertPEM(id.Cert))
	writeFile(tb, keyPath, id.KeyPEM(tb))
	var chain []byte
	for _, c := range id.Chain {
		chain = append(chain, CertPEM(c)...)
	}
	writeFile(tb, chainPath, chain)
	return certPath, keyPath, chainPath
}

// KeyPEM returns the private key as a PKCS#8 PEM block.
func (id *Identity) KeyPEM(tb testing.TB) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(id.Key)
	if err != nil {
		tb.Fatalf("testpki: marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// PKCS12 encodes key, certificate and chain as a PKCS#12 file. Legacy files
// use PBE-SHA1-3DES with a SHA-1 MAC, the only kind gpgsm imports; others use
// PBES2 with AES-256.
func (id *Identity) PKCS12(tb testing.TB, password string, legacy bool) []byte {
	tb.Helper()
	enc := pkcs12.Modern2023
	if legacy {
		enc = pkcs12.LegacyDES
	}
	data, err := enc.Encode(id.Key, id.Cert, id.Chain, password)
	if err != nil {
		tb.Fatalf("testpki: encode PKCS#12: %v", err)
	}
	return data
}

// CertPEM encodes one certificate as PEM.
func CertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func fileBase(id *Identity) string {
	if id.Email != "" {
		return strings.NewReplacer("@", "_at_", "/", "_").Replace(id.Email)
	}
	return fmt.Sprintf("cert-%x", id.Cert.SerialNumber)
}

func writeFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatalf("testpki: %v", err)
	}
}

func newKey(tb testing.TB, kt KeyType) crypto.Signer {
	tb.Helper()
	var (
		key crypto.Signer
		err error
	)
	switch kt {
	case RSA1024:
		key, err = rsa.GenerateKey(rand.Reader, 1024)
	case RSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		key, err = rsa.GenerateKey(rand.Reader, 4096)
	case P256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case P384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case P521:
		key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	default:
		tb.Fatalf("testpki: unknown key type %q", kt)
	}
	if err != nil {
		tb.Fatalf("testpki: generate %s key: %v", kt, err)
	}
	return key
}

func mustIssue(tb testing.TB, tmpl *x509.Certificate, key crypto.Signer, issuer *Identity) *Identity {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	if err != nil {
		tb.Fatalf("testpki: serial: %v", err)
	}
	tmpl.SerialNumber = serial
	parent, signer := tmpl, key
	var chain []*x509.Certificate
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
		if !isSelfSigned(issuer.Cert) {
			chain = append([]*x509.Certificate{issuer.Cert}, issuer.Chain...)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		tb.Fatalf("testpki: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testpki: parse certificate: %v", err)
	}
	return &Identity{Cert: cert, Key: key, Chain: chain}
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}
