package main

// These tests cover argument parsing, output formatting and the mapping of
// errors onto exit codes, against a fake service. Everything that talks to
// a real daemon is in tests/e2e.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/smimed/smimed/ipc"
)

var errFakeUnreachable = errors.New("fake: no daemon on the bus")

// fake is an ipc.Service that records its calls and answers from fields.
type fake struct {
	calls []string
	err   error // returned by every method when set

	status     ipc.DaemonStatus
	identities []ipc.Identity
	certs      []ipc.Certificate
	lookup     ipc.CertLookup
	msgStatus  ipc.MessageStatus
	output     string // written to out by message operations

	gotData     []byte
	gotPassword []byte
	gotSign     ipc.SignRequest
	gotEncrypt  ipc.EncryptRequest
	gotIn       string
}

func (f *fake) record(name string) error { f.calls = append(f.calls, name); return f.err }

func (f *fake) Status(context.Context) (ipc.DaemonStatus, error) {
	return f.status, f.record("Status")
}
func (f *fake) Identities(context.Context) ([]ipc.Identity, error) {
	return f.identities, f.record("Identities")
}
func (f *fake) Tokens(context.Context) ([]ipc.Token, error) { return nil, f.record("Tokens") }
func (f *fake) ImportPKCS12(_ context.Context, data, password []byte) (ipc.Identity, error) {
	f.gotData, f.gotPassword = slices.Clone(data), slices.Clone(password)
	if password != nil && f.gotPassword == nil {
		f.gotPassword = []byte{}
	}
	return ipc.Identity{ID: "id1", Emails: []string{"a@example.com"}, Subject: "CN=a", KeyType: "rsa2048"}, f.record("ImportPKCS12")
}
func (f *fake) TrustAdd(_ context.Context, c []byte) ([]ipc.Certificate, error) {
	f.gotData = c
	return f.certs, f.record("TrustAdd")
}
func (f *fake) TrustList(context.Context) ([]ipc.Certificate, error) {
	return f.certs, f.record("TrustList")
}
func (f *fake) TrustRemove(_ context.Context, c []byte) ([]ipc.Certificate, error) {
	f.gotData = c
	return f.certs, f.record("TrustRemove")
}
func (f *fake) CertsAdd(_ context.Context, d []byte) ([]ipc.Certificate, error) {
	f.gotData = d
	return f.certs, f.record("CertsAdd")
}
func (f *fake) CertsList(context.Context) ([]ipc.Certificate, error) {
	return f.certs, f.record("CertsList")
}
func (f *fake) CertsFind(_ context.Context, email string) (ipc.CertLookup, error) {
	f.lookup.Email = email
	return f.lookup, f.record("CertsFind")
}
func (f *fake) message(in io.Reader, out io.Writer) {
	data, _ := io.ReadAll(in)
	f.gotIn = string(data)
	io.WriteString(out, f.output)
}
func (f *fake) Sign(_ context.Context, req ipc.SignRequest, in io.Reader, out io.Writer) error {
	f.gotSign = req
	f.message(in, out)
	return f.record("Sign")
}
func (f *fake) Encrypt(_ context.Context, req ipc.EncryptRequest, in io.Reader, out io.Writer) error {
	f.gotEncrypt = req
	f.message(in, out)
	return f.record("Encrypt")
}
func (f *fake) Decrypt(_ context.Context, _ ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	f.message(in, out)
	return f.msgStatus, f.record("Decrypt")
}
func (f *fake) Verify(_ context.Context, _ ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	f.message(in, out)
	return f.msgStatus, f.record("Verify")
}

type result struct {
	code           int
	stdout, stderr string
	address        string
}

