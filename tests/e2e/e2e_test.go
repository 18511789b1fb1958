//go:build linux

package e2e_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

const (
	alice = "alice@example.com"
	bob   = "bob@example.org"
	carol = "carol@example.net"
)

// message is a small mail from alice to bob.
const message = "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: e2e test\r\n" +
	"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
	"Hello Bob, this is the end-to-end test.\r\n"

const body = "Hello Bob, this is the end-to-end test."

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// people is one PKI with alice, bob and carol (RSA) and dave (P-256).
type people struct {
	pki                     *testpki.PKI
	alice, bob, carol, dave *testpki.Identity
}

func newPeople(t testing.TB) *people {
	p := testpki.New(t)
	return &people{
		pki:   p,
		alice: p.Issue(t, testpki.Options{Email: alice}),
		bob:   p.Issue(t, testpki.Options{Email: bob}),
		carol: p.Issue(t, testpki.Options{Email: carol}),
		dave:  p.Issue(t, testpki.Options{Email: "dave@example.com", Key: testpki.P256}),
	}
}

// status is the status JSON of DESIGN.md, decoded strictly.
type status struct {
	Encrypted  bool   `json:"encrypted"`
	Signed     bool   `json:"signed"`
	Signature  string `json:"signature"`
	Signer     signer `json:"signer"`
	Revocation string `json:"revocation"`
	Decryption string `json:"decryption"`
	Layers     []struct {
		Type    string `json:"type"`
		Form    string `json:"form"`
		Cipher  string `json:"cipher"`
		Signers []struct {
			Outcome string `json:"outcome"`
			Email   string `json:"email"`
		} `json:"signers"`
	} `json:"layers"`
	Error string `json:"error"`
}

type signer struct {
	Email   string `json:"email"`
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
}

// readStatus reads a --status-json file and checks every DESIGN.md field
// is there with a value from its set.
func readStatus(t *testing.T, path string) status {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("status JSON: %v", err)
	}
	var raw map[string]json.RawMessage
	decodeJSON(t, data, &raw)
	for _, k := range []string{"encrypted", "signed", "signature", "signer", "revocation", "decryption", "layers", "error"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("status JSON has no %q: %s", k, data)
		}
	}
	var signerRaw map[string]json.RawMessage
	decodeJSON(t, raw["signer"], &signerRaw)
	for _, k := range []string{"email", "subject", "sha256"} {
		if _, ok := signerRaw[k]; !ok {
			t.Errorf("status JSON signer has no %q: %s", k, data)
		}
	}
	if string(raw["layers"]) == "null" {
		t.Errorf("status JSON layers is null: %s", data)
	}
	var st status
	decodeJSON(t, data, &st)
	check := func(field, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			t.Errorf("status JSON %s = %q, not one of %v", field, v, allowed)
		}
	}
	check("signature", st.Signature, "good", "bad", "untrusted", "expired", "revoked", "weak-algorithm", "email-mismatch", "none")
	check("revocation", st.Revocation, "good", "revoked", "unknown", "not-checked")
	check("decryption", st.Decryption, "ok", "no-key", "failed", "none")
	return st
}

