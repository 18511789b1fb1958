package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/prompt"
)

// fastKDF makes new blobs cheap to derive (this test machine takes most of
// a second for N=2^15). Tests that check the real parameters do not call it.
func fastKDF(s *Store) { s.kdf = kdfParams{logN: 10, r: 8, p: 1} }

func digest(msg string) []byte {
	d := sha256.Sum256([]byte(msg))
	return d[:]
}

// checkSign makes one signature through s and verifies it.
func checkSign(t *testing.T, s crypto.Signer, cert *x509.Certificate) {
	t.Helper()
	d := digest("hello")
	sig, err := s.Sign(rand.Reader, d, crypto.SHA256)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, d, sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, d, sig) {
			err = errors.New("bad ECDSA signature")
		}
	}
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestStoreSignAndDecrypt(t *testing.T) {
	pki := testpki.New(t)
	tests := []struct {
		name string
		key  testpki.KeyType
		real bool // real KDF parameters
	}{
		{"rsa2048", testpki.RSA2048, true},
		{"p256", testpki.P256, false},
		{"p384", testpki.P384, false},
		{"p521", testpki.P521, false},
		{"rsa3072", testpki.RSA3072, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fp := &fakePrompter{def: "pass-" + tc.name}
			s, _ := newFileStore(t, fp, 0)
			if !tc.real {
				fastKDF(s)
			}
			tid := pki.Issue(t, testpki.Options{Email: tc.name + "@example.org", Key: tc.key})
			ident := importPEM(t, s, tid, "pass-"+tc.name)
			if ident.ID != fingerprintID(tid.Cert) || ident.Label != tc.name+"@example.org" || ident.Backend != "file" {
				t.Fatalf("identity %+v", ident)
			}
			if len(ident.Chain) != 1 || !ident.Chain[0].Equal(pki.Intermediate.Cert) {
				t.Fatalf("chain %v", ident.Chain)
			}
			if fp.calls() != 0 {
				t.Fatalf("import with NewPassphrase prompted %d times", fp.calls())
			}
			ids, err := s.Identities(context.Background())
			if err != nil || len(ids) != 1 || ids[0].ID != ident.ID || !ids[0].Certificate.Equal(tid.Cert) {
				t.Fatalf("identities: %v %v", ids, err)
			}

			ctx := context.Background()
			req := prompt.Request{Subject: "Quarterly report", Counterpart: "bob@example.org", TriesLeft: 0}
			signer, err := s.Signer(ctx, ident.ID, req)
			if err != nil {
				t.Fatal(err)
			}
			if fp.calls() != 0 {
				t.Fatal("Signer prompted before Sign")
			}
			if !reflect.DeepEqual(signer.Public(), tid.Cert.PublicKey) {
				t.Fatal("Public differs from the certificate")
			}
			checkSign(t, signer, tid.Cert)
			if fp.calls() != 1 {
				t.Fatalf("sign prompted %d times, want 1", fp.calls())
			}
			checkSign(t, signer, tid.Cert) // a second Sign prompts again
			if fp.calls() != 2 {
				t.Fatalf("second sign: %d prompts, want 2", fp.calls())
			}
			r := fp.requests()[0]
			want := prompt.Request{Kind: prompt.Passphrase, Operation: prompt.OpSign, KeyLabel: ident.Label,
				Subject: "Quarterly report", Counterpart: "bob@example.org", TriesLeft: prompt.TriesUnknown}
			if r != want {
				t.Fatalf("prompt request %+v, want %+v", r, want)
			}

			dec, err := s.Decrypter(ctx, ident.ID, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			before := fp.calls()
			switch pub := tid.Cert.PublicKey.(type) {
			case *rsa.PublicKey:
				msg := []byte("content-encryption key 32 bytes!")
				ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
				if err != nil {
					t.Fatal(err)
				}
				pt, err := dec.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
				if err != nil || !bytes.Equal(pt, msg) {
					t.Fatalf("OAEP decrypt: %v", err)
				}
				//lint:ignore SA1019 S/MIME peers (Thunderbird) still send PKCS #1 v1.5 key transport; the decrypter must open it.
				ct, err = rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
				if err != nil {
					t.Fatal(err)
				}
				pt, err = dec.Decrypt(rand.Reader, ct, nil)
				if err != nil || !bytes.Equal(pt, msg) {
					t.Fatalf("PKCS #1 v1.5 decrypt: %v", err)
				}
				if fp.calls()-before != 2 {
					t.Fatalf("two decryptions prompted %d times", fp.calls()-before)
				}
				// PSS signature through the Signer.
				pss := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
				sig, err := signer.Sign(rand.Reader, digest("pss"), pss)
				if err != nil || rsa.VerifyPSS(pub, crypto.SHA256, digest("pss"), sig, pss) != nil {
					t.Fatalf("PSS: %v", err)
				}
			case *ecdsa.PublicKey:
				ka, ok := dec.(interface {
					Public() crypto.PublicKey
					ECDH(*ecdh.PublicKey) ([]byte, error)
				})
				if !ok {
					t.Fatalf("EC decrypter %T has no ECDH", dec)
				}
				if _, err := dec.Decrypt(rand.Reader, []byte("x"), nil); !errors.Is(err, ErrUnsupportedKey) {
					t.Fatalf("EC Decrypt: %v", err)
				}
				pubECDH, err := pub.ECDH()
				if err != nil {
					t.Fatal(err)
				}
				eph, err := pubECDH.Curve().GenerateKey(rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				want, err := eph.ECDH(pubECDH)
				if err != nil {
					t.Fatal(err)
				}
				got, err := ka.ECDH(eph.PublicKey())
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("ECDH: %v", err)
				}
				if fp.calls()-before != 1 {
					t.Fatalf("ECDH prompted %d times", fp.calls()-before)
				}
				// A remote key on another curve is refused before prompting.
				other := ecdh.P256()
				if pubECDH.Curve() == ecdh.P256() {
					other = ecdh.P384()
				}
				ok2, _ := other.GenerateKey(rand.Reader)
				n := fp.calls()
				if _, err := ka.ECDH(ok2.PublicKey()); err == nil || fp.calls() != n {
					t.Fatalf("ECDH with another curve: %v, %d prompts", err, fp.calls()-n)
				}
			}
			for _, r := range fp.requests()[2:] {
				if r.Operation != prompt.OpDecrypt && r.Operation != prompt.OpSign {
					t.Fatalf("operation %q", r.Operation)
				}
			}
			fp.assertWiped(t)
		})
	}
}

