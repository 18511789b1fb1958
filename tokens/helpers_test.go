package tokens_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/smimed/smimed/internal/testhsm"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens"
	"github.com/smimed/smimed/tokens/p11kit"
)

// openscModule is where p11-kit's opensc-pkcs11.module ("module:
// opensc-pkcs11.so") points.
var openscModule = filepath.Join(p11kit.DefaultModuleDir(), "opensc-pkcs11.so")

const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	testPIN       = "1234"
	testSOPIN     = "5678"
)

func TestMain(m *testing.M) {
	if tokens.IsWorker(os.Args) {
		tokens.WorkerMain()
	}
	dir, err := os.MkdirTemp("", "smimed-tokens-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildDir holds what the tests compile once per run (the shim module).
var (
	buildDir  string
	shimOnce  sync.Once
	shimPath  string
	shimError error
)

// shimModule compiles testdata/shim.c (a module forwarding to SoftHSM that
// misbehaves on request) and returns its path.
func shimModule(t testing.TB) string {
	t.Helper()
	need(t, "gcc")
	shimOnce.Do(func() {
		out, err := exec.Command(goCommand(), "list", "-m", "-f", "{{.Dir}}", "github.com/miekg/pkcs11").Output()
		if err != nil {
			shimError = fmt.Errorf("go list github.com/miekg/pkcs11: %w", err)
			return
		}
		inc := strings.TrimSpace(string(out))
		path := filepath.Join(buildDir, "shim.so")
		cmd := exec.Command("gcc", "-shared", "-fPIC", "-O1", "-Wall", "-I", inc, "-o", path, "testdata/shim.c", "-ldl")
		if msg, err := cmd.CombinedOutput(); err != nil {
			shimError = fmt.Errorf("gcc shim.c: %v\n%s", err, msg)
			return
		}
		shimPath = path
	})
	if shimError != nil {
		t.Fatal(shimError)
	}
	return shimPath
}

// need fails the test when a peer program or file is missing: a skipped
// interop test is a hidden hole.
func need(t testing.TB, what string) {
	t.Helper()
	if strings.HasPrefix(what, "/") {
		if _, err := os.Stat(what); err != nil {
			t.Fatalf("%s is missing (Debian packages softhsm2, opensc, opensc-pkcs11, gcc): %v", what, err)
		}
		return
	}
	if _, err := exec.LookPath(what); err != nil {
		t.Fatalf("%s is missing (Debian packages softhsm2, opensc, opensc-pkcs11, gcc, openssl): %v", what, err)
	}
}

// softHSM is a private SoftHSM2 configuration (internal/testhsm, shared
// with the daemon's tests); keySpec describes a key made on it.
type (
	softHSM = testhsm.HSM
	keySpec = testhsm.Key
)

// newSoftHSM makes an empty SoftHSM configuration whose certificates come
// from a fresh test PKI.
func newSoftHSM(t testing.TB) *softHSM { return testhsm.New(t, testpki.New(t)) }

// p11kitDirs writes module files into fresh package/system/user
// directories and returns options that read only them.
func p11kitDirs(t testing.TB, modules map[string]string) p11kit.Options {
	t.Helper()
	base := t.TempDir()
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
			t.Fatal(err)
		}
	}
	for name, content := range modules {
		if err := os.WriteFile(filepath.Join(o.PackageDir, name+".module"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// pinPrompter answers PIN requests and records every request.
type pinPrompter struct {
	mu     sync.Mutex
	reqs   []prompt.Request
	answer func(r prompt.Request) (*prompt.Secret, error)
}

func newPinPrompter(pin string) *pinPrompter {
	return &pinPrompter{answer: func(r prompt.Request) (*prompt.Secret, error) {
		if r.Kind == prompt.PIN {
			return prompt.NewSecret([]byte(pin)), nil
		}
		return nil, nil
	}}
}

func (p *pinPrompter) Ask(ctx context.Context, r prompt.Request) (*prompt.Secret, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, r)
	answer := p.answer
	p.mu.Unlock()
	if r.Kind == prompt.Notice {
		<-ctx.Done()
		return nil, nil
	}
	return answer(r)
}

func (p *pinPrompter) setAnswer(f func(prompt.Request) (*prompt.Secret, error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = f
}

func (p *pinPrompter) requests() []prompt.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]prompt.Request(nil), p.reqs...)
}

func (p *pinPrompter) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.reqs)
}

// fixture is a SoftHSM with tokens and a Manager that finds it through a
// p11-kit module file, with OpenSC's module configured as well.
type fixture struct {
	hsm      *softHSM
	prompter *pinPrompter
	m        *tokens.Manager
	log      *bytes.Buffer
}

type fixtureOptions struct {
	extraModules map[string]string // more p11-kit module files
	configured   []string          // Options.Modules
	opts         func(*tokens.Options)
	noOpenSC     bool
	noSoftHSM    bool // no plain SoftHSM module file (a shim stands for it)
}