func TestCommands(t *testing.T) {
	t.Parallel()
	pp := newPeople(t)
	s := newSandbox(t, options{})

	// help and usage errors
	if r := s.must("help"); !strings.Contains(r.stdout, "import-p12") {
		t.Errorf("help: %v", r)
	}
	s.must("help", "sign")
	s.want(2, "", "frobnicate")
	s.want(2, "", "sign") // no --from
	s.want(2, "", "encrypt", "--from", alice)

	// status
	r := s.must("status")
	if !strings.Contains(r.stdout, "keystore:   file") || !strings.Contains(r.stdout, fmt.Sprintf("pid %d", s.pid())) {
		t.Errorf("status: %v", r)
	}
	r = s.must("status", "--json")
	var st map[string]any
	decodeJSON(t, []byte(r.stdout), &st)
	for _, k := range []string{"version", "pid", "keystore", "identities", "tokens", "config", "uptime"} {
		if _, ok := st[k]; !ok {
			t.Errorf("status --json has no %q: %s", k, r.stdout)
		}
	}
	if st["pid"] != float64(s.pid()) || st["keystore"] != "file" || st["identities"] != float64(0) || st["config"] != s.configFile {
		t.Errorf("status --json: %s (pid %d)", r.stdout, s.pid())
	}

	// identities, empty then with alice
	if r := s.must("identities", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("identities --json before any import: %v", r)
	}
	if r := s.must("identities"); !strings.Contains(r.stdout, "no identities") {
		t.Errorf("identities before any import: %v", r)
	}
	r = s.importP12(pp.alice)
	if !strings.Contains(r.stdout, alice) {
		t.Errorf("import-p12 output: %v", r)
	}
	r = s.must("identities", "--json")
	var ids []map[string]any
	decodeJSON(t, []byte(r.stdout), &ids)
	if len(ids) != 1 {
		t.Fatalf("identities --json: %s", r.stdout)
	}
	for _, k := range []string{"id", "label", "emails", "subject", "issuer", "not_after", "sha256", "source", "key_type", "can_sign", "can_decrypt"} {
		if _, ok := ids[0][k]; !ok {
			t.Errorf("identity has no %q: %s", k, r.stdout)
		}
	}
	if ids[0]["sha256"] != fingerprint(pp.alice.Cert.Raw) || ids[0]["can_sign"] != true || ids[0]["can_decrypt"] != true ||
		fmt.Sprint(ids[0]["emails"]) != "["+alice+"]" {
		t.Errorf("alice's identity: %s", r.stdout)
	}
	if r := s.must("identities"); !strings.Contains(r.stdout, alice) || !strings.Contains(r.stdout, "sign,decrypt") {
		t.Errorf("identities table: %v", r)
	}
	r = s.must("status", "--json")
	decodeJSON(t, []byte(r.stdout), &st)
	if st["identities"] != float64(1) {
		t.Errorf("status after import: %s", r.stdout)
	}

	// import-p12: the password asked through the prompt (no
	// --password-file), an EC key, a wrong password, a file that is no
	// PKCS#12, a missing file.
	p12 := s.file("dave.p12", pp.dave.PKCS12(t, p12Password, true))
	s.setPINs(p12Password, passphrase, passphrase)
	n := len(s.sessions())
	s.must("import-p12", p12)
	if got := len(s.sessions()) - n; got < 2 {
		t.Errorf("import-p12 without --password-file showed %d prompts, want the file's password and the new passphrase", got)
	}
	s.setPINs()
	bad := s.file("bad.pw", []byte("not-the-password\n"))
	s.setPINs(passphrase, passphrase)
	s.want(1, "PinIncorrect", "import-p12", s.file("bob.p12", pp.bob.PKCS12(t, p12Password, false)), "--password-file", bad)
	s.setPINs()
	s.want(2, "BadMessage", "import-p12", s.file("junk.p12", []byte("this is not a PKCS#12 file")), "--password-file", bad)
	s.want(2, "", "import-p12", filepath.Join(s.root, "missing.p12"))
	if r := s.must("identities", "--json"); strings.Count(r.stdout, `"id"`) != 2 {
		t.Errorf("identities after the failed imports: %s", r.stdout)
	}

	// tokens: none on this machine's daemon, but the command and its JSON work
	r = s.must("tokens", "--json")
	var toks []map[string]any
	decodeJSON(t, []byte(r.stdout), &toks)
	s.must("tokens")

	// trust add | list | remove (by file and by fingerprint)
	rootPEM := s.file("root.pem", testpki.CertPEM(pp.pki.Root.Cert))
	rootFP := fingerprint(pp.pki.Root.Cert.Raw)
	if r := s.must("trust", "add", rootPEM); !strings.Contains(r.stdout, rootFP) {
		t.Errorf("trust add: %v", r)
	}
	if r := s.must("trust", "list"); !strings.Contains(r.stdout, rootFP[:16]) || !strings.Contains(r.stdout, "smimed test root") {
		t.Errorf("trust list: %v", r)
	}
	colons := strings.ToUpper(strings.Join(splitEvery(rootFP, 2), ":"))
	if r := s.must("trust", "remove", colons); !strings.Contains(r.stdout, rootFP) {
		t.Errorf("trust remove by fingerprint: %v", r)
	}
	if r := s.must("trust", "list"); strings.Contains(r.stdout, rootFP[:16]) {
		t.Errorf("trust list after remove: %v", r)
	}
	s.want(2, "", "trust", "remove", rootPEM) // nothing matches now
	s.must("trust", "add", rootPEM)
	s.must("trust", "remove", rootPEM)
	s.want(2, "BadMessage", "trust", "add", s.file("junk.pem", []byte("-----BEGIN NONSENSE-----\n")))
	s.want(2, "", "trust", "frob", rootPEM)

	// certs add | list | find
	bobPEM := s.file("bob.pem", testpki.CertPEM(pp.bob.Cert))
	if r := s.must("certs", "add", bobPEM); !strings.Contains(r.stdout, fingerprint(pp.bob.Cert.Raw)) {
		t.Errorf("certs add: %v", r)
	}
	r = s.must("certs", "list", "--json")
	var certs []map[string]any
	decodeJSON(t, []byte(r.stdout), &certs)
	if len(certs) != 1 || certs[0]["sha256"] != fingerprint(pp.bob.Cert.Raw) {
		t.Errorf("certs list --json: %s", r.stdout)
	}
	for _, k := range []string{"sha256", "subject", "issuer", "emails", "not_before", "not_after"} {
		if len(certs) == 1 {
			if _, ok := certs[0][k]; !ok {
				t.Errorf("certificate has no %q: %s", k, r.stdout)
			}
		}
	}
	if r := s.must("certs", "list"); !strings.Contains(r.stdout, bob) {
		t.Errorf("certs list: %v", r)
	}
	r = s.must("certs", "find", bob, "--json")
	var lookup struct {
		Email        string           `json:"email"`
		Certificates []map[string]any `json:"certificates"`
		Reason       string           `json:"reason"`
	}
	decodeJSON(t, []byte(r.stdout), &lookup)
	if lookup.Email != bob || len(lookup.Certificates) != 1 {
		t.Errorf("certs find %s --json: %s", bob, r.stdout)
	}
	if r := s.must("certs", "find", bob); !strings.Contains(r.stdout, fingerprint(pp.bob.Cert.Raw)[:16]) {
		t.Errorf("certs find: %v", r)
	}
	r = s.must("certs", "find", "--json", "nobody@example.com")
	lookup.Certificates, lookup.Reason = nil, ""
	decodeJSON(t, []byte(r.stdout), &lookup)
	if lookup.Certificates == nil || len(lookup.Certificates) != 0 || lookup.Reason == "" {
		t.Errorf("certs find of an unknown address: %s", r.stdout)
	}
	s.want(2, "BadMessage", "certs", "add", s.file("junk.der", []byte{0x30, 0x03, 0x02, 0x01}))
	s.want(2, "", "certs", "add", filepath.Join(s.root, "missing.pem"))
}