func TestStoreWrongPassphraseNoRetry(t *testing.T) {
	pki := testpki.New(t)
	fp := &fakePrompter{answers: []string{"wrong"}, def: "right"}
	s, _ := newFileStore(t, fp, 0)
	fastKDF(s)
	tid := pki.Issue(t, testpki.Options{Email: "w@example.org", Key: testpki.P256})
	ident := importPEM(t, s, tid, "right")
	signer, err := s.Signer(context.Background(), ident.ID, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = signer.Sign(rand.Reader, digest("x"), crypto.SHA256)
	if !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("err = %v, want ErrWrongPassphrase", err)
	}
	if fp.calls() != 1 {
		t.Fatalf("%d prompts after a wrong passphrase, want exactly 1 (no retry)", fp.calls())
	}
	fp.assertWiped(t)
	// The next operation is a new user action and a new prompt.
	checkSign(t, signer, tid.Cert)
	if fp.calls() != 2 {
		t.Fatalf("%d prompts", fp.calls())
	}
	// An empty answer is a wrong passphrase too.
	fp.mu.Lock()
	fp.answers = []string{""}
	fp.mu.Unlock()
	if _, err := signer.Sign(rand.Reader, digest("x"), crypto.SHA256); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("empty passphrase: %v", err)
	}
	fp.assertWiped(t)
}

