package tokens_test

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens"
	"github.com/smimed/smimed/tokens/internal/wire"
)

// The shim logs C_Login calls as "<user type> <rv>".
const (
	loginUserOK      = "1 0"
	loginContextOK   = "2 0"
	loginUserBadPIN  = "1 160" // CKR_PIN_INCORRECT
	loginUserLocked  = "1 164" // CKR_PIN_LOCKED
	loginUserNoPIN   = "1 7"   // CKR_ARGUMENTS_BAD: a PIN sent to a PIN pad
	loginUserPadStop = "1 80"  // CKR_FUNCTION_CANCELED
)

// TestLoginSequence checks the C_Login calls of one operation: CKU_USER
// then CKU_CONTEXT_SPECIFIC for an always-auth key, CKU_USER only for
// another key; nothing is left logged in.
func TestLoginSequence(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	log := filepath.Join(t.TempDir(), "logins")
	f := shimFixture(t, hsm, "SMIMED_SHIM_LOG="+log)
	ctx := ctxT(t)
	d := digest(crypto.SHA256, "x")

	s, err := f.m.Signer(ctx, f.identity(t, keys.RSA), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := logins(t, log), []string{loginUserOK, loginContextOK, loginUserOK, loginContextOK}; !slices.Equal(got, want) {
		t.Fatalf("always-auth key: logins %v, want %v", got, want)
	}
	s, err = f.m.Signer(ctx, f.identity(t, keys.Plain), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if got := logins(t, log); len(got) != 5 || got[4] != loginUserOK {
		t.Fatalf("plain key: logins %v", got)
	}
	if n := f.prompter.count(); n != 3 {
		t.Fatalf("%d prompts for 3 operations", n)
	}
}

// TestWrongPIN: a wrong PIN fails with ErrPinIncorrect after exactly one
// prompt and one login; it is not retried; the next prompt says so; the
// right PIN works afterwards.
func TestWrongPIN(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	log := filepath.Join(t.TempDir(), "logins")
	f := shimFixture(t, hsm, "SMIMED_SHIM_LOG="+log)
	ctx := ctxT(t)
	id := f.identity(t, keys.RSA)
	s, err := f.m.Signer(ctx, id, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	d := digest(crypto.SHA256, "x")

	var given []*prompt.Secret
	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) {
		p := prompt.NewSecret([]byte("9999"))
		given = append(given, p)
		return p, nil
	})
	_, err = s.Sign(nil, d, crypto.SHA256)
	wantErr(t, err, tokens.ErrPinIncorrect)
	if len(given) != 1 || given[0].Len() != 0 {
		t.Fatal("the PIN was not wiped after the operation")
	}
	if !strings.Contains(err.Error(), `"T"`) || strings.Contains(err.Error(), "9999") {
		t.Errorf("error message: %v", err)
	}
	if n := f.prompter.count(); n != 1 {
		t.Fatalf("%d prompts after a wrong PIN, want 1 (no retry)", n)
	}
	if got := logins(t, log); !slices.Equal(got, []string{loginUserBadPIN}) {
		t.Fatalf("logins %v", got)
	}
	toks, _ := f.m.Tokens(ctx)
	if len(toks) != 1 || toks[0].PINState != tokens.PINCountLow {
		t.Fatalf("tokens after a wrong PIN: %+v", toks)
	}

	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) {
		p := prompt.NewSecret([]byte(testPIN))
		given = append(given, p)
		return p, nil
	})
	if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if len(given) != 2 || given[1].Len() != 0 {
		t.Fatal("the PIN was not wiped after the operation")
	}
	reqs := f.prompter.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d prompts", len(reqs))
	}
	// SoftHSM sets CKF_USER_PIN_COUNT_LOW after a failure (and never a
	// final try), so the count is unknown but low.
	if r := reqs[1]; !strings.HasPrefix(r.Error, "Wrong PIN.") || !strings.Contains(r.Error, "retry count low") || r.TriesLeft != prompt.TriesUnknown {
		t.Fatalf("prompt after a wrong PIN: %+v", r)
	}
	// Success clears it.
	if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if r := f.prompter.requests()[2]; r.Error != "" {
		t.Fatalf("prompt after success: %+v", r)
	}
}