func splitEvery(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	openssl := needTool(t, "openssl")
	pp := newPeople(t)
	s := newSandbox(t, options{})
	s.importP12(pp.alice)
	s.trustRoot(pp.pki)
	msg := s.file("msg.eml", []byte(message))
	rootPEM := s.file("root.pem", testpki.CertPEM(pp.pki.Root.Cert))

	for _, form := range []string{"detached", "opaque"} {
		t.Run(form, func(t *testing.T) {
			signed := filepath.Join(s.root, form+".eml")
			args := []string{"sign", "--from", alice, "--in", msg, "--out", signed}
			if form == "opaque" {
				args = append(args, "--opaque")
			}
			s.setPINs(passphrase)
			n := len(s.sessions())
			s.must(args...)
			if sess := s.sessions()[n:]; len(sess) != 1 || sess[0].Outcome != "pin" {
				t.Errorf("sign showed %d prompts (%+v), want exactly one", len(sess), sess)
			}
			out := s.read(signed)
			wantType := map[string]string{"detached": "multipart/signed", "opaque": "application/pkcs7-mime"}[form]
			if !bytes.Contains(out, []byte(wantType)) || !bytes.Contains(out, []byte("Subject: e2e test")) {
				t.Errorf("signed message:\n%s", out)
			}

			// verify: exit 0, summary on stderr, content on stdout, status JSON
			stPath := filepath.Join(s.root, form+".status.json")
			r := s.must("verify", "--in", signed, "--status-json", stPath)
			if !strings.Contains(r.stdout, body) || !strings.Contains(r.stderr, "signature good") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("verify: %v", r)
			}
			st := readStatus(t, stPath)
			if !st.Signed || st.Encrypted || st.Signature != "good" || st.Decryption != "none" || st.Error != "" ||
				st.Signer.Email != alice || st.Signer.SHA256 != fingerprint(pp.alice.Cert.Raw) || st.Signer.Subject == "" ||
				len(st.Layers) != 1 || st.Layers[0].Type != "signed" || st.Layers[0].Form != form {
				t.Errorf("verify status: %+v", st)
			}
			if len(s.sessions()) != n+1 {
				t.Error("verify showed a prompt")
			}

			// OpenSSL reads what we signed, trusting only the root.
			cmd := exec.Command(openssl, "cms", "-verify", "-in", signed, "-CAfile", rootPEM, "-purpose", "smimesign")
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			if err := cmd.Run(); err != nil || !strings.Contains(e.String(), "Verification successful") || !strings.Contains(o.String(), body) {
				t.Errorf("openssl cms -verify: %v\nstderr: %s\nstdout: %s", err, e.String(), o.String())
			}

			// Tampered: exit 1, signature bad.
			tampered := s.file(form+".tampered.eml", tamper(t, out, form))
			r = s.ctl("verify", "--in", tampered, "--status-json", stPath)
			if r.code != 1 || !strings.Contains(r.stderr, "signature bad") {
				t.Errorf("verify of a tampered message: %v", r)
			}
			if st := readStatus(t, stPath); st.Signature != "bad" || !st.Signed {
				t.Errorf("tampered status: %+v", st)
			}
		})
	}

	// stdin to stdout
	s.setPINs(passphrase)
	r := s.ctlIn([]byte(message), "sign", "--from", alice)
	if r.code != 0 || !strings.Contains(r.stdout, "multipart/signed") {
		t.Fatalf("sign via stdin/stdout: %v", r)
	}
	if v := s.ctlIn([]byte(r.stdout), "verify"); v.code != 0 || !strings.Contains(v.stdout, body) {
		t.Errorf("verify via stdin: %v", v)
	}

	// No identity for the address: exit 2, no prompt.
	n := len(s.sessions())
	s.want(2, "NoIdentity", "sign", "--from", "nobody@example.com", "--in", msg)
	if len(s.sessions()) != n {
		t.Error("sign for an unknown address showed a prompt")
	}
	// The output file appears only on success.
	out := filepath.Join(s.root, "never.eml")
	s.want(2, "NoIdentity", "sign", "--from", "nobody@example.com", "--in", msg, "--out", out)
	if _, err := os.Stat(out); err == nil {
		t.Error("a failed sign left its --out file")
	}

	// Without the trust anchor the signature is untrusted: exit 1.
	s.must("trust", "remove", rootPEM)
	stPath := filepath.Join(s.root, "untrusted.json")
	if r := s.ctl("verify", "--in", filepath.Join(s.root, "detached.eml"), "--status-json", stPath); r.code != 1 ||
		!strings.Contains(r.stderr, "untrusted") {
		t.Errorf("verify without the anchor: %v", r)
	}
	if st := readStatus(t, stPath); st.Signature != "untrusted" {
		t.Errorf("untrusted status: %+v", st)
	}
}