func TestStorePromptErrorsPropagate(t *testing.T) {
	pki := testpki.New(t)
	tid := pki.Issue(t, testpki.Options{Email: "c@example.org", Key: testpki.P256})
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"cancelled", fmt.Errorf("pinentry: %w", prompt.ErrCancelled), prompt.ErrCancelled},
		{"no prompter", fmt.Errorf("pinentry: %w", prompt.ErrNoPrompter), prompt.ErrNoPrompter},
		{"timeout", fmt.Errorf("%w: %w", prompt.ErrTimeout, context.DeadlineExceeded), prompt.ErrTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fp := &fakePrompter{def: "pw"}
			s, _ := newFileStore(t, fp, 0)
			fastKDF(s)
			ident := importPEM(t, s, tid, "pw")
			fp.mu.Lock()
			fp.err = tc.err
			fp.mu.Unlock()
			signer, err := s.Signer(context.Background(), ident.ID, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = signer.Sign(rand.Reader, digest("x"), crypto.SHA256)
			if !errors.Is(err, tc.want) || errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("sign: %v, want %v", err, tc.want)
			}
			dec, err := s.Decrypter(context.Background(), ident.ID, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := tid.Cert.PublicKey.(*ecdsa.PublicKey).ECDH()
			eph, _ := pub.Curve().GenerateKey(rand.Reader)
			_, err = dec.(interface {
				ECDH(*ecdh.PublicKey) ([]byte, error)
			}).ECDH(eph.PublicKey())
			if !errors.Is(err, tc.want) {
				t.Fatalf("ECDH: %v, want %v", err, tc.want)
			}
			if fp.calls() != 2 {
				t.Fatalf("%d prompts, want 2 (one per operation)", fp.calls())
			}
		})
	}

	// The handle's context bounds the prompt: an expired one fails before
	// asking.
	fp := &fakePrompter{def: "pw"}
	s, _ := newFileStore(t, fp, 0)
	fastKDF(s)
	ident := importPEM(t, s, tid, "pw")
	ctx, cancel := context.WithCancel(context.Background())
	signer, err := s.Signer(ctx, ident.ID, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := signer.Sign(rand.Reader, digest("x"), crypto.SHA256); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if fp.calls() != 0 {
		t.Fatalf("prompted with a cancelled context")
	}
	// A wrong digest length is refused before prompting.
	signer, _ = s.Signer(context.Background(), ident.ID, prompt.Request{})
	if _, err := signer.Sign(rand.Reader, []byte("short"), crypto.SHA256); err == nil || fp.calls() != 0 {
		t.Fatalf("short digest: %v, %d prompts", err, fp.calls())
	}
}

