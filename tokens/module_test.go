package tokens_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens"
	"github.com/smimed/smimed/tokens/p11kit"
)

// moduleErrors returns the *ModuleError values joined in err, by module
// name.
func moduleErrors(err error) map[string]*tokens.ModuleError {
	out := map[string]*tokens.ModuleError{}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if me, ok := e.(*tokens.ModuleError); ok {
			out[me.Module] = me
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		walk(errors.Unwrap(e))
	}
	walk(err)
	return out
}

// TestModulesListed: modules come from the p11-kit files and the config;
// OpenSC's module without a reader lists no token and no error; missing
// module paths are reported per module while the others work.
func TestModulesListed(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{
		extraModules: map[string]string{
			"missing-relative": "module: libsmimed-missing.so\n",
			"disabled":         "module: /nonexistent/disabled.so\ndisable-in: smimed\n",
			"trust":            "module: p11-kit-trust.so\ntrust-policy: yes\n",
		},
		configured: []string{"/nonexistent/libconfigured.so", softhsmModule},
	})
	ctx := ctxT(t)
	toks, err := f.m.Tokens(ctx)
	if len(toks) != 1 || toks[0].Label != "T" || toks[0].ModuleName != "softhsm-test" {
		t.Fatalf("tokens %+v", toks)
	}
	mes := moduleErrors(err)
	if len(mes) != 2 {
		t.Fatalf("module errors %v, want 2", err)
	}
	for name, path := range map[string]string{
		"missing-relative":              filepath.Join(p11kit.DefaultModuleDir(), "libsmimed-missing.so"),
		"/nonexistent/libconfigured.so": "/nonexistent/libconfigured.so",
	} {
		me := mes[name]
		if me == nil || me.Path != path || !errors.Is(me, tokens.ErrModuleNotFound) || !strings.Contains(me.Error(), path) {
			t.Errorf("module %s: %v", name, me)
		}
	}

	mods, err := f.m.Modules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]tokens.ModuleStatus{}
	for _, m := range mods {
		byName[m.Name] = m
	}
	if len(mods) != 4 { // softhsm (configured twice: once), opensc, two missing
		t.Errorf("modules %+v", mods)
	}
	if m := byName["opensc-test"]; m.Err != nil || m.Description != "OpenSC smartcard framework" || m.Path != openscModule {
		t.Errorf("OpenSC module %+v", m)
	}
	if m := byName["softhsm-test"]; m.Err != nil || m.Manufacturer != "SoftHSM" {
		t.Errorf("SoftHSM module %+v", m)
	}
	for _, skipped := range []string{"disabled", "trust"} {
		if _, ok := byName[skipped]; ok {
			t.Errorf("module %s is used", skipped)
		}
	}

	// Identities work all the same.
	ids, err := f.m.Identities(ctx)
	if len(ids) != 3 || len(moduleErrors(err)) != 2 {
		t.Fatalf("%d identities, %v", len(ids), err)
	}
	id, err := f.m.Identity(ctx, f.identity(t, keys.Plain).ID)
	if err != nil || !id.Certificate.Equal(keys.Plain) {
		t.Fatalf("Identity: %v", err)
	}
	if _, err := f.m.Identity(ctx, strings.Repeat("0", 64)); !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("unknown identity: %v", err)
	}
}

// hangFixture has the shim (hanging as env says) and plain SoftHSM.
func hangFixture(t *testing.T, hsm *softHSM, timeout time.Duration, env ...string) *fixture {
	shim := shimModule(t)
	return newFixture(t, hsm, fixtureOptions{
		noOpenSC:     true,
		extraModules: map[string]string{"shim": "module: " + shim + "\n"},
		opts: func(o *tokens.Options) {
			o.CallTimeout = timeout
			o.WorkerEnv = append(o.WorkerEnv, env...)
		},
	})
}