// tamper changes one letter of the signed text.
func tamper(t *testing.T, signed []byte, form string) []byte {
	t.Helper()
	if form == "detached" {
		i := bytes.Index(signed, []byte("end-to-end"))
		if i < 0 {
			t.Fatalf("no body in the signed message:\n%s", signed)
		}
		out := bytes.Clone(signed)
		out[i] = 'E'
		return out
	}
	// Opaque: flip a byte of the base64 body, keeping it valid base64,
	// in the middle of the content.
	hdrEnd := bytes.Index(signed, []byte("\r\n\r\n"))
	if hdrEnd < 0 {
		hdrEnd = bytes.Index(signed, []byte("\n\n"))
	}
	out := bytes.Clone(signed)
	for i := hdrEnd + 200; i < len(out); i++ {
		if c := out[i]; c >= 'A' && c <= 'Y' {
			out[i] = c + 1
			return out
		}
	}
	t.Fatal("nothing to tamper with")
	return nil
}

func TestEncryptDecrypt(t *testing.T) {
	t.Parallel()
	openssl := needTool(t, "openssl")
	pp := newPeople(t)
	sa := newSandbox(t, options{}) // alice's session
	sb := newSandbox(t, options{}) // bob's session
	sa.importP12(pp.alice)
	sa.trustRoot(pp.pki)
	sa.must("certs", "add", sa.file("bob.pem", testpki.CertPEM(pp.bob.Cert)))
	sa.must("certs", "add", sa.file("carol.pem", testpki.CertPEM(pp.carol.Cert)))
	sb.importP12(pp.bob)
	sb.trustRoot(pp.pki)
	msg := sa.file("msg.eml", []byte(message))

	// alice signs and encrypts to bob and carol (and herself, the sender).
	enc := filepath.Join(sa.root, "enc.eml")
	sa.setPINs(passphrase)
	n := len(sa.sessions())
	sa.must("encrypt", "--to", bob+","+carol, "--sign", "--from", alice, "--in", msg, "--out", enc)
	if got := len(sa.sessions()) - n; got != 1 {
		t.Errorf("encrypt --sign showed %d prompts, want 1", got)
	}
	encData := sa.read(enc)
	if !bytes.Contains(encData, []byte("application/pkcs7-mime")) || bytes.Contains(encData, []byte(body)) {
		t.Fatalf("encrypted message:\n%.600s", encData)
	}

	checkOpened := func(t *testing.T, st status, who string) {
		t.Helper()
		if !st.Encrypted || st.Decryption != "ok" || !st.Signed || st.Signature != "good" || st.Signer.Email != alice || st.Error != "" {
			t.Errorf("%s's decrypt status: %+v", who, st)
		}
		if len(st.Layers) != 2 || st.Layers[0].Type != "enveloped" || st.Layers[1].Type != "signed" {
			t.Errorf("%s's layers: %+v", who, st.Layers)
		}
	}

	// alice (the sender) reads her sent copy: one prompt.
	out := filepath.Join(sa.root, "dec.eml")
	stPath := filepath.Join(sa.root, "dec.json")
	sa.setPINs(passphrase)
	n = len(sa.sessions())
	r := sa.must("decrypt", "--in", enc, "--out", out, "--status-json", stPath)
	if got := len(sa.sessions()) - n; got != 1 {
		t.Errorf("decrypt showed %d prompts, want 1", got)
	}
	if !strings.Contains(r.stderr, "decrypted") || !strings.Contains(r.stderr, "signature good") {
		t.Errorf("decrypt summary: %v", r)
	}
	if !bytes.Contains(sa.read(out), []byte(body)) {
		t.Errorf("decrypted content:\n%s", sa.read(out))
	}
	checkOpened(t, readStatus(t, stPath), "alice")

	// bob, in his own session, reads it too.
	bEnc := sb.file("enc.eml", encData)
	bStatus := filepath.Join(sb.root, "dec.json")
	sb.setPINs(passphrase)
	r = sb.must("decrypt", "--in", bEnc, "--status-json", bStatus)
	if !strings.Contains(r.stdout, body) {
		t.Errorf("bob's decrypt: %v", r)
	}
	checkOpened(t, readStatus(t, bStatus), "bob")

	// carol reads it with OpenSSL: she is a recipient too.
	_, carolKey, _ := pp.carol.WriteFiles(t, sa.root)
	carolCert := sa.file("carol.cert.pem", testpki.CertPEM(pp.carol.Cert))
	cmd := exec.Command(openssl, "cms", "-decrypt", "-in", enc, "-recip", carolCert, "-inkey", carolKey)
	if o, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(o, []byte(body)) {
		t.Errorf("openssl cms -decrypt as carol: %v\n%s", err, o)
	}

	// A message bob is not a recipient of: exit 1, no-key, no prompt.
	onlyCarol := filepath.Join(sa.root, "carol-only.eml")
	sa.must("encrypt", "--to", carol, "--in", msg, "--out", onlyCarol)
	sb.setPINs(passphrase)
	n = len(sb.sessions())
	r = sb.ctl("decrypt", "--in", sb.file("carol-only.eml", sa.read(onlyCarol)), "--status-json", bStatus)
	if r.code != 1 {
		t.Errorf("decrypt without a key: %v", r)
	}
	if st := readStatus(t, bStatus); st.Decryption != "no-key" || !st.Encrypted || st.Error == "" {
		t.Errorf("no-key status: %+v", st)
	}
	if len(sb.sessions()) != n {
		t.Error("decrypt without a key showed a prompt")
	}
	// verify of an encrypted message: processed, nothing verified, exit 1.
	sb.want(1, "", "verify", "--in", sb.file("enc2.eml", encData))

	// Encrypting to an address without a certificate: exit 2.
	sa.want(2, "NoRecipientCertificate", "encrypt", "--to", "nobody@example.com", "--in", msg)
	// Encrypt to EC dave via stdin/stdout, decrypt with OpenSSL.
	sa.must("certs", "add", sa.file("dave.pem", testpki.CertPEM(pp.dave.Cert)))
	r = sa.ctlIn([]byte(message), "encrypt", "--to", "dave@example.com")
	if r.code != 0 {
		t.Fatalf("encrypt to an EC recipient: %v", r)
	}
	_, daveKey, _ := pp.dave.WriteFiles(t, sa.root)
	cmd = exec.Command(openssl, "cms", "-decrypt", "-in", sa.file("dave.eml", []byte(r.stdout)), "-recip",
		sa.file("dave.cert.pem", testpki.CertPEM(pp.dave.Cert)), "-inkey", daveKey)
	if o, err := cmd.CombinedOutput(); err != nil || !bytes.Contains(o, []byte(body)) {
		t.Errorf("openssl cms -decrypt as dave: %v\n%s", err, o)
	}
}