func TestStoreCacheTTL(t *testing.T) {
	pki := testpki.New(t)
	tid := pki.Issue(t, testpki.Options{Email: "ttl@example.org", Key: testpki.RSA2048})
	const ttl = 1500 * time.Millisecond
	fp := &fakePrompter{def: "pw"}
	s, _ := newFileStore(t, fp, ttl)
	fastKDF(s)
	ident := importPEM(t, s, tid, "pw")
	ctx := context.Background()
	signer, err := s.Signer(ctx, ident.ID, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	checkSign(t, signer, tid.Cert)
	s.mu.Lock()
	entry := s.cache[ident.ID]
	s.mu.Unlock()
	if entry == nil {
		t.Fatal("key not cached")
	}
	cachedKey := entry.key.(*rsa.PrivateKey)

	// Concurrent operations within the TTL reuse the key: no new prompt.
	dec, err := s.Decrypter(ctx, ident.ID, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkSign(t, signer, tid.Cert)
			//lint:ignore SA1019 S/MIME peers still send PKCS #1 v1.5 key transport.
			ct, _ := rsa.EncryptPKCS1v15(rand.Reader, tid.Cert.PublicKey.(*rsa.PublicKey), []byte("k"))
			if pt, err := dec.Decrypt(rand.Reader, ct, nil); err != nil || string(pt) != "k" {
				t.Errorf("decrypt: %v", err)
			}
		}()
	}
	wg.Wait()
	if time.Since(start) < ttl && fp.calls() != 1 {
		t.Fatalf("%d prompts within the TTL, want 1", fp.calls())
	}
	fp.assertWiped(t)

	// After the TTL the cached key is zeroed and the next use prompts.
	time.Sleep(time.Until(start.Add(ttl)))
	var zeroed bool
	for deadline := time.Now().Add(3 * time.Second); !zeroed && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		s.mu.Lock() // the expiry timer writes under s.mu
		zeroed = cachedKey.D.Sign() == 0 && cachedKey.Primes[0].Sign() == 0 && cachedKey.Precomputed.Dp.Sign() == 0
		s.mu.Unlock()
	}
	if !zeroed {
		t.Fatal("expired cached key was not zeroed")
	}
	n := fp.calls()
	checkSign(t, signer, tid.Cert)
	if fp.calls() != n+1 {
		t.Fatalf("after expiry: %d new prompts, want 1", fp.calls()-n)
	}

	// Concurrent first uses of an uncached key prompt once.
	s.invalidate(ident.ID)
	n = fp.calls()
	for range 6 {
		wg.Add(1)
		go func() { defer wg.Done(); checkSign(t, signer, tid.Cert) }()
	}
	wg.Wait()
	if fp.calls() != n+1 {
		t.Fatalf("concurrent first uses: %d prompts, want 1", fp.calls()-n)
	}

	// Remove zeroes the cached key at once.
	s.mu.Lock()
	k := s.cache[ident.ID].key.(*rsa.PrivateKey)
	s.mu.Unlock()
	if err := s.Remove(ctx, ident.ID); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	zeroed = k.D.Sign() == 0
	s.mu.Unlock()
	if !zeroed {
		t.Fatal("Remove left the cached key in memory")
	}

	// A wrong passphrase is not cached.
	ident = importPEM(t, s, tid, "pw")
	fp.mu.Lock()
	fp.answers = []string{"bad"}
	fp.mu.Unlock()
	signer, _ = s.Signer(ctx, ident.ID, prompt.Request{})
	if _, err := signer.Sign(rand.Reader, digest("x"), crypto.SHA256); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	s.mu.Lock()
	cached := s.cache[ident.ID]
	s.mu.Unlock()
	if cached != nil {
		t.Fatal("a failed unlock was cached")
	}
}

