package peer

import (
	"crypto"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// OpenSSLTSA is an RFC 3161 time-stamping authority run by `openssl ts
// -reply`, for tests that need real time-stamp tokens. Its methods may be
// called from parallel subtests (the serial-number file is guarded).
type OpenSSLTSA struct {
	bin   string
	dir   string
	conf  string
	cert  string
	key   string
	chain string // "" when the token carries only the TSA's certificate

	mu sync.Mutex
}

// OpenSSLTSAOptions configure an OpenSSLTSA.
type OpenSSLTSAOptions struct {
	// SignerDigest is the digest the TSA signs with (signer_digest):
	// "sha256" when empty.
	SignerDigest string
	// ESSCertIDAlg is the hash identifying the TSA's certificate
	// (ess_cert_id_alg): "sha1" writes signingCertificate, anything else
	// signingCertificateV2; "sha256" when empty.
	ESSCertIDAlg string
	// Accuracy is the accuracy line ("secs:1, millisecs:500"); none when
	// empty.
	Accuracy string
	// PrecisionDigits is clock_precision_digits: how many decimal places
	// of a second genTime carries (0 to 6).
	PrecisionDigits int
	// IncludeChain adds the TSA's intermediate certificates to every
	// token; by default a token carries only the TSA's certificate.
	IncludeChain bool
	// TSAName writes the TSA's subject into the token's tsa field.
	TSAName bool
}

// NewOpenSSLTSA prepares a TSA signing with id (which OpenSSL requires to
// carry a critical id-kp-timeStamping extended key usage, see
// testpki.IssueTSA).
func NewOpenSSLTSA(tb testing.TB, id *testpki.Identity, o OpenSSLTSAOptions) *OpenSSLTSA {
	tb.Helper()
	t := &OpenSSLTSA{bin: need(tb, "openssl", "openssl"), dir: tb.TempDir()}
	t.cert, t.key, t.chain = id.WriteFiles(tb, t.dir)
	if !o.IncludeChain || len(id.Chain) == 0 {
		t.chain = ""
	}
	if o.SignerDigest == "" {
		o.SignerDigest = "sha256"
	}
	if o.ESSCertIDAlg == "" {
		o.ESSCertIDAlg = "sha256"
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "[ tsa ]\ndefault_tsa = tsa1\n\n[ tsa1 ]\n")
	fmt.Fprintf(&conf, "serial = %s\n", filepath.Join(t.dir, "serial"))
	fmt.Fprintf(&conf, "crypto_device = builtin\nsigner_digest = %s\n", o.SignerDigest)
	fmt.Fprintf(&conf, "default_policy = 1.3.6.1.4.1.99999.1\ndigests = sha1, sha256, sha384, sha512\n")
	if o.Accuracy != "" {
		fmt.Fprintf(&conf, "accuracy = %s\n", o.Accuracy)
	}
	fmt.Fprintf(&conf, "clock_precision_digits = %d\n", o.PrecisionDigits)
	fmt.Fprintf(&conf, "ordering = no\ntsa_name = %s\n", map[bool]string{true: "yes", false: "no"}[o.TSAName])
	fmt.Fprintf(&conf, "ess_cert_id_chain = no\ness_cert_id_alg = %s\n", o.ESSCertIDAlg)
	t.conf = filepath.Join(t.dir, "tsa.cnf")
	writeFile(tb, t.conf, []byte(conf.String()))
	writeFile(tb, filepath.Join(t.dir, "serial"), []byte("01\n"))
	return t
}

// opensslDigest names h for `openssl ts -query`.
func opensslDigest(h crypto.Hash) string {
	switch h {
	case crypto.SHA1:
		return "sha1"
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return "sha256"
}

// Stamp returns a time-stamp token (the DER ContentInfo, as
// `-token_out` writes it) over data, hashed with h (SHA-256 when 0): a
// query made with `openssl ts -query -digest HEX -<h> -cert -no_nonce`,
// answered with `openssl ts -reply`. Any failure fails the test.
func (t *OpenSSLTSA) Stamp(tb testing.TB, data []byte, h crypto.Hash) []byte {
	tb.Helper()
	if h == 0 {
		h = crypto.SHA256
	}
	d := workDir(tb, t.dir)
	sum := h.New()
	sum.Write(data)
	query, token := filepath.Join(d, "query.tsq"), filepath.Join(d, "token.der")
	mustRun(tb, command{name: t.bin, args: []string{"ts", "-query", "-digest", hex.EncodeToString(sum.Sum(nil)),
		"-" + opensslDigest(h), "-cert", "-no_nonce", "-out", query}})
	args := []string{"ts", "-reply", "-config", t.conf, "-queryfile", query, "-inkey", t.key, "-signer", t.cert,
		"-token_out", "-out", token}
	if t.chain != "" {
		args = append(args, "-chain", t.chain)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	mustRun(tb, command{name: t.bin, args: args})
	return readFile(tb, token)
}

// TSTInfo returns the DER TSTInfo inside a token, as `openssl cms -verify
// -noverify` hands it out.
func (t *OpenSSLTSA) TSTInfo(tb testing.TB, token []byte) []byte {
	tb.Helper()
	d := workDir(tb, t.dir)
	in, out := filepath.Join(d, "token.der"), filepath.Join(d, "tstinfo.der")
	writeFile(tb, in, token)
	mustRun(tb, command{name: t.bin, args: []string{"cms", "-verify", "-noverify", "-binary", "-inform", "DER",
		"-in", in, "-out", out}})
	return readFile(tb, out)
}

// SignTSTInfo signs a DER TSTInfo with any identity, as a token: `openssl
// cms -sign -econtent_type id-smime-ct-TSTInfo -nodetach`. `openssl ts`
// refuses signers without a critical id-kp-timeStamping extended key
// usage; this makes the tokens such a signer would produce, for tests that
// a verifier refuses them.
func (t *OpenSSLTSA) SignTSTInfo(tb testing.TB, tstInfo []byte, signer *testpki.Identity) []byte {
	tb.Helper()
	d := workDir(tb, t.dir)
	cert, key, _ := signer.WriteFiles(tb, d)
	in, out := filepath.Join(d, "tstinfo.der"), filepath.Join(d, "token.der")
	writeFile(tb, in, tstInfo)
	mustRun(tb, command{name: t.bin, args: []string{"cms", "-sign", "-binary", "-nodetach", "-nosmimecap",
		"-econtent_type", "1.2.840.113549.1.9.16.1.4", "-md", "sha256", "-in", in, "-signer", cert, "-inkey", key,
		"-outform", "DER", "-out", out}})
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatalf("peer: %v", err)
	}
	return b
}