func TestPrompts(t *testing.T) {
	t.Parallel()
	pp := newPeople(t)
	s := newSandbox(t, options{})
	s.importP12(pp.alice)
	s.trustRoot(pp.pki)
	s.must("certs", "add", s.file("bob.pem", testpki.CertPEM(pp.bob.Cert)))
	msg := s.file("msg.eml", []byte(message))
	out := filepath.Join(s.root, "out.eml")

	// Cancelled: exit 1, Cancelled, exactly one prompt, no output file.
	s.setPINs() // no answer: the pinentry cancels
	n := len(s.sessions())
	s.want(1, "Cancelled", "sign", "--from", alice, "--in", msg, "--out", out)
	if sess := s.sessions()[n:]; len(sess) != 1 || sess[0].Outcome != "cancelled" {
		t.Errorf("cancelled sign: sessions %+v", sess)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a cancelled sign left its --out file")
	}

	// Wrong passphrase: PinIncorrect after one prompt, and no retry (the
	// right passphrase queued after it is still unused).
	s.setPINs(wrongPIN, passphrase)
	n = len(s.sessions())
	s.want(1, "PinIncorrect", "sign", "--from", alice, "--in", msg, "--out", out)
	if sess := s.sessions()[n:]; len(sess) != 1 || sess[0].Outcome != "pin" {
		t.Errorf("wrong passphrase: sessions %+v", sess)
	}
	if left := s.pinsLeft(); !slices.Equal(left, []string{passphrase}) {
		t.Errorf("the daemon retried after a wrong passphrase: answers left %d", len(left))
	}
	// The next operation works with one prompt, which says what is done
	// and with which key.
	n = len(s.sessions())
	s.must("sign", "--from", alice, "--in", msg, "--out", out)
	sess := s.sessions()[n:]
	if len(sess) != 1 {
		t.Fatalf("sign after a wrong passphrase: %d prompts", len(sess))
	}
	if d := sess[0].Description(); !strings.Contains(strings.ToLower(d), "sign") || !strings.Contains(d, alice) {
		t.Errorf("sign prompt description %q does not say sign and %s", d, alice)
	}

	// Decrypt: one prompt; cancelled and wrong passphrase too.
	enc := filepath.Join(s.root, "enc.eml")
	s.must("encrypt", "--to", bob, "--in", msg, "--out", enc)
	stPath := filepath.Join(s.root, "st.json")
	for _, tc := range []struct {
		pins []string
		code int
		name string
	}{
		{nil, 1, "Cancelled"},
		{[]string{wrongPIN, passphrase}, 1, "PinIncorrect"},
		{[]string{passphrase}, 0, ""},
	} {
		s.setPINs(tc.pins...)
		n = len(s.sessions())
		r := s.want(tc.code, tc.name, "decrypt", "--in", enc, "--status-json", stPath)
		if got := len(s.sessions()) - n; got != 1 {
			t.Errorf("decrypt (%s) showed %d prompts", tc.name, got)
		}
		st := readStatus(t, stPath)
		if tc.code == 0 {
			if st.Decryption != "ok" || !strings.Contains(r.stdout, body) {
				t.Errorf("decrypt: %+v %v", st, r)
			}
			if d := s.sessions()[n].Description(); !strings.Contains(strings.ToLower(d), "decrypt") {
				t.Errorf("decrypt prompt description %q", d)
			}
		} else if !strings.Contains(st.Error, "("+tc.name+")") {
			// D-Bus error replies carry no status: smimectl's status JSON
			// then reports the error alone.
			t.Errorf("decrypt (%s) status: %+v", tc.name, st)
		}
	}
}