func TestStoreNoCacheByDefault(t *testing.T) {
	pki := testpki.New(t)
	tid := pki.Issue(t, testpki.Options{Email: "nc@example.org", Key: testpki.P256})
	fp := &fakePrompter{def: "pw"}
	s, _ := newFileStore(t, fp, 0)
	fastKDF(s)
	ident := importPEM(t, s, tid, "pw")
	signer, _ := s.Signer(context.Background(), ident.ID, prompt.Request{})
	for i := 1; i <= 3; i++ {
		checkSign(t, signer, tid.Cert)
		if fp.calls() != i {
			t.Fatalf("after %d signatures: %d prompts", i, fp.calls())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) != 0 {
		t.Fatal("something was cached with CacheTTL 0")
	}
}

func TestStoreRestartKeepsIdentities(t *testing.T) {
	pki := testpki.New(t)
	fp := &fakePrompter{def: "pw"}
	s, dir := newFileStore(t, fp, 0)
	fastKDF(s)
	var want []string
	for _, kt := range []testpki.KeyType{testpki.RSA2048, testpki.P384} {
		id := importPEM(t, s, pki.Issue(t, testpki.Options{Email: string(kt) + "@example.org", Key: kt}), "pw")
		want = append(want, id.ID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Identities(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed store: %v", err)
	}

	s2 := reopen(t, dir, fp)
	ids, err := s2.Identities(context.Background())
	if err != nil || len(ids) != 2 {
		t.Fatalf("after restart: %v %v", ids, err)
	}
	for _, ident := range ids {
		if !strings.Contains(strings.Join(want, " "), ident.ID) || len(ident.Chain) != 1 {
			t.Fatalf("identity %+v", ident)
		}
		signer, err := s2.Signer(context.Background(), ident.ID, prompt.Request{})
		if err != nil {
			t.Fatal(err)
		}
		checkSign(t, signer, ident.Certificate)
	}
}

func TestStoreImportPEM(t *testing.T) {
	pki := testpki.New(t)
	rsaID := pki.Issue(t, testpki.Options{Email: "pem-rsa@example.org", Key: testpki.RSA2048})
	ecID := pki.Issue(t, testpki.Options{Email: "pem-ec@example.org", Key: testpki.P256})
	other := pki.Issue(t, testpki.Options{Email: "other@example.org", Key: testpki.RSA2048})
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaID.Key.(*rsa.PrivateKey))})
	sec1DER, _ := x509.MarshalECPrivateKey(ecID.Key.(*ecdsa.PrivateKey))
	sec1 := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})...)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	_ = edPub
	edDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER})
	p224DER, _ := x509.MarshalPKCS8PrivateKey(p224)
	p224PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p224DER})
	encPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1}})
	cert := func(id *testpki.Identity) []byte { return testpki.CertPEM(id.Cert) }
	// chain in reverse order, intermediate before the leaf
	reversed := append(testpki.CertPEM(pki.Intermediate.Cert), cert(ecID)...)
	combined := append(append([]byte{}, cert(ecID)...), ecID.KeyPEM(t)...)

	tests := []struct {
		name      string
		key, cert []byte
		want      error
		chainLen  int
	}{
		{"PKCS #8 RSA", rsaID.KeyPEM(t), cert(rsaID), nil, 0},
		{"PKCS #1 RSA", pkcs1, cert(rsaID), nil, 0},
		{"SEC 1 EC with parameters block", sec1, cert(ecID), nil, 0},
		{"PKCS #8 EC, chain reversed", ecID.KeyPEM(t), reversed, nil, 1},
		{"key and cert in one PEM", combined, combined, nil, 0},
		{"key of another certificate", other.KeyPEM(t), cert(rsaID), ErrKeyMismatch, 0},
		{"no key", cert(rsaID), cert(rsaID), ErrBadInput, 0},
		{"two keys", append(rsaID.KeyPEM(t), ecID.KeyPEM(t)...), cert(rsaID), ErrBadInput, 0},
		{"encrypted PEM", encPEM, cert(rsaID), ErrBadInput, 0},
		{"encrypted PKCS #8", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), cert(rsaID), ErrBadInput, 0},
		{"garbage key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), cert(rsaID), ErrBadInput, 0},
		{"no certificate", rsaID.KeyPEM(t), nil, ErrBadInput, 0},
		{"garbage certificate", rsaID.KeyPEM(t), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), ErrBadInput, 0},
		{"Ed25519", edPEM, cert(rsaID), ErrUnsupportedKey, 0},
		{"P-224", p224PEM, cert(rsaID), ErrUnsupportedKey, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fp := &fakePrompter{def: "pw"}
			s, _ := newFileStore(t, fp, 0)
			fastKDF(s)
			keyCopy := bytes.Clone(tc.key)
			ident, err := s.ImportPEM(context.Background(), tc.key, tc.cert, ImportOptions{NewPassphrase: secret("pw")})
			if !bytes.Equal(keyCopy, tc.key) {
				t.Fatal("ImportPEM modified the caller's keyPEM")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			ids, _ := s.Identities(context.Background())
			if tc.want != nil {
				if len(ids) != 0 {
					t.Fatal("a failed import left an identity")
				}
				return
			}
			if len(ident.Chain) != tc.chainLen || len(ids) != 1 {
				t.Fatalf("chain %d (want %d), %d identities", len(ident.Chain), tc.chainLen, len(ids))
			}
			signer, err := s.Signer(context.Background(), ident.ID, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			checkSign(t, signer, ident.Certificate)
		})
	}
}

