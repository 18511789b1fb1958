package peer

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// OpenSSL runs `openssl cms` on S/MIME messages. It keeps no state besides
// files (the trust anchor, identities' PEM files), so its methods may be
// called from parallel subtests.
type OpenSSL struct {
	bin  string
	dir  string
	root string // path of the trusted root certificate (PEM)

	mu    sync.Mutex
	files map[*testpki.Identity]idFiles
	certs map[*x509.Certificate]string
}

type idFiles struct{ cert, key, chain string }

// NewOpenSSL prepares OpenSSL for one test: a directory of its own and the
// PKI's root as the only trust anchor.
func NewOpenSSL(tb testing.TB, pki *testpki.PKI) *OpenSSL {
	tb.Helper()
	o := &OpenSSL{
		bin:   need(tb, "openssl", "openssl"),
		dir:   tb.TempDir(),
		files: map[*testpki.Identity]idFiles{},
		certs: map[*x509.Certificate]string{},
	}
	o.root = filepath.Join(o.dir, "root.pem")
	writeFile(tb, o.root, testpki.CertPEM(pki.Root.Cert))
	return o
}

// Version returns `openssl version`.
func (o *OpenSSL) Version(tb testing.TB) string {
	tb.Helper()
	out, _ := mustRun(tb, command{name: o.bin, args: []string{"version"}})
	return strings.TrimSpace(string(out))
}

func (o *OpenSSL) identity(tb testing.TB, id *testpki.Identity) idFiles {
	tb.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if f, ok := o.files[id]; ok {
		return f
	}
	d, err := os.MkdirTemp(o.dir, "id")
	if err != nil {
		tb.Fatalf("peer: %v", err)
	}
	var f idFiles
	f.cert, f.key, f.chain = id.WriteFiles(tb, d)
	if len(id.Chain) == 0 {
		f.chain = ""
	}
	o.files[id] = f
	o.certs[id.Cert] = f.cert
	return f
}

func (o *OpenSSL) cert(tb testing.TB, c *x509.Certificate) string {
	tb.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if p, ok := o.certs[c]; ok {
		return p
	}
	d, err := os.MkdirTemp(o.dir, "cert")
	if err != nil {
		tb.Fatalf("peer: %v", err)
	}
	p := filepath.Join(d, "cert.pem")
	writeFile(tb, p, testpki.CertPEM(c))
	o.certs[c] = p
	return p
}

// OpenSSLSign says how OpenSSL signs.
type OpenSSLSign struct {
	// Opaque makes application/pkcs7-mime; smime-type=signed-data instead
	// of multipart/signed.
	Opaque bool
	// MD is the digest: "sha256" (default), "sha384", "sha512", "sha1", ...
	MD string
	// PSS signs with RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys only).
	PSS bool
	// PSSSaltLen is passed as rsa_pss_saltlen ("digest", "max", a number);
	// OpenSSL's default when empty.
	PSSSaltLen string
	// NoCerts leaves the signer's certificate and chain out.
	NoCerts bool
}

