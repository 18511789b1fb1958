package tokens_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens"
)

const testPoll = 200 * time.Millisecond

func fastPolling(o *tokens.Options) { o.PollInterval = testPoll }

// TestHotplug inserts, removes and re-inserts a token while watching.
func TestHotplug(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	standardToken(t, hsm, "A")
	f := newFixture(t, hsm, fixtureOptions{opts: fastPolling})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	events := f.m.Watch(ctx)

	// A few polls (the rescan interval equals the poll interval); the
	// margin is for loaded CI machines.
	within := 20 * testPoll
	start := time.Now()
	dir := hsm.InitToken(t, "B")
	cert := hsm.AddKey(t, "B", keySpec{Type: "EC:prime256v1", ID: "07", Label: "b", Email: "b@example.com"})
	ev := waitEvent(t, events, tokens.TokenInserted, "B", within+time.Since(start))
	if ev.Token.Module != softhsmModule || ev.Token.PINState != tokens.PINOK || ev.Module != "softhsm-test" {
		t.Errorf("inserted event %+v", ev)
	}
	t.Logf("insertion noticed after %v", time.Since(start))

	aside := filepath.Join(t.TempDir(), "pulled")
	start = time.Now()
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, tokens.TokenRemoved, "B", within)
	t.Logf("removal noticed after %v", time.Since(start))
	toks, err := f.m.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Label != "A" {
		t.Fatalf("tokens after removal: %+v, %v", toks, err)
	}

	if err := os.Rename(aside, dir); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, tokens.TokenInserted, "B", within)

	// The re-inserted token works without any restart.
	id := f.identity(t, cert)
	s, err := f.m.Signer(ctx, id, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	d := digest(crypto.SHA256, "back")
	sig, err := s.Sign(nil, d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(cert.PublicKey.(*ecdsa.PublicKey), d, sig) {
		t.Fatal("bad signature")
	}

	cancel()
	for range events { // drains and ends: the channel is closed
	}
}

// TestRemovedDuringOperation pulls the token while the PIN prompt is up:
// the operation fails with ErrTokenRemoved; once it is back, the same
// handle works again.
func TestRemovedDuringOperation(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	keys := standardToken(t, hsm, "T")
	f := newFixture(t, hsm, fixtureOptions{opts: fastPolling})
	ctx := ctxT(t)
	events := f.m.Watch(ctx)
	s, err := f.m.Signer(ctx, f.identity(t, keys.RSA), prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	aside := filepath.Join(t.TempDir(), "pulled")
	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) {
		if err := os.Rename(keys.Dir, aside); err != nil {
			return nil, err
		}
		waitEvent(t, events, tokens.TokenRemoved, "T", 20*testPoll)
		return prompt.NewSecret([]byte(testPIN)), nil
	})
	d := digest(crypto.SHA256, "x")
	_, err = s.Sign(nil, d, crypto.SHA256)
	wantErr(t, err, tokens.ErrTokenRemoved)

	f.prompter.setAnswer(func(prompt.Request) (*prompt.Secret, error) { return prompt.NewSecret([]byte(testPIN)), nil })
	// Removed before the operation: no prompt.
	before := f.prompter.count()
	_, err = s.Sign(nil, d, crypto.SHA256)
	wantErr(t, err, tokens.ErrTokenRemoved)
	if f.prompter.count() != before {
		t.Error("a removed token was prompted for")
	}

	if err := os.Rename(aside, keys.Dir); err != nil {
		t.Fatal(err)
	}
	// The next operation finds it (the worker rescans when a token is
	// missing), with or without the watcher having seen it.
	sig, err := s.Sign(nil, d, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(keys.RSA.PublicKey.(*rsa.PublicKey), crypto.SHA256, d, sig); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, events, tokens.TokenInserted, "T", 20*testPoll)
}

// TestTwoTokens: operations on two tokens run in parallel (one token's
// prompt does not hold up the other token), operations on one token are
// serialised.
func TestTwoTokens(t *testing.T) {
	t.Parallel()
	hsm := newSoftHSM(t)
	a := standardToken(t, hsm, "A")
	b := standardToken(t, hsm, "B")
	f := newFixture(t, hsm, fixtureOptions{})
	ctx := ctxT(t)
	idA, idB := f.identity(t, a.RSA), f.identity(t, b.EC)
	if idA.Token.ID == idB.Token.ID {
		t.Fatal("two tokens share an ID")
	}

	// Token A's prompt waits until token B has signed.
	bDone := make(chan struct{})
	var inA, maxInA atomic.Int32
	f.prompter.setAnswer(func(r prompt.Request) (*prompt.Secret, error) {
		if r.TokenLabel == "A" {
			n := inA.Add(1)
			defer inA.Add(-1)
			for {
				m := maxInA.Load()
				if n <= m || maxInA.CompareAndSwap(m, n) {
					break
				}
			}
			select {
			case <-bDone:
			case <-time.After(20 * time.Second):
				return nil, fmt.Errorf("token B never finished: %w", prompt.ErrCancelled)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return prompt.NewSecret([]byte(testPIN)), nil
	})

	sA, err := f.m.Signer(ctx, idA, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	sB, err := f.m.Signer(ctx, idB, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	d := digest(crypto.SHA256, "parallel")
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sig, err := sA.Sign(nil, d, crypto.SHA256)
			if err == nil {
				err = rsa.VerifyPKCS1v15(a.RSA.PublicKey.(*rsa.PublicKey), crypto.SHA256, d, sig)
			}
			errs <- err
		}()
	}
	time.Sleep(100 * time.Millisecond) // A's first operation is in its prompt
	for range 5 {
		sig, err := sB.Sign(nil, d, crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if !ecdsa.VerifyASN1(b.EC.PublicKey.(*ecdsa.PublicKey), d, sig) {
			t.Fatal("bad signature from B")
		}
	}
	close(bDone)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if m := maxInA.Load(); m != 1 {
		t.Fatalf("%d operations on token A were in their prompt at once", m)
	}
	if n := f.prompter.count(); n != 8 {
		t.Fatalf("%d prompts for 8 operations", n)
	}
}
