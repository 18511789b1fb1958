package keystore

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/prompt"
)

// cancelAnswer, as a scripted answer, makes the fake prompter report that
// the user cancelled.
const cancelAnswer = "\x00cancel"

// fakePrompter answers passphrase prompts from a script and records what it
// was asked and every secret buffer it handed out, so tests can count
// prompts and check that the store wiped the passphrases.
type fakePrompter struct {
	mu      sync.Mutex
	answers []string // consumed in order; def once they run out
	def     string
	err     error // returned instead of an answer when set
	reqs    []prompt.Request
	given   [][]byte // the Secret's own bytes, as handed out
	hook    func()   // runs inside Ask (tests use it to block)
}

func (f *fakePrompter) Ask(ctx context.Context, r prompt.Request) (*prompt.Secret, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	hook := f.hook
	err := f.err
	pw := f.def
	if len(f.answers) > 0 {
		pw, f.answers = f.answers[0], f.answers[1:]
	}
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if pw == cancelAnswer {
		err = fmt.Errorf("test pinentry: %w", prompt.ErrCancelled)
	}
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, prompt.ContextError(ctx, "test prompt")
	}
	b := []byte(pw)
	s := prompt.NewSecret(b)
	clear(b)
	f.mu.Lock()
	f.given = append(f.given, s.Bytes())
	f.mu.Unlock()
	return s, nil
}

func (f *fakePrompter) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakePrompter) requests() []prompt.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]prompt.Request(nil), f.reqs...)
}

// assertWiped fails unless every passphrase buffer handed out is all zeros.
func (f *fakePrompter) assertWiped(t *testing.T) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range f.given {
		if len(b) == 0 {
			continue
		}
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("passphrase %d handed to the store was not zeroed", i)
		}
	}
}

// secret makes a prompt.Secret for tests.
func secret(s string) *prompt.Secret {
	b := []byte(s)
	defer clear(b)
	return prompt.NewSecret(b)
}

// newFileStore opens a Store over a file vault in a fresh directory.
func newFileStore(t *testing.T, p prompt.Prompter, ttl time.Duration) (*Store, string) {
	t.Helper()
	dir := t.TempDir() + "/keys"
	v, err := NewFileVault(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{Vault: v, Prompter: p, CacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, dir
}

// reopen opens a second Store on the same file vault directory (a daemon
// restart).
func reopen(t *testing.T, dir string, p prompt.Prompter) *Store {
	t.Helper()
	v, err := NewFileVault(dir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{Vault: v, Prompter: p})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// needTool fails the test (never skips) when a real peer is missing.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (it is a real peer of these tests; run scripts/install-test-deps.sh): %v", name, err)
	}
	return p
}

// importPEM imports a testpki identity with the given passphrase.
func importPEM(t *testing.T, s *Store, id *testpki.Identity, pass string) Identity {
	t.Helper()
	var chain []byte
	chain = append(chain, testpki.CertPEM(id.Cert)...)
	for _, c := range id.Chain {
		chain = append(chain, testpki.CertPEM(c)...)
	}
	ident, err := s.ImportPEM(context.Background(), id.KeyPEM(t), chain, ImportOptions{NewPassphrase: secret(pass)})
	if err != nil {
		t.Fatalf("import %s: %v", id.Email, err)
	}
	return ident
}