// With a machine policy that allows a passphrase cache, the second
// signature within the TTL needs no prompt; without one (every other
// test), each private-key operation prompts once.
func TestPassphraseCachePolicy(t *testing.T) {
	t.Parallel()
	pp := newPeople(t)
	s := newSandbox(t, options{policy: "[keystore]\ncache_ttl = \"10m\""})
	s.importP12(pp.alice)
	msg := s.file("msg.eml", []byte(message))
	s.setPINs(passphrase)
	n := len(s.sessions())
	s.must("sign", "--from", alice, "--in", msg)
	s.must("sign", "--from", alice, "--in", msg)
	if got := len(s.sessions()) - n; got != 1 {
		t.Errorf("two signatures within the cache TTL showed %d prompts, want 1", got)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	s := newSandbox(t, options{noDaemon: true})
	msg := s.file("msg.eml", []byte(message))
	for _, args := range [][]string{{"status"}, {"identities", "--json"}, {"sign", "--from", alice, "--in", msg}, {"verify", "--in", msg}} {
		r := s.want(3, "", args...)
		if !strings.Contains(r.stderr, "systemctl --user start smimed") {
			t.Errorf("no hint how to start the daemon: %v", r)
		}
	}
	// No bus at all at the address.
	env := append(s.baseEnv(), "DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(s.root, "no-such-bus"))
	if r := runCtl(t, env, nil, "status"); r.code != 3 {
		t.Errorf("status with no bus: %v", r)
	}
	if r := runCtl(t, s.baseEnv(), nil, "--address", "unix:path="+filepath.Join(s.root, "no-such-bus"), "status"); r.code != 3 {
		t.Errorf("status --address with no bus: %v", r)
	}
	// --address reaches a daemon the environment does not name.
	s.start()
	if r := runCtl(t, s.baseEnv(), nil, "--address", s.busAddr, "status"); r.code != 0 {
		t.Errorf("status --address: %v", r)
	}
	if err := s.stop(); err != nil {
		t.Errorf("smimed on SIGTERM: %v\n%s", err, s.log())
	}
	s.want(3, "", "status")
}

func TestRestartKeepsKeystore(t *testing.T) {
	t.Parallel()
	pp := newPeople(t)
	s := newSandbox(t, options{})
	s.importP12(pp.alice)
	s.trustRoot(pp.pki)
	s.must("certs", "add", s.file("bob.pem", testpki.CertPEM(pp.bob.Cert)))
	before := s.must("identities", "--json").stdout

	if err := s.stop(); err != nil {
		t.Fatalf("smimed on SIGTERM: %v\n%s", err, s.log())
	}
	s.want(3, "", "identities")
	s.start()
	if after := s.must("identities", "--json").stdout; after != before {
		t.Errorf("identities after restart:\n%s\nbefore:\n%s", after, before)
	}
	if r := s.must("trust", "list"); !strings.Contains(r.stdout, "smimed test root") {
		t.Errorf("trust anchors after restart: %v", r)
	}
	if r := s.must("certs", "list"); !strings.Contains(r.stdout, bob) {
		t.Errorf("address book after restart: %v", r)
	}
	s.setPINs(passphrase)
	signed := s.must("sign", "--from", alice, "--in", s.file("msg.eml", []byte(message))).stdout
	if r := s.ctlIn([]byte(signed), "verify"); r.code != 0 {
		t.Errorf("verify after restart: %v", r)
	}
}

func TestConcurrentSign(t *testing.T) {
	t.Parallel()
	const clients = 50
	pp := newPeople(t)
	s := newSandbox(t, options{})
	s.importP12(pp.alice)
	s.trustRoot(pp.pki)
	msg := s.file("msg.eml", []byte(message))
	pins := make([]string, clients)
	for i := range pins {
		pins[i] = passphrase
	}
	s.setPINs(pins...)
	n := len(s.sessions())

	results := make([]result, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			results[i] = s.ctl("sign", "--from", alice, "--in", msg, "--out", filepath.Join(s.root, fmt.Sprintf("signed-%d.eml", i)))
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("client %d: %v", i, r)
		}
	}
	if got := len(s.sessions()) - n; got != clients {
		t.Errorf("%d prompts for %d signatures", got, clients)
	}
	// Every output verifies.
	for i := range clients {
		if r := s.ctl("verify", "--in", filepath.Join(s.root, fmt.Sprintf("signed-%d.eml", i))); r.code != 0 {
			t.Errorf("verify of client %d's message: %v", i, r)
		}
	}
}

func TestSecretServiceKeyring(t *testing.T) {
	t.Parallel()
	pp := newPeople(t)
	s := newSandbox(t, options{keyring: true})
	r := s.must("status", "--json")
	var st map[string]any
	decodeJSON(t, []byte(r.stdout), &st)
	if st["keystore"] != "secret-service" {
		t.Errorf("status with gnome-keyring: %s", r.stdout)
	}
	s.importP12(pp.alice)
	s.trustRoot(pp.pki)
	r = s.must("identities", "--json")
	if !strings.Contains(r.stdout, alice) || !strings.Contains(r.stdout, `"source": "secret-service"`) {
		t.Errorf("identities on the secret service: %s", r.stdout)
	}
	msg := s.file("msg.eml", []byte(message))
	s.setPINs(passphrase)
	signed := s.must("sign", "--from", alice, "--in", msg).stdout
	if r := s.ctlIn([]byte(signed), "verify"); r.code != 0 {
		t.Errorf("verify: %v", r)
	}

	// Locked collection: KeystoreLocked, no passphrase prompt; the daemon
	// keeps serving what does not need the keystore.
	s.lockKeyring()
	s.setPINs(passphrase)
	n := len(s.sessions())
	s.want(1, "KeystoreLocked", "sign", "--from", alice, "--in", msg)
	s.want(1, "KeystoreLocked", "identities")
	if len(s.sessions()) != n {
		t.Error("a locked keyring still led to a passphrase prompt")
	}
	if r := s.ctlIn([]byte(signed), "verify"); r.code != 0 {
		t.Errorf("verify with the keyring locked: %v", r)
	}
	s.must("status")
}

func TestMalformedInput(t *testing.T) {
	t.Parallel()
	pp := newPeople(t)
	s := newSandbox(t, options{})
	s.importP12(pp.alice)
	s.trustRoot(pp.pki)
	msg := s.file("msg.eml", []byte(message))
	s.setPINs(passphrase)
	signed := []byte(s.must("sign", "--from", alice, "--in", msg).stdout)

	cases := map[string][]byte{
		"garbage":      bytes.Repeat([]byte{0xff, 0x00, 0x13}, 1000),
		"no boundary":  []byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"\r\n\r\nhello\r\n"),
		"truncated":    signed[:len(signed)*2/3],
		"bad base64":   []byte("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n"),
		"unterminated": []byte("Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n"),
	}
	for name, data := range cases {
		path := s.file("bad.eml", data)
		for _, cmd := range []string{"verify", "decrypt"} {
			stPath := filepath.Join(s.root, "bad.json")
			r := s.ctl(cmd, "--in", path, "--status-json", stPath)
			if r.code != 2 || !strings.Contains(r.stderr, "(BadMessage)") {
				t.Errorf("%s of %s: %v", cmd, name, r)
			}
			if st := readStatus(t, stPath); st.Error == "" {
				t.Errorf("%s of %s: status without error: %+v", cmd, name, st)
			}
			// Still serving after each.
			s.must("status")
		}
	}
	s.setPINs(passphrase)
	s.must("sign", "--from", alice, "--in", msg)
}

