// Package testhsm gives tests private SoftHSM2 tokens with PINs: a
// SoftHSM configuration of its own (SOFTHSM2_CONF), tokens made with
// softhsm2-util, key pairs made on them with pkcs11-tool (optionally
// CKA_ALWAYS_AUTHENTICATE), certificates issued by internal/testpki for the
// tokens' public keys, and p11-kit module files in temporary directories.
//
// A missing peer program fails the test (Debian packages softhsm2, opensc,
// opensc-pkcs11): a skipped interop test is a hidden hole.
package testhsm

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/tokens/p11kit"
)

// Paths and secrets of the test tokens.
const (
	SoftHSMModule = "/usr/lib/softhsm/libsofthsm2.so"
	PIN           = "1234"
	SOPIN         = "5678"
)

// OpenSCModule is where p11-kit's "module: opensc-pkcs11.so" points.
func OpenSCModule() string { return filepath.Join(p11kit.DefaultModuleDir(), "opensc-pkcs11.so") }

// Need fails the test when a program (or, for an absolute path, a file)
// is missing.
func Need(tb testing.TB, what string) {
	tb.Helper()
	if strings.HasPrefix(what, "/") {
		if _, err := os.Stat(what); err != nil {
			tb.Fatalf("%s is missing (Debian packages softhsm2, opensc, opensc-pkcs11): %v", what, err)
		}
		return
	}
	if _, err := exec.LookPath(what); err != nil {
		tb.Fatalf("%s is missing (Debian packages softhsm2, opensc, opensc-pkcs11, openssl): %v", what, err)
	}
}

// HSM is a private SoftHSM2 configuration with its own token directory.
type HSM struct {
	Dir      string
	Conf     string
	TokenDir string
	PKI      *testpki.PKI
}

// New makes an empty SoftHSM configuration in a temporary directory; its
// certificates are issued by pki's intermediate.
func New(tb testing.TB, pki *testpki.PKI) *HSM {
	tb.Helper()
	Need(tb, SoftHSMModule)
	Need(tb, "softhsm2-util")
	Need(tb, "pkcs11-tool")
	dir := tb.TempDir()
	h := &HSM{Dir: dir, Conf: filepath.Join(dir, "softhsm2.conf"), TokenDir: filepath.Join(dir, "tokens"), PKI: pki}
	if err := os.Mkdir(h.TokenDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nslots.removable = true\nlog.level = ERROR\n", h.TokenDir)
	if err := os.WriteFile(h.Conf, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	return h
}

// Env is the environment entry the token manager's workers and the tools
// need.
func (h *HSM) Env() string { return "SOFTHSM2_CONF=" + h.Conf }

// Run runs a tool with the HSM's environment and returns its output.
func (h *HSM) Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), h.Env())
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// InitToken creates a token with PIN and SOPIN and returns the directory
// SoftHSM made for it (move it away to "remove" the token).
func (h *HSM) InitToken(tb testing.TB, label string) string {
	tb.Helper()
	before := h.tokenDirs(tb)
	h.Run(tb, "softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SOPIN)
	for d := range h.tokenDirs(tb) {
		if !before[d] {
			return d
		}
	}
	tb.Fatalf("softhsm2-util made no token directory for %s", label)
	return ""
}

func (h *HSM) tokenDirs(tb testing.TB) map[string]bool {
	tb.Helper()
	ents, err := os.ReadDir(h.TokenDir)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[filepath.Join(h.TokenDir, e.Name())] = true
	}
	return out
}

// Key describes a key pair made on a token.
type Key struct {
	Type       string // "rsa:2048", "EC:prime256v1"
	ID         string // hex CKA_ID
	Label      string
	Email      string
	AlwaysAuth bool
}

// AddKey generates a key pair on the token, issues a certificate for its
// public key from the PKI's intermediate (key usage for signing and
// encryption or key agreement, emailProtection) and stores it, and the
// intermediate, on the token with the key's CKA_ID.
func (h *HSM) AddKey(tb testing.TB, token string, k Key) *x509.Certificate {
	tb.Helper()
	args := []string{"--module", SoftHSMModule, "--token-label", token, "--login", "--pin", PIN,
		"--keypairgen", "--key-type", k.Type, "--id", k.ID, "--label", k.Label}
	ec := strings.HasPrefix(k.Type, "EC")
	if ec {
		args = append(args, "--usage-sign", "--usage-derive")
	} else {
		args = append(args, "--usage-sign", "--usage-decrypt")
	}
	if k.AlwaysAuth {
		args = append(args, "--always-auth")
	}
	h.Run(tb, "pkcs11-tool", args...)
	pubFile := filepath.Join(h.Dir, token+"-"+k.ID+".pub.der")
	h.Run(tb, "pkcs11-tool", "--module", SoftHSMModule, "--token-label", token,
		"--read-object", "--type", "pubkey", "--id", k.ID, "-o", pubFile)
	pubDER, err := os.ReadFile(pubFile)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(pubDER)
	if err != nil {
		tb.Fatalf("token public key: %v", err)
	}
	ku := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	if ec {
		ku = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: k.Email, Organization: []string{"smimed tests"}},
		EmailAddresses: []string{k.Email},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       ku,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, h.PKI.Intermediate.Cert, pub, h.PKI.Intermediate.Key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	certFile := filepath.Join(h.Dir, token+"-"+k.ID+".cert.der")
	if err := os.WriteFile(certFile, der, 0o600); err != nil {
		tb.Fatal(err)
	}
	h.Run(tb, "pkcs11-tool", "--module", SoftHSMModule, "--token-label", token, "--login", "--pin", PIN,
		"--write-object", certFile, "--type", "cert", "--id", k.ID, "--label", k.Label)
	interFile := filepath.Join(h.Dir, "intermediate.der")
	if err := os.WriteFile(interFile, h.PKI.Intermediate.Cert.Raw, 0o600); err != nil {
		tb.Fatal(err)
	}
	h.Run(tb, "pkcs11-tool", "--module", SoftHSMModule, "--token-label", token, "--login", "--pin", PIN,
		"--write-object", interFile, "--type", "cert", "--label", "CA-"+k.ID)
	return cert
}

// ModuleFiles returns the p11-kit module files for SoftHSM and OpenSC
// (name → content), as a desktop has them.
func ModuleFiles() map[string]string {
	return map[string]string{
		"softhsm-test": "# test module\nmodule: " + SoftHSMModule + "\n",
		"opensc-test":  "module: opensc-pkcs11.so\n",
	}
}

// P11KitDirs writes module files into fresh package/system/user
// directories and returns options that read only them.
func P11KitDirs(tb testing.TB, modules map[string]string) p11kit.Options {
	tb.Helper()
	base := tb.TempDir()
	o := p11kit.Options{
		PackageDir:   filepath.Join(base, "share"),
		SystemDir:    filepath.Join(base, "etc"),
		UserDir:      filepath.Join(base, "home", ".config", "pkcs11", "modules"),
		SystemConfig: filepath.Join(base, "etc", "pkcs11.conf"),
		UserConfig:   filepath.Join(base, "home", ".config", "pkcs11", "pkcs11.conf"),
		Home:         filepath.Join(base, "home"),
	}
	for _, d := range []string{o.PackageDir, o.SystemDir, o.UserDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	for name, content := range modules {
		if err := os.WriteFile(filepath.Join(o.PackageDir, name+".module"), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return o
}