// TestHangingModule: a module that never returns from C_Initialize or
// C_GetSlotList costs a listing ErrModuleFailed after the timeout, while
// the good module's tokens are listed and its keys keep working, even
// during the hang.
func TestHangingModule(t *testing.T) {
	t.Parallel()
	for _, where := range []string{"init", "slots"} {
		t.Run(where, func(t *testing.T) {
			t.Parallel()
			hsm := newSoftHSM(t)
			keys := standardToken(t, hsm, "T")
			const timeout = 1500 * time.Millisecond
			f := hangFixture(t, hsm, timeout, "SMIMED_SHIM_HANG="+where)
			ctx := ctxT(t)

			// The good module's identity, without waiting for the bad one.
			short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			ids, _ := f.m.Identities(short)
			cancel()
			var good tokens.Identity
			for _, id := range ids {
				if id.Certificate.Equal(keys.Plain) && id.Token.ModuleName == "softhsm-test" {
					good = id
				}
			}
			if good.ID == "" {
				t.Fatalf("the good module's identity is missing: %d identities", len(ids))
			}

			var wg sync.WaitGroup
			wg.Add(1)
			var toks []tokens.Token
			var listErr error
			var took time.Duration
			go func() {
				defer wg.Done()
				start := time.Now()
				toks, listErr = f.m.Tokens(ctx)
				took = time.Since(start)
			}()
			time.Sleep(200 * time.Millisecond) // the listing is stuck in the bad module

			// Meanwhile the good module signs.
			s, err := f.m.Signer(ctx, good, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			d := digest(crypto.SHA256, "x")
			sig, err := s.Sign(nil, d, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if err := rsa.VerifyPKCS1v15(keys.Plain.PublicKey.(*rsa.PublicKey), crypto.SHA256, d, sig); err != nil {
				t.Fatal(err)
			}
			if time.Since(start) > timeout/2 {
				t.Errorf("the good module's signature took %v", time.Since(start))
			}

			wg.Wait()
			if took > timeout+3*time.Second {
				t.Errorf("listing took %v with a %v timeout", took, timeout)
			}
			if len(toks) != 1 || toks[0].ModuleName != "softhsm-test" {
				t.Errorf("tokens %+v", toks)
			}
			me := moduleErrors(listErr)["shim"]
			if me == nil || !errors.Is(me, tokens.ErrModuleFailed) {
				t.Fatalf("hung module: %v", listErr)
			}
			t.Logf("hung module reported as: %v", me)

			// The failed worker is restarted on the next use (and hangs
			// again); after repeated failures it is left alone for a while
			// and fails at once.
			_, err = f.m.Tokens(ctx)
			if !errors.Is(moduleErrors(err)["shim"], tokens.ErrModuleFailed) {
				t.Fatalf("second listing: %v", err)
			}
			start = time.Now()
			_, err = f.m.Tokens(ctx)
			if !errors.Is(moduleErrors(err)["shim"], tokens.ErrModuleFailed) {
				t.Fatalf("third listing: %v", err)
			}
			if where == "init" && time.Since(start) > timeout/2 {
				t.Errorf("a module that failed twice was started again at once (%v)", time.Since(start))
			}
		})
	}
}

// TestModuleHangsDuringSign: a module stuck in C_Sign fails that signature
// with ErrModuleFailed after the timeout; the other module works during
// and after it.
func TestModuleHangsDuringSign(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	const timeout = 1500 * time.Millisecond
	f := hangFixture(t, hsm, timeout, "SMIMED_SHIM_HANG=sign")
	ctx := ctxT(t)
	ids, err := f.m.Identities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var hung, good tokens.Identity
	for _, id := range ids {
		if id.Certificate.Equal(keys.RSA) {
			if id.Token.ModuleName == "shim" {
				hung = id
			} else {
				good = id
			}
		}
	}
	sHung, _ := f.m.Signer(ctx, hung, prompt.Request{})
	sGood, _ := f.m.Signer(ctx, good, prompt.Request{})
	d := digest(crypto.SHA256, "x")
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := sHung.Sign(nil, d, crypto.SHA256)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := sGood.Sign(nil, d, crypto.SHA256); err != nil {
		t.Fatalf("good module during the hang: %v", err)
	}
	err = <-done
	wantErr(t, err, tokens.ErrModuleFailed)
	if took := time.Since(start); took < timeout || took > timeout+3*time.Second {
		t.Errorf("hung signature failed after %v (timeout %v)", took, timeout)
	}
	// The worker was killed; the next use starts a new one.
	toks, err := f.m.Tokens(ctx)
	if err != nil || len(toks) != 2 {
		t.Fatalf("after the hang: %+v, %v", toks, err)
	}
}

// TestModuleCrash: a module that crashes in C_Sign fails the call with
// ErrModuleFailed at once; the next use starts a new worker.
func TestModuleCrash(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := shimFixture(t, hsm, "SMIMED_SHIM_CRASH=sign")
	ctx := ctxT(t)
	s, err := f.m.Signer(ctx, f.identity(t, keys.EC), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256)
	wantErr(t, err, tokens.ErrModuleFailed)
	if time.Since(start) > 5*time.Second {
		t.Errorf("a crash took %v to notice", time.Since(start))
	}
	if !strings.Contains(err.Error(), "exited") {
		t.Errorf("crash error: %v", err)
	}
	t.Logf("crash reported as: %v", err)
	toks, err := f.m.Tokens(ctx)
	if err != nil || len(toks) != 1 {
		t.Fatalf("after the crash: %+v, %v", toks, err)
	}
	// Decryption (not affected by the crash switch) works in the new worker.
	d, err := f.m.Decrypter(ctx, f.identity(t, keys.Plain), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	ct := encryptPKCS1v15(t, keys.Plain.PublicKey.(*rsa.PublicKey), []byte("k"))
	if pt, err := d.Decrypt(nil, ct, nil); err != nil || string(pt) != "k" {
		t.Fatalf("decrypt after the crash: %q, %v", pt, err)
	}
}

// TestClose: after Close, calls fail with ErrClosed and Watch channels
// close.
func TestClose(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{noOpenSC: true, opts: fastPolling})
	ctx := ctxT(t)
	s, err := f.m.Signer(ctx, f.identity(t, keys.RSA), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	events := f.m.Watch(ctx)
	if err := f.m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Fatal("an event after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch channel not closed by Close")
	}
	if _, err := s.Sign(nil, digest(crypto.SHA256, "x"), crypto.SHA256); !errors.Is(err, tokens.ErrClosed) {
		t.Fatalf("sign after Close: %v", err)
	}
	if _, err := f.m.Tokens(ctx); !errors.Is(err, tokens.ErrClosed) {
		t.Fatalf("Tokens after Close: %v", err)
	}
}

// TestWorkerCommand: a worker program that cannot start is ErrModuleFailed
// for its modules, not a crash of the caller.
func TestWorkerCommand(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{noOpenSC: true, opts: func(o *tokens.Options) {
		o.WorkerCommand = []string{"/nonexistent/smimed", tokens.WorkerArg}
	}})
	toks, err := f.m.Tokens(ctxT(t))
	me := moduleErrors(err)["softhsm-test"]
	if len(toks) != 0 || me == nil || !errors.Is(me, tokens.ErrModuleFailed) || !strings.Contains(me.Error(), "starting the worker") {
		t.Fatalf("tokens %+v, error %v", toks, err)
	}
}