func TestStoreImportNewPassphrasePrompts(t *testing.T) {
	pki := testpki.New(t)
	tid := pki.Issue(t, testpki.Options{Email: "np@example.org", Key: testpki.P256})
	p12 := tid.PKCS12(t, "p12pass", false)
	tests := []struct {
		name    string
		answers []string
		pw      *prompt.Secret
		want    error
		prompts int
	}{
		{"p12 password and new passphrase asked", []string{"p12pass", "newpw", "newpw"}, nil, nil, 3},
		{"new passphrase asked", []string{"newpw", "newpw"}, secret("p12pass"), nil, 2},
		{"repetition differs", []string{"newpw", "newpX"}, secret("p12pass"), ErrPassphraseMismatch, 2},
		{"empty new passphrase", []string{""}, secret("p12pass"), ErrEmptyPassphrase, 1},
		{"wrong p12 password, no retry", []string{"nope"}, nil, ErrWrongPassphrase, 1},
		{"wrong given p12 password", nil, secret("nope"), ErrWrongPassphrase, 0},
		{"p12 password prompt cancelled", []string{cancelAnswer}, nil, prompt.ErrCancelled, 1},
		{"new passphrase prompt cancelled", []string{"newpw", cancelAnswer}, secret("p12pass"), prompt.ErrCancelled, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fp := &fakePrompter{answers: tc.answers, def: "unexpected"}
			s, _ := newFileStore(t, fp, 0)
			fastKDF(s)
			pw := tc.pw
			ident, err := s.ImportPKCS12(context.Background(), p12, pw, ImportOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if fp.calls() != tc.prompts {
				t.Fatalf("%d prompts, want %d", fp.calls(), tc.prompts)
			}
			if pw != nil && pw.Len() != 0 {
				t.Fatal("the given PKCS #12 password was not wiped")
			}
			fp.assertWiped(t)
			for i, r := range fp.requests() {
				if r.Kind != prompt.Passphrase || r.Operation != prompt.OpImport || r.TriesLeft != prompt.TriesUnknown {
					t.Fatalf("request %d: %+v", i, r)
				}
			}
			if tc.want != nil {
				return
			}
			reqs := fp.requests()
			n := len(reqs)
			if reqs[n-2].Title != titleNewPass || reqs[n-1].Title != titleRepeatPass || reqs[n-1].KeyLabel != "np@example.org" {
				t.Fatalf("new-passphrase prompts: %+v", reqs[n-2:])
			}
			if tc.pw == nil && reqs[0].Title != titleP12Password {
				t.Fatalf("p12 prompt: %+v", reqs[0])
			}
			fp.mu.Lock()
			fp.answers = []string{"newpw"}
			fp.mu.Unlock()
			signer, err := s.Signer(context.Background(), ident.ID, prompt.Request{})
			if err != nil {
				t.Fatal(err)
			}
			checkSign(t, signer, tid.Cert)
			// importing it again is refused, before any passphrase prompt
			n = fp.calls()
			if _, err := s.ImportPKCS12(context.Background(), p12, secret("p12pass"), ImportOptions{}); !errors.Is(err, ErrExists) {
				t.Fatalf("re-import: %v", err)
			}
			if fp.calls() != n {
				t.Fatal("re-import prompted")
			}
		})
	}
	// Not a PKCS #12 file at all.
	s, _ := newFileStore(t, &fakePrompter{}, 0)
	for _, data := range [][]byte{nil, []byte("not a pfx"), p12[:len(p12)/2]} {
		if _, err := s.ImportPKCS12(context.Background(), data, secret("p12pass"), ImportOptions{NewPassphrase: secret("x")}); !errors.Is(err, ErrBadInput) {
			t.Fatalf("bad input: %v", err)
		}
	}
}

