//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// format is how a tool reads and writes protected messages.
type format int

const (
	fmtSMIME format = iota // a whole S/MIME message (MIME + base64 CMS)
	fmtDER                 // a bare CMS blob; detached content in its own file
)

// operation is one row kind of the tables.
type operation struct {
	ID      string
	Label   string
	Produce bool   // sign/encrypt: reads the message, writes a protected one
	From    string // for verify/decrypt: the operation that made the input
	Sig     bool   // sign/verify rather than encrypt/decrypt
	Key     string // "rsa" or "p256": whose key signs or receives
	Cipher  string // content cipher of encrypt/decrypt, e.g. "AES-256-CBC"
}

var operations = []operation{
	{ID: "sign", Label: "sign (RSA-2048 v1.5, SHA-256, detached)", Produce: true, Sig: true, Key: "rsa"},
	{ID: "verify", Label: "verify (RSA-2048 v1.5, SHA-256, detached)", From: "sign", Sig: true, Key: "rsa"},
	{ID: "encrypt-cbc", Label: "encrypt (RSA v1.5, AES-256-CBC)", Produce: true, Key: "rsa", Cipher: "AES-256-CBC"},
	{ID: "decrypt-cbc", Label: "decrypt (RSA v1.5, AES-256-CBC)", From: "encrypt-cbc", Key: "rsa", Cipher: "AES-256-CBC"},
	{ID: "encrypt-gcm", Label: "encrypt (RSA v1.5, AES-256-GCM)", Produce: true, Key: "rsa", Cipher: "AES-256-GCM"},
	{ID: "decrypt-gcm", Label: "decrypt (RSA v1.5, AES-256-GCM)", From: "encrypt-gcm", Key: "rsa", Cipher: "AES-256-GCM"},
	{ID: "sign-ec", Label: "sign (ECDSA P-256, SHA-256, detached)", Produce: true, Sig: true, Key: "p256"},
	{ID: "verify-ec", Label: "verify (ECDSA P-256, SHA-256, detached)", From: "sign-ec", Sig: true, Key: "p256"},
	{ID: "encrypt-ecdh", Label: "encrypt (ECDH P-256 SHA-256 KDF, AES-256-CBC)", Produce: true, Key: "p256", Cipher: "AES-256-CBC"},
	{ID: "decrypt-ecdh", Label: "decrypt (ECDH P-256 SHA-256 KDF, AES-256-CBC)", From: "encrypt-ecdh", Key: "p256", Cipher: "AES-256-CBC"},
}

// stepInput is what one run reads.
type stepInput struct {
	Path    string // the message (produce) or the protected message (consume)
	Content string // detached signed content, for fmtDER verification
	Format  format
}

// spec is one process to run.
type spec struct {
	Args    []string
	Env     []string // added to the environment
	Success string   // must appear in stdout or stderr (verification)
	Stdin   string   // fed to the process's standard input
}

// cipherChooser is a tool that picks the content cipher itself; the row
// then names what it used.
type cipherChooser interface {
	ContentCipher(op operation) (cipher, note string)
}

// tool is one implementation being measured.
type tool interface {
	Name() string
	Format() format
	// Setup prepares key stores; the returned error marks every row FAILED.
	Setup(ctx context.Context, b *bench) error
	// Command returns the process for op, or ok=false when the tool cannot
	// do op at all.
	Command(b *bench, op operation, in stepInput, out string) (s spec, ok bool)
	Version() string
}

func (b *bench) ident(op operation) *identity {
	if op.Key == "p256" {
		return b.pki.EC
	}
	return b.pki.RSA
}

// ---- our engine -----------------------------------------------------------

type engineTool struct{ bin string }

func (t *engineTool) Name() string   { return "smimed" }
func (t *engineTool) Format() format { return fmtSMIME }
func (t *engineTool) Version() string {
	return "this tree (scripts/bench/engine, " + goVersion() + ")"
}

func (t *engineTool) Setup(ctx context.Context, b *bench) error {
	t.bin = filepath.Join(b.dir, "smimed-engine")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", t.bin, "github.com/smimed/smimed/scripts/bench/engine")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build scripts/bench/engine: %s", firstLine(out, err))
	}
	return nil
}