// TestPINLock counts tries down on a token with a retry counter (the shim
// over SoftHSM, which has none): count low, final try (TriesLeft 1), then
// locked: ErrPinLocked with advice and without a prompt or login.
func TestPINLock(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	dir := t.TempDir()
	log := filepath.Join(dir, "logins")
	f := shimFixture(t, hsm, "SMIMED_SHIM_LOG="+log, "SMIMED_SHIM_TRIES=3", "SMIMED_SHIM_STATE="+filepath.Join(dir, "tries"))
	ctx := ctxT(t)
	d, err := f.m.Decrypter(ctx, f.identity(t, keys.Plain), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	ct := encryptPKCS1v15(t, keys.Plain.PublicKey.(*rsa.PublicKey), []byte("k"))
	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) { return prompt.NewSecret([]byte("0000")), nil })

	wantTries := []int{prompt.TriesUnknown, prompt.TriesUnknown, 1}
	wantState := []tokens.PINState{tokens.PINCountLow, tokens.PINFinalTry, tokens.PINLocked}
	for i := range 3 {
		_, err := d.Decrypt(nil, ct, nil)
		wantErr(t, err, tokens.ErrPinIncorrect)
		reqs := f.prompter.requests()
		if len(reqs) != i+1 {
			t.Fatalf("try %d: %d prompts", i+1, len(reqs))
		}
		if r := reqs[i]; r.TriesLeft != wantTries[i] {
			t.Errorf("try %d: prompt %+v, want TriesLeft %d", i+1, r, wantTries[i])
		}
		toks, err := f.m.Tokens(ctx)
		if err != nil || len(toks) != 1 || toks[0].PINState != wantState[i] {
			t.Fatalf("after try %d: %+v, %v", i+1, toks, err)
		}
	}
	if r := f.prompter.requests()[2]; !strings.Contains(r.Description(), "FINAL try") {
		t.Errorf("final-try prompt reads %q", r.Description())
	}
	loginsBefore := len(logins(t, log))
	_, err = d.Decrypt(nil, ct, nil)
	wantErr(t, err, tokens.ErrPinLocked)
	if !strings.Contains(err.Error(), "PUK") || !strings.Contains(err.Error(), "IT support") {
		t.Errorf("locked PIN error does not say what to do: %v", err)
	}
	if n := f.prompter.count(); n != 3 {
		t.Errorf("a locked token was prompted for (%d prompts)", n)
	}
	if n := len(logins(t, log)); n != loginsBefore {
		t.Errorf("a locked token got %d login attempts", n-loginsBefore)
	}
}

// TestCancelledPrompt: a cancelled prompt fails with prompt.ErrCancelled
// and no login is attempted.
func TestCancelledPrompt(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	log := filepath.Join(t.TempDir(), "logins")
	f := shimFixture(t, hsm, "SMIMED_SHIM_LOG="+log)
	ctx := ctxT(t)
	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) {
		return nil, fmt.Errorf("pinentry: %w", prompt.ErrCancelled)
	})
	s, err := f.m.Signer(ctx, f.identity(t, keys.EC), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	wantErr(t, err, prompt.ErrCancelled)
	if got := logins(t, log); len(got) != 0 {
		t.Fatalf("logins after a cancelled prompt: %v", got)
	}
	if n := f.prompter.count(); n != 1 {
		t.Fatalf("%d prompts", n)
	}
}