func newFixture(t testing.TB, hsm *softHSM, fo fixtureOptions) *fixture {
	t.Helper()
	mods := map[string]string{}
	if !fo.noSoftHSM {
		mods["softhsm-test"] = "# test module\nmodule: " + softhsmModule + "\n"
	}
	if !fo.noOpenSC {
		need(t, openscModule)
		mods["opensc-test"] = "module: opensc-pkcs11.so\n"
	}
	for k, v := range fo.extraModules {
		mods[k] = v
	}
	f := &fixture{hsm: hsm, prompter: newPinPrompter(testPIN), log: new(bytes.Buffer)}
	o := tokens.Options{
		P11Kit:    p11kitDirs(t, mods),
		Modules:   fo.configured,
		Prompter:  f.prompter,
		Logger:    slog.New(slog.NewTextHandler(&syncWriter{w: f.log}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		WorkerEnv: []string{hsm.Env()},
	}
	if fo.opts != nil {
		fo.opts(&o)
	}
	m, err := tokens.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	t.Cleanup(func() {
		m.Close()
		if t.Failed() {
			t.Logf("manager log:\n%s", f.log.String())
		}
	})
	return f
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// identity returns the identity whose certificate is cert.
func (f *fixture) identity(t testing.TB, cert *x509.Certificate) tokens.Identity {
	t.Helper()
	ids, err := f.m.Identities(context.Background())
	if err != nil {
		t.Logf("Identities: %v", err) // other modules may fail on purpose
	}
	for _, id := range ids {
		if id.Certificate.Equal(cert) {
			return id
		}
	}
	t.Fatalf("no identity for %s among %d", cert.Subject, len(ids))
	return tokens.Identity{}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// goCommand finds the go tool (for `go list`); go test puts it first in
// PATH.
func goCommand() string { return "go" }

// encryptPKCS1v15 encrypts for a token key the way S/MIME peers still do.
func encryptPKCS1v15(t testing.TB, pub *rsa.PublicKey, msg []byte) []byte {
	t.Helper()
	//lint:ignore SA1019 S/MIME peers still send PKCS #1 v1.5 key transport; tokens must open it.
	ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

// standardToken makes token "T" with an always-auth RSA key (CKA_ID 01), an
// always-auth EC P-256 key (02) and an RSA key without always-auth (03).
type standardKeys struct {
	RSA, EC, Plain *x509.Certificate
	Dir            string // the token's directory under the SoftHSM token dir
}

func standardToken(t testing.TB, hsm *softHSM, label string) standardKeys {
	t.Helper()
	dir := hsm.InitToken(t, label)
	return standardKeys{
		Dir:   dir,
		RSA:   hsm.AddKey(t, label, keySpec{Type: "rsa:2048", ID: "01", Label: "rsa", Email: "rsa-" + strings.ToLower(label) + "@example.com", AlwaysAuth: true}),
		EC:    hsm.AddKey(t, label, keySpec{Type: "EC:prime256v1", ID: "02", Label: "ec", Email: "ec-" + strings.ToLower(label) + "@example.com", AlwaysAuth: true}),
		Plain: hsm.AddKey(t, label, keySpec{Type: "rsa:2048", ID: "03", Label: "plain", Email: "plain-" + strings.ToLower(label) + "@example.com"}),
	}
}

// shimFixture is a fixture whose only SoftHSM access goes through the shim
// module, with env for it.
func shimFixture(t testing.TB, hsm *softHSM, env ...string) *fixture {
	t.Helper()
	shim := shimModule(t)
	return newFixture(t, hsm, fixtureOptions{
		noSoftHSM:    true,
		noOpenSC:     true,
		extraModules: map[string]string{"shim": "module: " + shim + "\n"},
		opts: func(o *tokens.Options) {
			o.WorkerEnv = append(o.WorkerEnv, env...)
		},
	})
}

// logins reads the shim's login log: one "user-type rv" pair per C_Login.
func logins(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" {
			out = append(out, strings.TrimPrefix(l, "login "))
		}
	}
	return out
}

// openssl runs openssl and fails the test on error.
func openssl(t testing.TB, args ...string) string {
	t.Helper()
	need(t, "openssl")
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitEvent waits for an event of kind about the token labelled label.
func waitEvent(t testing.TB, ch <-chan tokens.Event, kind tokens.EventKind, label string, within time.Duration) tokens.Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed while waiting for %s %s", kind, label)
			}
			if ev.Kind == kind && ev.Token.Label == label {
				return ev
			}
			t.Logf("event %s %q (%s) %v", ev.Kind, ev.Token.Label, ev.Module, ev.Err)
		case <-deadline:
			t.Fatalf("no %s event for %s within %v", kind, label, within)
		}
	}
}