func (t *engineTool) Command(b *bench, op operation, in stepInput, out string) (spec, bool) {
	if in.Format != fmtSMIME {
		return spec{}, false
	}
	id := b.ident(op)
	switch {
	case op.Produce && op.Sig:
		return spec{Args: []string{t.bin, "sign", "-cert", id.CertPEM, "-key", id.KeyPEM, "-in", in.Path, "-out", out}}, true
	case !op.Produce && op.Sig:
		return spec{Args: []string{t.bin, "verify", "-roots", b.pki.RootPEM, "-in", in.Path, "-out", out}}, true
	case op.Produce:
		cipher := map[string]string{"AES-256-CBC": "aes256-cbc", "AES-256-GCM": "aes256-gcm"}[op.Cipher]
		return spec{Args: []string{t.bin, "encrypt", "-to", id.CertPEM, "-cipher", cipher, "-in", in.Path, "-out", out}}, true
	default:
		return spec{Args: []string{t.bin, "decrypt", "-cert", id.CertPEM, "-key", id.KeyPEM, "-in", in.Path, "-out", out}}, true
	}
}

// ---- OpenSSL --------------------------------------------------------------

type opensslTool struct{}

func (opensslTool) Name() string                              { return "openssl" }
func (opensslTool) Format() format                            { return fmtSMIME }
func (opensslTool) Setup(ctx context.Context, b *bench) error { return lookPath("openssl") }
func (opensslTool) Version() string                           { return cmdVersion("openssl", "version") }

func (opensslTool) Command(b *bench, op operation, in stepInput, out string) (spec, bool) {
	id := b.ident(op)
	args := []string{"openssl", "cms"}
	inform := func() {
		if in.Format == fmtDER {
			args = append(args, "-inform", "DER")
		}
	}
	// -binary: the input already has canonical CRLF line endings; without it
	// openssl would translate them (text mode) on every run.
	switch {
	case op.Produce && op.Sig:
		args = append(args, "-sign", "-binary", "-stream", "-md", "sha256",
			"-signer", id.CertPEM, "-inkey", id.KeyPEM,
			"-from", benchFrom, "-to", benchTo, "-subject", benchSubject,
			"-in", in.Path, "-out", out)
		return spec{Args: args}, true
	case !op.Produce && op.Sig:
		// No -binary here: with it OpenSSL 3.0 keeps the CR of the CRLF
		// before the closing boundary in the signed content and fails on
		// RFC-conforming messages (it only gets its own, LF-delimited,
		// output right). Text mode is how it verifies mail anyway.
		args = append(args, "-verify", "-CAfile", b.pki.RootPEM, "-in", in.Path, "-out", out)
		inform()
		if in.Content != "" {
			args = append(args, "-content", in.Content)
		}
		return spec{Args: args, Success: "Verification successful"}, true
	case op.Produce:
		cipher := map[string]string{"AES-256-CBC": "-aes-256-cbc", "AES-256-GCM": "-aes-256-gcm"}[op.Cipher]
		args = append(args, "-encrypt", "-binary", "-stream", cipher,
			"-from", benchFrom, "-to", benchTo, "-subject", benchSubject,
			"-in", in.Path, "-out", out, "-recip", id.CertPEM)
		if op.Key == "p256" {
			args = append(args, "-keyopt", "ecdh_kdf_md:sha256")
		}
		return spec{Args: args}, true
	default:
		args = append(args, "-decrypt", "-binary", "-recip", id.CertPEM, "-inkey", id.KeyPEM, "-in", in.Path, "-out", out)
		inform()
		return spec{Args: args}, true
	}
}

// ---- NSS cmsutil (Thunderbird's libraries) --------------------------------

const thunderbirdLibs = "/usr/lib/thunderbird"

type nssTool struct {
	db   string
	nick map[string]string // identity name -> NSS nickname
}

func (t *nssTool) Name() string   { return "nss cmsutil" }
func (t *nssTool) Format() format { return fmtDER }
func (t *nssTool) env() []string  { return []string{"LD_LIBRARY_PATH=" + thunderbirdLibs} }

func (t *nssTool) Version() string {
	data, err := os.ReadFile(filepath.Join(thunderbirdLibs, "libnss3.so"))
	if err != nil {
		return "unknown"
	}
	if m := regexp.MustCompile(`NSS (3\.\d+(\.\d+)?)`).FindSubmatch(data); m != nil {
		return "cmsutil with NSS " + string(m[1]) + " (Thunderbird's, " + thunderbirdLibs + ")"
	}
	return "cmsutil with Thunderbird's NSS"
}