// TestPINPad: a reader with a protected authentication path gets a notice,
// no PIN prompt, and a login with a NULL PIN; the user cancelling on the
// reader is prompt.ErrCancelled.
func TestPINPad(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	log := filepath.Join(t.TempDir(), "logins")
	f := shimFixture(t, hsm, "SMIMED_SHIM_LOG="+log, "SMIMED_SHIM_PINPAD="+testPIN)
	ctx := ctxT(t)
	id := f.identity(t, keys.Plain)
	if !id.Token.PINPad {
		t.Fatalf("token %+v has no PIN pad", id.Token)
	}
	s, err := f.m.Signer(ctx, id, prompt.Request{Subject: "pad"})
	if err != nil {
		t.Fatal(err)
	}
	d := digest(crypto.SHA256, "x")
	sig, err := s.Sign(nil, d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(keys.Plain.PublicKey.(*rsa.PublicKey), crypto.SHA256, d, sig); err != nil {
		t.Fatal(err)
	}
	reqs := f.prompter.requests()
	if len(reqs) != 1 || reqs[0].Kind != prompt.Notice || reqs[0].TokenLabel != "T" || reqs[0].Subject != "pad" {
		t.Fatalf("requests %+v, want one notice", reqs)
	}
	if got := logins(t, log); !slices.Equal(got, []string{loginUserOK}) {
		t.Fatalf("logins %v (a PIN sent to the pad shows as %q)", got, loginUserNoPIN)
	}
}

func TestPINPadCancelled(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := shimFixture(t, hsm, "SMIMED_SHIM_PINPAD=cancel")
	ctx := ctxT(t)
	s, err := f.m.Signer(ctx, f.identity(t, keys.RSA), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	wantErr(t, err, prompt.ErrCancelled)
	if time.Since(start) > 10*time.Second {
		t.Fatal("the notice was not taken down")
	}
}

// TestMechanismMissing: a mechanism the token does not list is
// ErrUnsupported with its name, before any prompt.
func TestMechanismMissing(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := shimFixture(t, hsm, fmt.Sprintf("SMIMED_SHIM_HIDE=%#x", wire.CKM_RSA_PKCS_PSS))
	ctx := ctxT(t)
	s, err := f.m.Signer(ctx, f.identity(t, keys.RSA), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	d := digest(crypto.SHA256, "x")
	_, err = s.Sign(nil, d, &rsa.PSSOptions{Hash: crypto.SHA256})
	wantErr(t, err, tokens.ErrUnsupported)
	if !strings.Contains(err.Error(), "CKM_RSA_PKCS_PSS") {
		t.Errorf("error does not name the mechanism: %v", err)
	}
	if n := f.prompter.count(); n != 0 {
		t.Fatalf("%d prompts for an unsupported mechanism", n)
	}
	// PKCS #1 v1.5 still works.
	if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
}

// TestPINCache: with CachePIN the PIN is asked once per period; a wrong
// PIN is never cached.
func TestPINCache(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{noOpenSC: true, opts: func(o *tokens.Options) { o.CachePIN = 1500 * time.Millisecond }})
	ctx := ctxT(t)
	s, err := f.m.Signer(ctx, f.identity(t, keys.RSA), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	d := digest(crypto.SHA256, "x")
	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) { return prompt.NewSecret([]byte("9999")), nil })
	if _, err := s.Sign(nil, d, crypto.SHA256); !errors.Is(err, tokens.ErrPinIncorrect) {
		t.Fatal(err)
	}
	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) { return prompt.NewSecret([]byte(testPIN)), nil })
	for range 3 {
		if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.prompter.count(); n != 2 {
		t.Fatalf("%d prompts, want 2 (the wrong PIN, then one cached)", n)
	}
	time.Sleep(2 * time.Second)
	if _, err := s.Sign(nil, d, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if n := f.prompter.count(); n != 3 {
		t.Fatalf("%d prompts, want a new one after the cache expired", n)
	}
}

// TestNoLoginToken: a token that needs no login gets a Confirm prompt and
// no C_Login; declining it cancels the operation.
func TestNoLoginToken(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	log := filepath.Join(t.TempDir(), "logins")
	f := shimFixture(t, hsm, "SMIMED_SHIM_LOG="+log, "SMIMED_SHIM_NOLOGIN="+testPIN)
	ctx := ctxT(t)
	id := f.identity(t, keys.Plain)
	if id.Token.LoginRequired {
		t.Fatalf("token %+v requires login", id.Token)
	}
	s, err := f.m.Signer(ctx, id, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	d := digest(crypto.SHA256, "x")
	sig, err := s.Sign(nil, d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(keys.Plain.PublicKey.(*rsa.PublicKey), crypto.SHA256, d, sig); err != nil {
		t.Fatal(err)
	}
	reqs := f.prompter.requests()
	if len(reqs) != 1 || reqs[0].Kind != prompt.Confirm || reqs[0].TokenLabel != "T" {
		t.Fatalf("requests %+v, want one confirmation", reqs)
	}
	if got := logins(t, log); len(got) != 0 {
		t.Fatalf("logins %v on a token without login", got)
	}
	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) { return nil, prompt.ErrCancelled })
	_, err = s.Sign(nil, d, crypto.SHA256)
	wantErr(t, err, prompt.ErrCancelled)
}