// runCLI runs smimectl against svc (nil: the daemon is unreachable).
func runCLI(t *testing.T, svc ipc.Service, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	var dialed string
	a := &app{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errOut,
		dial: func(_ context.Context, address string) (ipc.Service, error) {
			dialed = address
			if svc == nil {
				return nil, errFakeUnreachable
			}
			return svc, nil
		},
		unreachable: func(err error) bool { return errors.Is(err, errFakeUnreachable) },
	}
	code := a.run(context.Background(), args)
	return result{code, out.String(), errOut.String(), dialed}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := runCLI(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "usage: smimectl") {
			t.Errorf("%v: code %d, stdout %q", args, r.code, r.stdout)
		}
		for _, name := range commandNames() {
			if !strings.Contains(r.stdout, "  "+name+" ") {
				t.Errorf("%v: help does not list %s", args, name)
			}
		}
	}
	for _, name := range commandNames() {
		for _, args := range [][]string{{"help", name}, {name, "--help"}} {
			if name == "help" && args[1] == "--help" {
				continue
			}
			r := runCLI(t, nil, "", args...)
			if r.code != 0 || !strings.Contains(r.stdout, "usage: smimectl "+name) {
				t.Errorf("%v: code %d, stdout %q stderr %q", args, r.code, r.stdout, r.stderr)
			}
		}
	}
	if r := runCLI(t, nil, ""); r.code != 2 || !strings.Contains(r.stderr, "usage: smimectl") {
		t.Errorf("no arguments: code %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, nil, "", "help", "frobnicate"); r.code != 2 {
		t.Errorf("help of an unknown command: code %d", r.code)
	}
}