func (t *nssTool) Setup(ctx context.Context, b *bench) error {
	for _, p := range []string{"cmsutil", "certutil", "pk12util"} {
		if err := lookPath(p); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(thunderbirdLibs, "libsmime3.so")); err != nil {
		return fmt.Errorf("thunderbird's NSS libraries (package thunderbird): %w", err)
	}
	t.db = filepath.Join(b.dir, "nssdb")
	if err := os.MkdirAll(t.db, 0o700); err != nil {
		return err
	}
	db := "sql:" + t.db
	pwFile := filepath.Join(b.dir, "nss-p12.pw")
	if err := os.WriteFile(pwFile, []byte(p12Password+"\n"), 0o600); err != nil {
		return err
	}
	steps := [][]string{{"certutil", "-N", "-d", db, "--empty-password"}}
	for _, id := range []*identity{b.pki.RSA, b.pki.EC} {
		steps = append(steps, []string{"pk12util", "-i", id.P12, "-d", db, "-w", pwFile, "-K", ""})
	}
	steps = append(steps, []string{"certutil", "-A", "-d", db, "-n", "bench root", "-t", "C,C,C", "-a", "-i", b.pki.RootPEM})
	for _, s := range steps {
		if out, err := runQuiet(ctx, t.env(), s...); err != nil {
			return fmt.Errorf("%s: %s", strings.Join(s[:2], " "), firstLine(out, err))
		}
	}
	// Learn the nicknames pk12util gave the identities ("CN - O").
	t.nick = map[string]string{}
	list, err := runQuiet(ctx, t.env(), "certutil", "-L", "-d", db)
	if err != nil {
		return fmt.Errorf("certutil -L: %s", firstLine(list, err))
	}
	for _, id := range []*identity{b.pki.RSA, b.pki.EC} {
		for _, line := range strings.Split(string(list), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasSuffix(line, "u,u,u") {
				continue
			}
			nick := strings.TrimSpace(strings.TrimSuffix(line, "u,u,u"))
			der, err := runQuiet(ctx, t.env(), "certutil", "-L", "-d", db, "-r", "-n", nick)
			if err == nil && bytes.Equal(der, id.Cert.Raw) {
				t.nick[id.Name] = nick
			}
		}
		if t.nick[id.Name] == "" {
			return fmt.Errorf("no NSS nickname found for %s", id.Cert.Subject.CommonName)
		}
	}
	return nil
}

// ContentCipher: cmsutil has no option to choose the content cipher and
// picks AES-128-CBC for a recipient without a stored S/MIME profile.
func (t *nssTool) ContentCipher(op operation) (string, string) {
	if op.Produce && !op.Sig {
		return "AES-128-CBC", "cmsutil picks AES-128-CBC itself (it has no cipher option): not the same cipher as the other rows"
	}
	return op.Cipher, ""
}

func (t *nssTool) Command(b *bench, op operation, in stepInput, out string) (spec, bool) {
	if op.Cipher == "AES-256-GCM" { // NSS does not do AuthEnvelopedData
		return spec{}, false
	}
	if in.Format != fmtDER && !op.Produce {
		return spec{}, false
	}
	id := b.ident(op)
	nick := t.nick[id.Name]
	db := "sql:" + t.db
	switch {
	case op.Produce && op.Sig:
		// -G signingTime, -P SMIMECapabilities, -Y encryption key
		// preference: the signed attributes our engine also writes.
		return spec{Env: t.env(), Args: []string{"cmsutil", "-S", "-T", "-G", "-P", "-Y", nick, "-N", nick,
			"-H", "SHA256", "-d", db, "-i", in.Path, "-o", out}}, true
	case !op.Produce && op.Sig:
		return spec{Env: t.env(), Args: []string{"cmsutil", "-D", "-n", "-h", "1", "-d", db, "-i", in.Path, "-c", in.Content},
			Success: "signer0.status=GoodSignature"}, true
	case op.Produce:
		return spec{Env: t.env(), Args: []string{"cmsutil", "-E", "-r", nick, "-d", db, "-i", in.Path, "-o", out}}, true
	default:
		return spec{Env: t.env(), Args: []string{"cmsutil", "-D", "-d", db, "-i", in.Path, "-o", out}}, true
	}
}

// ---- gpgsm ----------------------------------------------------------------

type gpgsmTool struct {
	home string
	fpr  string // the RSA identity's fingerprint
}

