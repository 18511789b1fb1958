//go:build linux

package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// p12Password protects the PKCS#12 files and the NSS and gpgsm key stores.
// Throw-away keys, generated for one run.
const p12Password = "bench-pass"

// identity is one end-entity certificate with its key, written out as files
// every tool can read.
type identity struct {
	Name  string // "rsa" or "p256"
	Email string
	Cert  *x509.Certificate
	Key   crypto.Signer

	CertPEM   string // certificate, PEM
	KeyPEM    string // PKCS#8 private key, PEM
	P12       string // PBES2/AES-256 PKCS#12 (NSS)
	P12Legacy string // PBE-SHA1-3DES PKCS#12 (gpgsm); RSA only
}

// pki is the bench's throw-away trust anchor and identities. The root issues
// the identities directly, so the chain carried in messages is empty.
type pki struct {
	Root    *x509.Certificate
	RootKey crypto.Signer
	RootPEM string
	RSA     *identity
	EC      *identity
}

// newPKI makes a root (RSA-2048), an RSA-2048 identity and a P-256 identity
// and writes their files under dir. Both identities carry the sender's
// address, so either one's signature matches the message's From.
func newPKI(dir string) (*pki, error) {
	rootKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "smimed bench root", Organization: []string{"smimed bench"}},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid(rootKey.Public()),
	}
	root, err := issue(rootTmpl, rootKey.Public(), rootTmpl, rootKey)
	if err != nil {
		return nil, err
	}
	p := &pki{Root: root, RootKey: rootKey, RootPEM: filepath.Join(dir, "root.pem")}
	if err := os.WriteFile(p.RootPEM, certPEM(root), 0o600); err != nil {
		return nil, err
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if p.RSA, err = p.newIdentity(dir, "rsa", "Alice RSA-2048", benchFrom, rsaKey); err != nil {
		return nil, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if p.EC, err = p.newIdentity(dir, "p256", "Alice P-256", benchFrom, ecKey); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *pki) newIdentity(dir, name, cn, email string, key crypto.Signer) (*identity, error) {
	now := time.Now()
	usage := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		usage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
	}
	tmpl := &x509.Certificate{
		Subject:        pkix.Name{CommonName: cn, Organization: []string{"smimed bench"}},
		EmailAddresses: []string{email},
		NotBefore:      now.Add(-time.Hour),
		NotAfter:       now.Add(30 * 24 * time.Hour),
		KeyUsage:       usage,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		SubjectKeyId:   skid(key.Public()),
		AuthorityKeyId: p.Root.SubjectKeyId,
	}
	cert, err := issue(tmpl, key.Public(), p.Root, p.RootKey)
	if err != nil {
		return nil, err
	}
	id := &identity{
		Name: name, Email: email, Cert: cert, Key: key,
		CertPEM: filepath.Join(dir, name+".cert.pem"),
		KeyPEM:  filepath.Join(dir, name+".key.pem"),
		P12:     filepath.Join(dir, name+".p12"),
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(id.CertPEM, certPEM(cert), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(id.KeyPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	p12, err := pkcs12.Modern2023.Encode(key, cert, []*x509.Certificate{p.Root}, p12Password)
	if err != nil {
		return nil, fmt.Errorf("encode %s PKCS#12: %w", name, err)
	}
	if err := os.WriteFile(id.P12, p12, 0o600); err != nil {
		return nil, err
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		legacy, err := pkcs12.LegacyDES.Encode(key, cert, []*x509.Certificate{p.Root}, p12Password)
		if err != nil {
			return nil, fmt.Errorf("encode %s legacy PKCS#12: %w", name, err)
		}
		id.P12Legacy = filepath.Join(dir, name+".3des.p12")
		if err := os.WriteFile(id.P12Legacy, legacy, 0o600); err != nil {
			return nil, err
		}
	}
	return id, nil
}

func issue(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// skid is a subject key identifier: SHA-1 of the marshalled public key
// (method 1 of RFC 5280 uses the bit string only; any stable value will do).
func skid(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha1.Sum(der)
	return sum[:]
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// fingerprint is the certificate's SHA-1 fingerprint as gpgsm prints it:
// upper-case hex without separators.
func fingerprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// colonFingerprint is the SHA-1 fingerprint as trustlist.txt writes it:
// colon-separated upper-case hex.
func colonFingerprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}
