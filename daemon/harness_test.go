package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/daemon/audit"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/prompt/pinentry/pinentrytest"
	"github.com/smimed/smimed/tokens"
)

// Passphrases used by the tests; none of them may ever appear in a log or
// the audit trail.
const (
	p12Password = "p12-Transport-Secret-7731"
	keyPass     = "Key-Passphrase-Secret-4419"
	wrongPass   = "Wrong-Passphrase-Secret-2208"
)

// harness is a Service over real components in temp directories: the file
// vault, the address book, the audit file, the config, and the real test
// pinentry, whose answers come from a PINs file the test rewrites between
// steps (an empty file cancels).
type harness struct {
	t         *testing.T
	svc       *Service
	pki       *testpki.PKI
	dir       string
	dataDir   string
	auditPath string
	pinLog    string
	pinsFile  string
	env       []string
	cfg       *config.Config
	logs      *syncBuffer
	notes     *notifier
	bus       *dbus.Conn
	tokOpts   func(*tokens.Options)
}

type harnessOptions struct {
	backend string     // keystore.backend; "file" when empty
	bus     *dbus.Conn // the session bus handed to the daemon
	user    string     // extra user config text
	prompt  string     // extra keys of the user config's [prompt] section
	policy  string     // machine policy text; "" = none
	tokens  string     // the user config's [tokens] section; "enabled = false" when empty
	tokOpts func(*tokens.Options)
	env     []string
	pki     *testpki.PKI
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	bin := pinentrytest.Build(t)
	dir := t.TempDir()
	h := &harness{
		t: t, dir: dir, pki: o.pki,
		dataDir:   filepath.Join(dir, "data", "smimed"),
		auditPath: filepath.Join(dir, "state", "smimed", "audit.log"),
		pinLog:    filepath.Join(dir, "pinentry.log"),
		pinsFile:  filepath.Join(dir, "pins"),
		logs:      &syncBuffer{},
		notes:     &notifier{},
	}
	if h.pki == nil {
		h.pki = testpki.New(t)
	}
	h.setPINs()
	h.env = append(os.Environ(), pinentrytest.Config{Log: h.pinLog}.Env(t)...)
	h.env = append(h.env, pinentrytest.EnvPINsFile+"="+h.pinsFile)
	h.env = append(h.env, o.env...)

	backend := o.backend
	if backend == "" {
		backend = "file"
	}
	h.bus = o.bus
	tokText := o.tokens
	if tokText == "" {
		tokText = "enabled = false\n"
	}
	h.tokOpts = o.tokOpts
	userText := "[prompt]\nprogram = " + quote(bin) + "\n" + o.prompt + "[audit]\nsyslog = false\n[keystore]\nbackend = " + quote(backend) + "\n" +
		"[tokens]\n" + tokText + o.user
	userPath := filepath.Join(dir, "config.toml")
	writeFile(t, userPath, userText)
	policyPath := filepath.Join(dir, "policy.toml")
	if o.policy != "" {
		writeFile(t, policyPath, o.policy)
	}
	cfg, err := config.Load(config.Paths{User: userPath, UserRequired: true, Policy: policyPath})
	if err != nil {
		t.Fatal(err)
	}
	h.cfg = cfg
	h.start()
	return h
}

// start opens a Service over the harness's directories (again, for a
// restart).
func (h *harness) start() {
	h.t.Helper()
	logger := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := Options{
		Config: h.cfg, DataDir: h.dataDir, AuditPath: h.auditPath, SpoolDir: filepath.Join(h.dir, "spool"), CacheDir: filepath.Join(h.dir, "cache"),
		Env: h.env, Logger: logger, Version: "test", Bus: h.bus,
	}
	if h.tokOpts != nil {
		h.tokOpts(&opts.Tokens)
	}
	svc, err := New(context.Background(), opts)
	if err != nil {
		h.t.Fatal(err)
	}
	svc.SetNotifier(h.notes)
	h.svc = svc
	h.t.Cleanup(func() { svc.Close() })
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// setPINs sets the answers of the next prompts, one per prompt; once they
// are used up, prompts are cancelled.
func (h *harness) setPINs(pins ...string) {
	h.t.Helper()
	text := ""
	for _, p := range pins {
		text += p + "\n"
	}
	writeFile(h.t, h.pinsFile, text)
}

// prompts returns the prompt sessions so far.
func (h *harness) prompts() []pinentrytest.Session { return pinentrytest.ReadLog(h.t, h.pinLog) }

// ctx returns a context carrying a caller, as a transport sets it.
func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	h.t.Cleanup(cancel)
	return ipc.WithCaller(ctx, ipc.Caller{UID: uint32(os.Getuid()), PID: 4242, Exe: "/usr/bin/smimectl", Name: ":1.42"})
}

// importIdentity imports id as the user's identity (two prompts: the new
// key passphrase and its repetition).
func (h *harness) importIdentity(id *testpki.Identity) ipc.Identity {
	h.t.Helper()
	h.setPINs(keyPass, keyPass)
	got, err := h.svc.ImportPKCS12(h.ctx(), id.PKCS12(h.t, p12Password, false), []byte(p12Password))
	if err != nil {
		h.t.Fatalf("ImportPKCS12: %v", err)
	}
	return got
}

func (h *harness) trustRoot() {
	h.t.Helper()
	if _, err := h.svc.TrustAdd(h.ctx(), testpki.CertPEM(h.pki.Root.Cert)); err != nil {
		h.t.Fatal(err)
	}
}

// auditLines returns the audit trail's entries.
func (h *harness) auditLines() []audit.Entry {
	h.t.Helper()
	f, err := os.Open(h.auditPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e audit.Entry
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			h.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// assertNoSecrets checks that no passphrase appears in the audit file, the
// daemon's log, the pinentry log or any file under the data directory.
func (h *harness) assertNoSecrets() {
	h.t.Helper()
	check := func(where string, data []byte) {
		for _, s := range []string{p12Password, keyPass, wrongPass} {
			if bytes.Contains(data, []byte(s)) {
				h.t.Errorf("%s contains a passphrase (%q)", where, s)
			}
		}
	}
	check("the daemon's log", h.logs.Bytes())
	for _, p := range []string{h.auditPath, h.pinLog} {
		data, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			h.t.Fatal(err)
		}
		check(p, data)
	}
	_ = filepath.WalkDir(h.dataDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			check(p, data)
		}
		return nil
	})
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newMail(from, to, subject, body string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\n" + body + "\r\n")
}

// wantName fails unless err is an *ipc.Error with the given name.
func wantName(t *testing.T, err error, name ipc.ErrorName) *ipc.Error {
	t.Helper()
	var ie *ipc.Error
	if !errors.As(err, &ie) || ie.Name != name {
		t.Fatalf("want ipc error %s, got %T %v", name, err, err)
	}
	return ie
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (slog handlers
// write from request goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }

// notifier counts change notifications.
type notifier struct {
	mu                sync.Mutex
	identities, certs int
}

func (n *notifier) EmitIdentitiesChanged() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.identities++
	return nil
}

func (n *notifier) EmitCertificatesChanged() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.certs++
	return nil
}

func (n *notifier) counts() (identities, certs int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.identities, n.certs
}

// sessionsSince returns the prompt sessions after the first n.
func sessionsSince(all []pinentrytest.Session, n int) []pinentrytest.Session {
	if n > len(all) {
		return nil
	}
	return all[n:]
}