func TestStoreRemove(t *testing.T) {
	pki := testpki.New(t)
	fp := &fakePrompter{def: "pw"}
	s, dir := newFileStore(t, fp, 0)
	fastKDF(s)
	a := importPEM(t, s, pki.Issue(t, testpki.Options{Email: "a@example.org", Key: testpki.P256}), "pw")
	b := importPEM(t, s, pki.Issue(t, testpki.Options{Email: "b@example.org", Key: testpki.P256}), "pw")
	ctx := context.Background()
	if err := s.Remove(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	ids, err := s.Identities(ctx)
	if err != nil || len(ids) != 1 || ids[0].ID != b.ID {
		t.Fatalf("after remove: %v %v", ids, err)
	}
	if _, err := os.Stat(filepath.Join(dir, a.ID+".key")); !os.IsNotExist(err) {
		t.Fatal("key file left behind")
	}
	for _, f := range []func() error{
		func() error { return s.Remove(ctx, a.ID) },
		func() error { _, err := s.Signer(ctx, a.ID, prompt.Request{}); return err },
		func() error { _, err := s.Decrypter(ctx, a.ID, prompt.Request{}); return err },
		func() error { _, err := s.Identity(ctx, a.ID); return err },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) {
			t.Fatalf("removed identity: %v", err)
		}
	}
	for _, bad := range []string{"", "../../etc/passwd", "ABC", "a b"} {
		if err := s.Remove(ctx, bad); !errors.Is(err, ErrInvalidID) {
			t.Fatalf("Remove(%q): %v", bad, err)
		}
		if _, err := s.Signer(ctx, bad, prompt.Request{}); !errors.Is(err, ErrInvalidID) {
			t.Fatalf("Signer(%q): %v", bad, err)
		}
	}
	if got, err := s.Identity(ctx, b.ID); err != nil || got.ID != b.ID {
		t.Fatalf("Identity: %v %v", got, err)
	}
}

func TestStoreCorruptEntries(t *testing.T) {
	pki := testpki.New(t)
	fp := &fakePrompter{def: "pw"}
	s, dir := newFileStore(t, fp, 0)
	fastKDF(s)
	a := importPEM(t, s, pki.Issue(t, testpki.Options{Email: "a@example.org", Key: testpki.P256}), "pw")
	b := importPEM(t, s, pki.Issue(t, testpki.Options{Email: "b@example.org", Key: testpki.P256}), "pw")
	ctx := context.Background()

	// A damaged certificate file hides only its own identity.
	certFile := filepath.Join(dir, a.ID+".cert")
	good, _ := os.ReadFile(certFile)
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := s.Identities(ctx)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Where != certFile || len(ids) != 1 || ids[0].ID != b.ID {
		t.Fatalf("identities with a corrupt file: %v, %v", ids, err)
	}
	if _, err := s.Signer(ctx, a.ID, prompt.Request{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("signer on corrupt entry: %v", err)
	}
	_ = os.WriteFile(certFile, good, 0o600)

	// A certificate without its key is reported, not listed.
	keyFile := filepath.Join(dir, a.ID+".key")
	goodKey, _ := os.ReadFile(keyFile)
	_ = os.Remove(keyFile)
	ids, err = s.Identities(ctx)
	if !errors.As(err, &ce) || ce.Where != certFile || len(ids) != 1 {
		t.Fatalf("cert without key: %v %v", ids, err)
	}

	// Another identity's key blob moved into a's place does not open, even
	// with the right passphrase of either: the blob is bound to its identity.
	v, _ := NewFileVault(dir)
	bKey, err := v.get(ctx, b.ID, kindKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.put(ctx, item{id: a.ID, kind: kindKey, data: bKey.data}); err != nil {
		t.Fatal(err)
	}
	signer, err := s.Signer(ctx, a.ID, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signer.Sign(rand.Reader, digest("x"), crypto.SHA256); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("swapped blob: %v", err)
	}

	// A key entry that is not a blob of ours is corrupt, named by file.
	if err := v.put(ctx, item{id: a.ID, kind: kindKey, data: []byte("not a blob")}); err != nil {
		t.Fatal(err)
	}
	signer, _ = s.Signer(ctx, a.ID, prompt.Request{})
	if _, err := signer.Sign(rand.Reader, digest("x"), crypto.SHA256); !errors.As(err, &ce) || ce.Where != keyFile {
		t.Fatalf("foreign blob: %v", err)
	}
	_ = os.WriteFile(keyFile, goodKey, 0o600)
	signer, _ = s.Signer(ctx, a.ID, prompt.Request{})
	checkSign(t, signer, a.Certificate)
}
