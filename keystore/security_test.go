package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/prompt"
)

// TestNoExport checks that no exported method of the package's types hands
// out private keys or raw bytes (blobs): the only way to use a key is a
// handle.
func TestNoExport(t *testing.T) {
	forbidden := []reflect.Type{
		reflect.TypeFor[[]byte](),
		reflect.TypeFor[crypto.PrivateKey](),
		reflect.TypeFor[*rsa.PrivateKey](),
		reflect.TypeFor[*ecdsa.PrivateKey](),
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[*Store](), reflect.TypeFor[*FileVault](), reflect.TypeFor[*SecretServiceVault](),
		reflect.TypeFor[Vault](), reflect.TypeFor[*signer](), reflect.TypeFor[*rsaDecrypter](), reflect.TypeFor[*ecDecrypter](),
	} {
		for i := range typ.NumMethod() {
			m := typ.Method(i)
			for j := range m.Type.NumOut() {
				out := m.Type.Out(j)
				for _, f := range forbidden {
					if out == f && !(m.Name == "Sign" || m.Name == "Decrypt" || m.Name == "ECDH") {
						t.Errorf("%v.%s returns %v", typ, m.Name, out)
					}
				}
			}
		}
	}
	// Identity carries no key.
	it := reflect.TypeFor[Identity]()
	for i := range it.NumField() {
		if f := it.Field(i); f.Type == reflect.TypeFor[crypto.PrivateKey]() || f.Type == reflect.TypeFor[[]byte]() {
			t.Errorf("Identity.%s is %v", f.Name, f.Type)
		}
	}
}

// TestLogsNeverHoldPassphrases runs every path with a debug logger and
// greps the log for the passphrases used.
func TestLogsNeverHoldPassphrases(t *testing.T) {
	const good, bad, p12pw = "Sup3r-s3cret-GOOD", "Sup3r-s3cret-BAD", "P12-pass-XYZ"
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fp := &fakePrompter{answers: []string{p12pw, good, good, bad}, def: good}
	v, err := NewFileVault(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Options{Vault: v, Prompter: fp, Logger: log, CacheTTL: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fastKDF(s)
	pki := testpki.New(t)
	tid := pki.Issue(t, testpki.Options{Email: "log@example.org", Key: testpki.RSA2048})
	ident, err := s.ImportPKCS12(context.Background(), tid.PKCS12(t, p12pw, true), nil, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := s.Signer(context.Background(), ident.ID, prompt.Request{})
	var errs []error
	_, err = signer.Sign(rand.Reader, digest("x"), crypto.SHA256) // bad
	errs = append(errs, err)
	_, err = signer.Sign(rand.Reader, digest("x"), crypto.SHA256) // good
	errs = append(errs, err)
	_, err = s.ImportPKCS12(context.Background(), tid.PKCS12(t, p12pw, true), secret("Wr0ng-P12-pw"), ImportOptions{})
	errs = append(errs, err)
	if !errors.Is(errs[0], ErrWrongPassphrase) || errs[1] != nil {
		t.Fatalf("errors %v", errs)
	}
	if logs.Len() == 0 {
		t.Fatal("nothing logged")
	}
	for _, pw := range []string{good, bad, p12pw, "Wr0ng-P12-pw"} {
		if strings.Contains(logs.String(), pw) {
			t.Errorf("log contains passphrase %q", pw)
		}
		for _, e := range errs {
			if e != nil && strings.Contains(e.Error(), pw) {
				t.Errorf("error %q contains passphrase", e)
			}
		}
	}
	fp.assertWiped(t)
}

func TestClosedStore(t *testing.T) {
	pki := testpki.New(t)
	fp := &fakePrompter{def: "pw"}
	s, _ := newFileStore(t, fp, time.Hour)
	fastKDF(s)
	tid := pki.Issue(t, testpki.Options{Email: "cl@example.org", Key: testpki.RSA2048})
	ident := importPEM(t, s, tid, "pw")
	signer, _ := s.Signer(context.Background(), ident.ID, prompt.Request{})
	checkSign(t, signer, tid.Cert)
	s.mu.Lock()
	k := s.cache[ident.ID].key.(*rsa.PrivateKey)
	s.mu.Unlock()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	zeroed := k.D.Sign() == 0
	s.mu.Unlock()
	if !zeroed {
		t.Fatal("Close left a cached key")
	}
	if _, err := signer.Sign(rand.Reader, digest("x"), crypto.SHA256); !errors.Is(err, ErrClosed) {
		t.Fatalf("sign after close: %v", err)
	}
	if _, err := s.ImportPEM(context.Background(), tid.KeyPEM(t), testpki.CertPEM(tid.Cert), ImportOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("import after close: %v", err)
	}
	if _, err := Open(context.Background(), Options{Prompter: fp}); err == nil {
		t.Fatal("Open without a vault")
	}
	v, _ := NewFileVault(t.TempDir())
	if _, err := Open(context.Background(), Options{Vault: v}); err == nil {
		t.Fatal("Open without a prompter")
	}
}