// The passphrase, the PKCS#12 password and a wrong passphrase go through
// every path that handles them, with smimed logging at debug level; none
// may be written anywhere (every sandbox checks this at cleanup; this test
// makes sure all paths ran and the audit trail exists, so the check
// covered it).
func TestNoSecretsWritten(t *testing.T) {
	t.Parallel()
	pp := newPeople(t)
	s := newSandbox(t, options{args: []string{"--log-level", "debug"}})
	s.importP12(pp.alice)
	s.setPINs(p12Password, passphrase, passphrase)
	s.must("import-p12", s.file("bob.p12", pp.bob.PKCS12(t, p12Password, true)))
	s.trustRoot(pp.pki)
	msg := s.file("msg.eml", []byte(message))
	s.setPINs(passphrase)
	enc := s.must("encrypt", "--to", bob, "--sign", "--from", alice, "--in", msg).stdout
	encPath := s.file("enc.eml", []byte(enc))
	s.setPINs(passphrase)
	s.must("decrypt", "--in", encPath)
	s.setPINs(wrongPIN)
	s.want(1, "PinIncorrect", "sign", "--from", alice, "--in", msg)
	s.setPINs(wrongPIN)
	s.want(1, "PinIncorrect", "decrypt", "--in", encPath)
	s.setPINs()
	s.want(1, "Cancelled", "sign", "--from", bob, "--in", msg)
	if err := s.stop(); err != nil {
		t.Errorf("smimed on SIGTERM: %v", err)
	}

	audit := filepath.Join(s.state, "smimed", "audit.log")
	data, err := os.ReadFile(audit)
	if err != nil {
		t.Fatalf("audit trail: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	// import (alice, bob), encrypt+sign, decrypt, 2 wrong, 1 cancelled
	if len(lines) < 5 {
		t.Errorf("audit trail has %d lines:\n%s", len(lines), data)
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("audit line is not JSON: %q", l)
		}
	}
	if bytes.Contains(data, []byte(body)) {
		t.Error("the audit trail holds message content")
	}
	if s.log() == "" {
		t.Log("smimed wrote nothing to stderr")
	}
	s.checkNoSecrets()
}