// The command set is exactly DESIGN.md's, plus help.
func TestCommandSet(t *testing.T) {
	want := []string{"certs", "decrypt", "encrypt", "help", "identities", "import-p12", "sign", "status", "tokens", "trust", "verify"}
	if got := commandNames(); !slices.Equal(got, want) {
		t.Errorf("commands %v, want %v", got, want)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		{"frobnicate"},
		{"status", "extra"},
		{"status", "--bogus"},
		{"identities", "--json=maybe"},
		{"import-p12"},
		{"import-p12", "a.p12", "b.p12"},
		{"import-p12", "a.p12", "--password-file"},
		{"trust"},
		{"trust", "add"},
		{"trust", "list", "x"},
		{"trust", "drop", "x.pem"},
		{"certs", "find"},
		{"certs", "add", "x", "--json"},
		{"certs", "nope"},
		{"sign"},
		{"sign", "--from"},
		{"sign", "--from", "a@example.com", "stray"},
		{"encrypt", "--from", "a@example.com"},
		{"encrypt", "--to", "b@example.com", "--sign"},
		{"encrypt", "--to", ","},
		{"decrypt", "--out"},
		{"verify", "--out", "x"}, // verify has no --out in DESIGN.md
		{"---status"},
	}
	for _, args := range tests {
		f := &fake{}
		r := runCLI(t, f, "", args...)
		if r.code != 2 {
			t.Errorf("%q: code %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
		if !strings.HasPrefix(r.stderr, "smimectl") {
			t.Errorf("%q: stderr %q", args, r.stderr)
		}
		if len(f.calls) != 0 {
			t.Errorf("%q: called the daemon: %v", args, f.calls)
		}
	}
}

func TestUnreachable(t *testing.T) {
	for _, args := range [][]string{{"status"}, {"identities", "--json"}, {"sign", "--from", "a@example.com"}, {"verify"}, {"decrypt"}} {
		r := runCLI(t, nil, "msg", args...)
		if r.code != 3 {
			t.Errorf("%q: code %d, want 3", args, r.code)
		}
		if !strings.Contains(r.stderr, "systemctl --user start smimed") || !strings.Contains(r.stderr, "make run") {
			t.Errorf("%q: stderr does not say how to start the daemon: %q", args, r.stderr)
		}
	}
}

func TestAddressFlag(t *testing.T) {
	for _, args := range [][]string{
		{"--address", "unix:path=/x", "status"},
		{"--address=unix:path=/x", "status"},
		{"status", "--address", "unix:path=/x"},
	} {
		r := runCLI(t, &fake{}, "", args...)
		if r.code != 0 || r.address != "unix:path=/x" {
			t.Errorf("%q: code %d, dialed %q", args, r.code, r.address)
		}
	}
}

func TestErrorNamesAndExitCodes(t *testing.T) {
	want := map[ipc.ErrorName]int{
		ipc.Cancelled: 1, ipc.PinIncorrect: 1, ipc.PinLocked: 1, ipc.TokenRemoved: 1,
		ipc.NoIdentity: 2, ipc.NoRecipientCertificate: 2, ipc.BadMessage: 2, ipc.TooLarge: 2,
		ipc.NotAuthorized: 1, ipc.KeystoreLocked: 1, ipc.Unsupported: 2, ipc.Internal: 1,
	}
	for _, name := range ipc.AllErrorNames() {
		code, ok := want[name]
		if !ok {
			t.Fatalf("no expected exit code for %s", name)
		}
		f := &fake{err: ipc.Errorf(name, "the reason")}
		r := runCLI(t, f, "msg", "sign", "--from", "a@example.com")
		if r.code != code {
			t.Errorf("%s: code %d, want %d", name, r.code, code)
		}
		if wantMsg := "smimectl: the reason (" + string(name) + ")\n"; r.stderr != wantMsg {
			t.Errorf("%s: stderr %q, want %q", name, r.stderr, wantMsg)
		}
	}
	// A non-typed error (the transport failing mid-call) is exit 1.
	f := &fake{err: errors.New("connection reset")}
	if r := runCLI(t, f, "", "status"); r.code != 1 || r.stderr != "smimectl: connection reset\n" {
		t.Errorf("plain error: code %d stderr %q", r.code, r.stderr)
	}
}

func TestStatusOutput(t *testing.T) {
	f := &fake{status: ipc.DaemonStatus{Version: "0.1", PID: 42, Keystore: "file", Identities: 2, Tokens: 0, Config: "/c", Uptime: "1m0s"}}
	r := runCLI(t, f, "", "status", "--json")
	if r.code != 0 {
		t.Fatalf("code %d: %s", r.code, r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(mapsKeys(m))
	if want := []string{"config", "identities", "keystore", "pid", "tokens", "uptime", "version"}; !slices.Equal(keys, want) {
		t.Errorf("status JSON keys %v, want %v", keys, want)
	}
	r = runCLI(t, f, "", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "pid 42") || !strings.Contains(r.stdout, "keystore:   file") {
		t.Errorf("human status %q", r.stdout)
	}
}

func mapsKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestListsJSONAndTables(t *testing.T) {
	f := &fake{}
	for _, args := range [][]string{{"identities", "--json"}, {"tokens", "--json"}, {"certs", "list", "--json"}} {
		r := runCLI(t, f, "", args...)
		if r.code != 0 || r.stdout != "[]\n" {
			t.Errorf("%q on nothing: code %d stdout %q", args, r.code, r.stdout)
		}
	}
	f.identities = []ipc.Identity{{ID: "abc", Emails: []string{"a@example.com"}, KeyType: "p256", CanSign: true, CanDecrypt: true, NotAfter: "2027-01-02T03:04:05Z", Source: "file", Subject: "CN=a"}}
	r := runCLI(t, f, "", "identities")
	if r.code != 0 || !strings.Contains(r.stdout, "a@example.com") || !strings.Contains(r.stdout, "sign,decrypt") || !strings.Contains(r.stdout, "2027-01-02") {
		t.Errorf("identities table %q", r.stdout)
	}
	r = runCLI(t, f, "", "identities", "--json")
	var ids []ipc.Identity
	if err := json.Unmarshal([]byte(r.stdout), &ids); err != nil || !reflect.DeepEqual(ids, f.identities) {
		t.Errorf("identities JSON %q: %v", r.stdout, err)
	}

	f.lookup = ipc.CertLookup{Reason: "none-found"}
	r = runCLI(t, f, "", "certs", "find", "--json", "b@example.com")
	if r.code != 0 || !strings.Contains(r.stdout, `"certificates": []`) || !strings.Contains(r.stdout, `"reason": "none-found"`) {
		t.Errorf("certs find JSON %q", r.stdout)
	}
	r = runCLI(t, f, "", "certs", "find", "b@example.com")
	if r.code != 0 || !strings.Contains(r.stdout, "no usable certificate for b@example.com (none-found)") {
		t.Errorf("certs find %q", r.stdout)
	}
}

func TestImportP12(t *testing.T) {
	dir := t.TempDir()
	p12 := filepath.Join(dir, "a.p12")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(p12, []byte("P12DATA"), 0o600)
	os.WriteFile(pw, []byte("s3cret\r\nignored\n"), 0o600)

	f := &fake{}
	r := runCLI(t, f, "", "import-p12", p12, "--password-file", pw)
	if r.code != 0 || string(f.gotData) != "P12DATA" || string(f.gotPassword) != "s3cret" {
		t.Errorf("code %d data %q password %q stderr %q", r.code, f.gotData, f.gotPassword, r.stderr)
	}
	if !strings.Contains(r.stdout, "imported id1") {
		t.Errorf("stdout %q", r.stdout)
	}
	f = &fake{}
	r = runCLI(t, f, "", "import-p12", "--password-file="+pw, p12)
	if r.code != 0 || string(f.gotPassword) != "s3cret" {
		t.Errorf("flag first: code %d password %q", r.code, f.gotPassword)
	}
	// No --password-file: nil, the daemon asks.
	f = &fake{}
	if r = runCLI(t, f, "", "import-p12", p12); r.code != 0 || f.gotPassword != nil {
		t.Errorf("no password file: code %d password %q", r.code, f.gotPassword)
	}
	// An empty password file: an empty password, not "ask".
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	f = &fake{}
	if r = runCLI(t, f, "", "import-p12", p12, "--password-file", empty); r.code != 0 || f.gotPassword == nil || len(f.gotPassword) != 0 {
		t.Errorf("empty password file: code %d password %q", r.code, f.gotPassword)
	}
	// stdin as FILE.
	f = &fake{}
	if r = runCLI(t, f, "FROMSTDIN", "import-p12", "-"); r.code != 0 || string(f.gotData) != "FROMSTDIN" {
		t.Errorf("stdin: code %d data %q", r.code, f.gotData)
	}
	// A missing file is an input error, before the daemon is asked.
	f = &fake{}
	if r = runCLI(t, f, "", "import-p12", filepath.Join(dir, "missing.p12")); r.code != 2 || len(f.calls) != 0 {
		t.Errorf("missing file: code %d calls %v", r.code, f.calls)
	}
}

func TestTrust(t *testing.T) {
	dir := t.TempDir()
	pemPath := filepath.Join(dir, "ca.pem")
	os.WriteFile(pemPath, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600)
	f := &fake{certs: []ipc.Certificate{{SHA256: strings.Repeat("ab", 32), Subject: "CN=CA"}}}
	if r := runCLI(t, f, "", "trust", "add", pemPath); r.code != 0 || !strings.Contains(r.stdout, "trusted "+strings.Repeat("ab", 32)) {
		t.Errorf("trust add: %+v", r)
	}
	if r := runCLI(t, f, "", "trust", "list"); r.code != 0 || !strings.Contains(r.stdout, "CN=CA") {
		t.Errorf("trust list: %+v", r)
	}
	fp := strings.ToUpper(strings.Repeat("ab:", 31) + "ab")
	if r := runCLI(t, f, "", "trust", "remove", fp); r.code != 0 || string(f.gotData) != strings.Repeat("ab", 32) {
		t.Errorf("trust remove by fingerprint: %+v, sent %q", r, f.gotData)
	}
	f.certs = nil
	if r := runCLI(t, f, "", "trust", "remove", pemPath); r.code != 2 || !strings.Contains(r.stderr, "no trust anchor matches") {
		t.Errorf("trust remove of nothing: %+v", r)
	}
}

func TestSignAndEncryptArgs(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "msg")
	os.WriteFile(in, []byte("hello"), 0o600)
	out := filepath.Join(dir, "signed")

	f := &fake{output: "SIGNED"}
	r := runCLI(t, f, "", "sign", "--from", "a@example.com", "--opaque", "--in", in, "--out", out)
	if r.code != 0 || f.gotSign != (ipc.SignRequest{From: "a@example.com", Opaque: true}) || f.gotIn != "hello" {
		t.Errorf("sign: %+v req %+v in %q", r, f.gotSign, f.gotIn)
	}
	if data, _ := os.ReadFile(out); string(data) != "SIGNED" {
		t.Errorf("--out holds %q", data)
	}
	// stdin/stdout by default.
	f = &fake{output: "SIGNED"}
	if r = runCLI(t, f, "from stdin", "sign", "--from=a@example.com"); r.code != 0 || r.stdout != "SIGNED" || f.gotIn != "from stdin" {
		t.Errorf("sign via stdio: %+v in %q", r, f.gotIn)
	}
	// A failed operation leaves no output file, and keeps an existing one.
	os.WriteFile(out, []byte("OLD"), 0o600)
	f = &fake{output: "PARTIAL", err: ipc.Errorf(ipc.Cancelled, "cancelled")}
	if r = runCLI(t, f, "", "sign", "--from", "a@example.com", "--in", in, "--out", out); r.code != 1 {
		t.Errorf("cancelled sign: %+v", r)
	}
	if data, _ := os.ReadFile(out); string(data) != "OLD" {
		t.Errorf("failed sign changed --out: %q", data)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}
	// A missing input is exit 2 before the daemon is asked.
	f = &fake{}
	if r = runCLI(t, f, "", "sign", "--from", "a@example.com", "--in", filepath.Join(dir, "none")); r.code != 2 || len(f.calls) != 0 {
		t.Errorf("missing --in: %+v calls %v", r, f.calls)
	}

	f = &fake{}
	r = runCLI(t, f, "", "encrypt", "--to", "b@example.com, c@example.com", "--to", "d@example.com", "--sign", "--from", "a@example.com")
	want := ipc.EncryptRequest{To: []string{"b@example.com", "c@example.com", "d@example.com"}, Sign: true, From: "a@example.com"}
	if r.code != 0 || !reflect.DeepEqual(f.gotEncrypt, want) {
		t.Errorf("encrypt: %+v req %+v", r, f.gotEncrypt)
	}
}

func TestVerifyAndDecrypt(t *testing.T) {
	good := ipc.MessageStatus{Signed: true, Signature: "good", Signer: ipc.SignerSummary{Email: "a@example.com", SHA256: "00ff"},
		Revocation: "not-checked", Decryption: "none", Layers: []ipc.Layer{{Type: "signed", Form: "detached"}}}
	tests := []struct {
		name   string
		cmd    string
		st     ipc.MessageStatus
		err    error
		code   int
		stderr string
	}{
		{"good", "verify", good, nil, 0, "verify: signature good from a@example.com (sha256 00ff); revocation not-checked"},
		{"bad", "verify", withSig(good, "bad"), nil, 1, "verify: signature bad from a@example.com"},
		{"untrusted", "verify", withSig(good, "untrusted"), nil, 1, "untrusted"},
		{"unsigned verify", "verify", ipc.MessageStatus{Encrypted: true, Signature: "none", Decryption: "none"}, nil, 1, "not decrypted"},
		{"malformed", "verify", ipc.MessageStatus{}, ipc.Errorf(ipc.BadMessage, "no boundary"), 2, "smimectl: no boundary (BadMessage)"},
		{"decrypt ok", "decrypt", ipc.MessageStatus{Encrypted: true, Signature: "none", Decryption: "ok", Layers: []ipc.Layer{{Type: "enveloped", Cipher: "aes-256-cbc"}}}, nil, 0, "decrypt: decrypted (aes-256-cbc); not signed"},
		{"decrypt signed good", "decrypt", withSig(good, "good"), nil, 0, "signature good"},
		{"decrypt bad inner signature", "decrypt", func() ipc.MessageStatus { s := withSig(good, "bad"); s.Encrypted, s.Decryption = true, "ok"; return s }(), nil, 1, "signature bad"},
		{"no key", "decrypt", ipc.MessageStatus{Encrypted: true, Decryption: "no-key"}, ipc.Errorf(ipc.NoIdentity, "no key for any recipient"), 1, "(NoIdentity)"},
		{"verify of an encrypted message", "verify", ipc.MessageStatus{}, ipc.Errorf(ipc.NoIdentity, "the message is encrypted"), 1, "(NoIdentity)"},
		{"not S/MIME", "decrypt", ipc.MessageStatus{Signature: "none", Decryption: "none", Error: "the message is not S/MIME protected"}, nil, 1, "not signed; error: the message is not S/MIME protected"},
		{"cancelled", "decrypt", ipc.MessageStatus{Encrypted: true}, ipc.Errorf(ipc.Cancelled, "cancelled"), 1, "(Cancelled)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			stPath := filepath.Join(dir, "status.json")
			f := &fake{msgStatus: tt.st, err: tt.err, output: "CONTENT"}
			r := runCLI(t, f, "MSG", tt.cmd, "--status-json", stPath)
			if r.code != tt.code {
				t.Errorf("code %d, want %d (stderr %q)", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.stderr) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line with %q", r.stderr, tt.stderr)
			}
			if tt.err == nil && r.stdout != "CONTENT" {
				t.Errorf("stdout %q", r.stdout)
			}
			data, err := os.ReadFile(stPath)
			if err != nil {
				t.Fatal(err)
			}
			checkStatusJSON(t, data)
		})
	}
}

func withSig(st ipc.MessageStatus, sig string) ipc.MessageStatus {
	st.Signature = sig
	return st
}

// checkStatusJSON checks the DESIGN.md field names and values.
func checkStatusJSON(t *testing.T, data []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("status JSON %s: %v", data, err)
	}
	for _, k := range []string{"encrypted", "signed", "signature", "signer", "revocation", "decryption", "layers", "error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status JSON lacks %q: %s", k, data)
		}
	}
	var st struct {
		Encrypted, Signed                 bool
		Signature, Revocation, Decryption string
		Signer                            map[string]string
		Layers                            []any
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Layers == nil {
		t.Errorf("layers is null: %s", data)
	}
	for _, k := range []string{"email", "subject", "sha256"} {
		if _, ok := st.Signer[k]; !ok {
			t.Errorf("signer lacks %q: %s", k, data)
		}
	}
	if !slices.Contains([]string{"good", "bad", "untrusted", "expired", "revoked", "weak-algorithm", "email-mismatch", "none"}, st.Signature) {
		t.Errorf("signature %q", st.Signature)
	}
	if !slices.Contains([]string{"good", "revoked", "unknown", "not-checked"}, st.Revocation) {
		t.Errorf("revocation %q", st.Revocation)
	}
	if !slices.Contains([]string{"ok", "no-key", "failed", "none"}, st.Decryption) {
		t.Errorf("decryption %q", st.Decryption)
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{"": "", "pw": "pw", "pw\n": "pw", "pw\r\nx": "pw", "\n": ""} {
		got := firstLine([]byte(in))
		if got == nil || string(got) != want {
			t.Errorf("firstLine(%q) = %q", in, got)
		}
	}
}