func (t *gpgsmTool) Name() string    { return "gpgsm" }
func (t *gpgsmTool) Format() format  { return fmtDER }
func (t *gpgsmTool) Version() string { return cmdVersion("gpgsm", "--version") }

func (t *gpgsmTool) base() []string {
	return []string{"gpgsm", "--homedir", t.home, "--batch", "--no-tty", "--yes"}
}

// withPass makes gpgsm answer the agent's passphrase inquiry from stdin
// (see passStdin); gpgsm has no --passphrase option of its own.
func (t *gpgsmTool) withPass(args []string) []string {
	return append(args, "--pinentry-mode", "loopback", "--passphrase-fd", "0")
}

const passStdin = p12Password + "\n"

func (t *gpgsmTool) Setup(ctx context.Context, b *bench) error {
	if err := lookPath("gpgsm"); err != nil {
		return err
	}
	// gpg-agent's socket path must stay short: keep the home directly
	// under the bench's temp dir.
	t.home = filepath.Join(b.dir, "gpgsm")
	if err := os.MkdirAll(t.home, 0o700); err != nil {
		return err
	}
	files := map[string]string{
		// The lowest S2K count: the agent re-derives the key-protection key
		// on every private-key use, which at the default (calibrated to
		// ~100 ms) would swamp what this bench measures.
		"gpg-agent.conf": "allow-loopback-pinentry\ns2k-count 65536\n",
		"gpgsm.conf":     "disable-crl-checks\ndisable-trusted-cert-crl-check\ndisable-dirmngr\ndisable-ocsp\ndisable-policy-checks\n",
		"trustlist.txt":  colonFingerprint(b.pki.Root) + " S relax\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(t.home, name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	t.fpr = "0x" + fingerprint(b.pki.RSA.Cert)
	if out, err := runQuiet(ctx, nil, append(t.base(), "--import", b.pki.RootPEM)...); err != nil {
		return fmt.Errorf("gpgsm --import root: %s", firstLine(out, err))
	}
	cmd := exec.CommandContext(ctx, "gpgsm", append(t.withPass(t.base()), "--import", b.pki.RSA.P12Legacy)[1:]...)
	cmd.Stdin = strings.NewReader(passStdin)
	if out, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(out, []byte("secret keys imported: 1")) {
		return fmt.Errorf("gpgsm --import p12: %s", firstLine(out, err))
	}
	out, err := runQuiet(ctx, nil, append(t.base(), "--with-colons", "--list-secret-keys", t.fpr)...)
	if err != nil || !bytes.Contains(out, []byte(fingerprint(b.pki.RSA.Cert))) {
		return fmt.Errorf("gpgsm: secret key not imported: %s", firstLine(out, err))
	}
	return nil
}

// Close stops the gpg-agent the bench's homedir started.
func (t *gpgsmTool) Close() {
	if t.home != "" {
		_, _ = runQuiet(context.Background(), nil, "gpgconf", "--homedir", t.home, "--kill", "all")
	}
}

func (t *gpgsmTool) Command(b *bench, op operation, in stepInput, out string) (spec, bool) {
	// gpgsm 2.2: RSA only, no AES-GCM.
	if op.Key != "rsa" || op.Cipher == "AES-256-GCM" || (in.Format != fmtDER && !op.Produce) {
		return spec{}, false
	}
	switch {
	case op.Produce && op.Sig:
		return spec{Args: append(t.withPass(t.base()), "-u", t.fpr, "--output", out, "--detach-sign", in.Path), Stdin: passStdin}, true
	case !op.Produce && op.Sig:
		return spec{Args: append(t.base(), "--status-fd", "1", "--verify", in.Path, in.Content),
			Success: "[GNUPG:] GOODSIG"}, true
	case op.Produce:
		return spec{Args: append(t.base(), "--cipher-algo", "AES256", "-r", t.fpr, "--output", out, "--encrypt", in.Path)}, true
	default:
		return spec{Args: append(t.withPass(t.base()), "--output", out, "--decrypt", in.Path), Stdin: passStdin}, true
	}
}

// ---- helpers --------------------------------------------------------------

func lookPath(name string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%s not installed (make deps installs it)", name)
	}
	return nil
}

func runQuiet(ctx context.Context, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	return cmd.CombinedOutput()
}

func cmdVersion(args ...string) string {
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// firstLine is the first non-empty line of a tool's output, or the error.
func firstLine(out []byte, err error) string {
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	if err != nil {
		return err.Error()
	}
	return "(no output)"
}