// Sign signs msg, a canonical MIME entity, with `openssl cms -sign -binary
// -crlfeol`: the signed content is exactly msg and the resulting message has
// CRLF line endings throughout.
func (o *OpenSSL) Sign(tb testing.TB, id *testpki.Identity, msg []byte, opt OpenSSLSign) []byte {
	tb.Helper()
	f := o.identity(tb, id)
	d := workDir(tb, o.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out")
	writeFile(tb, in, msg)
	md := opt.MD
	if md == "" {
		md = "sha256"
	}
	args := []string{"cms", "-sign", "-binary", "-crlfeol", "-in", in, "-out", out,
		"-signer", f.cert, "-inkey", f.key, "-md", md}
	if opt.PSS {
		args = append(args, "-keyopt", "rsa_padding_mode:pss")
		if opt.PSSSaltLen != "" {
			args = append(args, "-keyopt", "rsa_pss_saltlen:"+opt.PSSSaltLen)
		}
	}
	if opt.Opaque {
		args = append(args, "-nodetach")
	}
	if opt.NoCerts {
		args = append(args, "-nocerts")
	} else if f.chain != "" {
		args = append(args, "-certfile", f.chain)
	}
	mustRun(tb, command{name: o.bin, args: args})
	return readFile(tb, out)
}

// Verify checks a signed S/MIME message (either form) against the test root
// with purpose smimesign, and returns OpenSSL's verdict and the content it
// hands out. Without -binary OpenSSL canonicalises the first part of a
// multipart/signed message to CRLF before digesting, as a mail client must;
// with -binary it would fail on a canonical message.
func (o *OpenSSL) Verify(tb testing.TB, msg []byte) Verdict {
	tb.Helper()
	d := workDir(tb, o.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out")
	writeFile(tb, in, msg)
	c := command{name: o.bin, args: []string{"cms", "-verify", "-in", in, "-out", out,
		"-CAfile", o.root, "-purpose", "smimesign"}}
	_, stderr, err := run(tb, c)
	v := Verdict{Log: c.String() + "\n" + string(stderr)}
	if b, rerr := os.ReadFile(out); rerr == nil && len(b) > 0 {
		v.Content = b
	}
	switch {
	case err == nil:
		v.Good = true
		v.Status = strings.TrimSpace(string(stderr))
	case isExit(err, 4):
		v.Status = "verification failure"
	default:
		v.Status = "error"
		v.Log = err.Error()
	}
	return v
}

// OpenSSLRecipient is one -recip with its -keyopt options.
type OpenSSLRecipient struct {
	Cert *x509.Certificate
	// OAEP selects RSAES-OAEP with this digest ("sha1", "sha256", ...);
	// PKCS#1 v1.5 when empty.
	OAEP string
	// MGF1 is the MGF1 digest for OAEP; OpenSSL's default (the OAEP
	// digest) when empty.
	MGF1 string
	// KDF is the X9.63 KDF digest for an EC recipient (ecdh_kdf_md);
	// OpenSSL's default (SHA-1) when empty.
	KDF string
	// Cofactor selects cofactor ECDH (dhSinglePass-cofactorDH-*) for an EC
	// recipient (ecdh_cofactor_mode:1).
	Cofactor bool
	// Password, instead of Cert, adds a password recipient
	// (PasswordRecipientInfo, -pwri_password).
	Password string
}

// Encrypt envelopes msg, a canonical MIME entity, for the recipients with
// `openssl cms -encrypt -binary -crlfeol -<cipher>`. cipher is an OpenSSL
// cipher name: "aes-128-cbc", "aes-256-cbc", "aes-128-gcm", "aes-256-gcm",
// "des3". GCM ciphers produce AuthEnvelopedData.
func (o *OpenSSL) Encrypt(tb testing.TB, msg []byte, cipher string, recips ...OpenSSLRecipient) []byte {
	tb.Helper()
	if len(recips) == 0 {
		tb.Fatal("peer: OpenSSL.Encrypt without recipients")
	}
	d := workDir(tb, o.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out")
	writeFile(tb, in, msg)
	args := []string{"cms", "-encrypt", "-binary", "-crlfeol", "-in", in, "-out", out, "-" + cipher}
	for _, r := range recips {
		if r.Password != "" {
			args = append(args, "-pwri_password", r.Password)
			continue
		}
		args = append(args, "-recip", o.cert(tb, r.Cert))
		if r.OAEP != "" {
			args = append(args, "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:"+r.OAEP)
			if r.MGF1 != "" {
				args = append(args, "-keyopt", "rsa_mgf1_md:"+r.MGF1)
			}
		}
		if r.KDF != "" {
			args = append(args, "-keyopt", "ecdh_kdf_md:"+r.KDF)
		}
		if r.Cofactor {
			args = append(args, "-keyopt", "ecdh_cofactor_mode:1")
		}
	}
	mustRun(tb, command{name: o.bin, args: args})
	return readFile(tb, out)
}

// Decrypt opens an enveloped S/MIME message with id's key and returns the
// content exactly as decrypted.
func (o *OpenSSL) Decrypt(tb testing.TB, id *testpki.Identity, msg []byte) ([]byte, error) {
	tb.Helper()
	f := o.identity(tb, id)
	d := workDir(tb, o.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out")
	writeFile(tb, in, msg)
	_, _, err := run(tb, command{name: o.bin, args: []string{"cms", "-decrypt", "-in", in, "-out", out,
		"-recip", f.cert, "-inkey", f.key}})
	if err != nil {
		return nil, err
	}
	return readFile(tb, out), nil
}

// ASN1Parse returns `openssl asn1parse -inform DER -i` of a DER blob, for
// failure reports.
func (o *OpenSSL) ASN1Parse(tb testing.TB, der []byte) string {
	tb.Helper()
	d := workDir(tb, o.dir)
	in := filepath.Join(d, "in.der")
	writeFile(tb, in, der)
	out, _, err := run(tb, command{name: o.bin, args: []string{"asn1parse", "-inform", "DER", "-i", "-in", in}})
	if err != nil {
		return fmt.Sprintf("%s\n(asn1parse: %v)", out, err)
	}
	return string(out)
}

func isExit(err error, code int) bool {
	var re *RunError
	return errors.As(err, &re) && re.Exit == code
}

func writeFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatalf("peer: %v", err)
	}
}
