package keystore

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/smimed/smimed/prompt"
)

// Signer returns a handle that signs with the identity's private key. Each
// call to its Sign method is one signature: it asks the passphrase through
// the Prompter (unless a cached key is still valid, see
// [Options.CacheTTL]), decrypts the key, signs, and zeroes the passphrase
// and the key. A wrong passphrase fails that Sign with [ErrWrongPassphrase];
// it is not retried. A cancelled prompt fails with an error wrapping
// [prompt.ErrCancelled].
//
// ctx is kept by the handle and bounds the prompts its Sign calls make
// (crypto.Signer has no context of its own). req describes the operation
// for the prompt (Operation, Subject, Counterpart, Error); the store sets
// Kind to Passphrase, fills KeyLabel with the identity's label when empty,
// clears TokenLabel and sets TriesLeft to [prompt.TriesUnknown]: software
// keys have no try counter.
//
// RSA handles accept *rsa.PSSOptions as well as a crypto.Hash; ECDSA handles
// return ASN.1 signatures.
func (s *Store) Signer(ctx context.Context, id string, req prompt.Request) (crypto.Signer, error) {
	ref, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	switch ref.ident.Certificate.PublicKey.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
	default:
		return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, ref.ident.Certificate.PublicKey)
	}
	return &signer{ref: ref, ctx: ctx, req: softwareRequest(req, prompt.OpSign, ref.ident.Label)}, nil
}

// Decrypter returns a handle for the identity's private key to open
// messages, one operation per call, prompting like [Store.Signer].
//
// For an RSA key the handle's Decrypt takes *rsa.OAEPOptions or
// *rsa.PKCS1v15DecryptOptions (nil means PKCS #1 v1.5). For an EC key the
// handle also has the method ECDH(remote *ecdh.PublicKey) ([]byte, error),
// which returns the raw shared secret (the KeyAgreer of smime/cms), and its
// Decrypt fails with [ErrUnsupportedKey].
func (s *Store) Decrypter(ctx context.Context, id string, req prompt.Request) (crypto.Decrypter, error) {
	ref, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	r := softwareRequest(req, prompt.OpDecrypt, ref.ident.Label)
	switch ref.ident.Certificate.PublicKey.(type) {
	case *rsa.PublicKey:
		return &rsaDecrypter{ref: ref, ctx: ctx, req: r}, nil
	case *ecdsa.PublicKey:
		return &ecDecrypter{ref: ref, ctx: ctx, req: r}, nil
	}
	return nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, ref.ident.Certificate.PublicKey)
}

// softwareRequest completes a caller's prompt request for a software key.
func softwareRequest(r prompt.Request, op, label string) prompt.Request {
	r.Kind = prompt.Passphrase
	if r.Operation == "" {
		r.Operation = op
	}
	if r.KeyLabel == "" {
		r.KeyLabel = label
	}
	r.TokenLabel = ""
	r.TriesLeft = prompt.TriesUnknown
	return r
}

// signer is the handle Store.Signer returns.
type signer struct {
	ref *keyRef
	ctx context.Context
	req prompt.Request
}

// Public returns the certificate's public key; it needs no passphrase.
func (h *signer) Public() crypto.PublicKey { return h.ref.ident.Certificate.PublicKey }

// Sign makes one signature, asking the passphrase first.
func (h *signer) Sign(rnd io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 && len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("keystore: sign: digest is %d bytes, %v needs %d", len(digest), opts.HashFunc(), opts.HashFunc().Size())
	}
	key, release, err := h.ref.store.acquire(h.ctx, h.ref, h.req)
	if err != nil {
		return nil, err
	}
	defer release()
	sig, err := key.(crypto.Signer).Sign(rnd, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("keystore: sign with %s: %w", h.ref.ident.ID, err)
	}
	h.ref.store.log.DebugContext(h.ctx, "keystore: signed", "id", h.ref.ident.ID)
	return sig, nil
}

// rsaDecrypter is the handle Store.Decrypter returns for RSA keys.
type rsaDecrypter struct {
	ref *keyRef
	ctx context.Context
	req prompt.Request
}

// Public returns the certificate's public key.
func (h *rsaDecrypter) Public() crypto.PublicKey { return h.ref.ident.Certificate.PublicKey }

// Decrypt performs one RSA decryption, asking the passphrase first.
func (h *rsaDecrypter) Decrypt(rnd io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	pub := h.ref.ident.Certificate.PublicKey.(*rsa.PublicKey)
	if len(msg) > pub.Size() {
		return nil, fmt.Errorf("keystore: decrypt: ciphertext of %d bytes for a %d-byte key", len(msg), pub.Size())
	}
	key, release, err := h.ref.store.acquire(h.ctx, h.ref, h.req)
	if err != nil {
		return nil, err
	}
	defer release()
	out, err := key.(*rsa.PrivateKey).Decrypt(rnd, msg, opts)
	if err != nil {
		return nil, fmt.Errorf("keystore: decrypt with %s: %w", h.ref.ident.ID, err)
	}
	h.ref.store.log.DebugContext(h.ctx, "keystore: decrypted", "id", h.ref.ident.ID)
	return out, nil
}

// ecDecrypter is the handle Store.Decrypter returns for EC keys: a key
// agreer.
type ecDecrypter struct {
	ref *keyRef
	ctx context.Context
	req prompt.Request
}

// Public returns the certificate's public key (*ecdsa.PublicKey).
func (h *ecDecrypter) Public() crypto.PublicKey { return h.ref.ident.Certificate.PublicKey }

// Decrypt fails: EC keys open messages by key agreement (ECDH).
func (h *ecDecrypter) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, fmt.Errorf("%w: an EC key cannot decrypt; use ECDH", ErrUnsupportedKey)
}

// ECDH performs one ephemeral-static key agreement with remote, asking the
// passphrase first, and returns the shared secret.
func (h *ecDecrypter) ECDH(remote *ecdh.PublicKey) ([]byte, error) {
	if remote == nil {
		return nil, errors.New("keystore: ECDH: no remote key")
	}
	pub, err := h.ref.ident.Certificate.PublicKey.(*ecdsa.PublicKey).ECDH()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	if pub.Curve() != remote.Curve() {
		return nil, fmt.Errorf("keystore: ECDH: remote key is on another curve")
	}
	key, release, err := h.ref.store.acquire(h.ctx, h.ref, h.req)
	if err != nil {
		return nil, err
	}
	defer release()
	priv, err := key.(*ecdsa.PrivateKey).ECDH()
	if err != nil {
		return nil, fmt.Errorf("keystore: ECDH with %s: %w", h.ref.ident.ID, err)
	}
	shared, err := priv.ECDH(remote)
	if err != nil {
		return nil, fmt.Errorf("keystore: ECDH with %s: %w", h.ref.ident.ID, err)
	}
	h.ref.store.log.DebugContext(h.ctx, "keystore: key agreement", "id", h.ref.ident.ID)
	return shared, nil
}

// acquire returns the identity's decrypted private key for one operation
// and the function that ends the operation (zeroing the key unless the
// cache keeps it). Without a cache it always prompts; with one it reuses an
// unexpired cached key, and concurrent operations on one identity prompt
// once.
func (s *Store) acquire(ctx context.Context, ref *keyRef, req prompt.Request) (crypto.PrivateKey, func(), error) {
	if err := s.checkOpen(); err != nil {
		return nil, nil, err
	}
	if s.ttl <= 0 {
		key, err := s.unwrap(ctx, ref, req)
		if err != nil {
			return nil, nil, err
		}
		return key, func() { wipeKey(key) }, nil
	}
	id := ref.ident.ID
	turn := s.turn(id)
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("keystore: waiting for another prompt for %s: %w", id, ctx.Err())
	}
	defer func() { <-turn }()
	if key, release := s.cached(id); key != nil {
		s.log.DebugContext(ctx, "keystore: using cached key", "id", id)
		return key, release, nil
	}
	key, err := s.unwrap(ctx, ref, req)
	if err != nil {
		return nil, nil, err
	}
	return s.remember(id, key)
}

// unwrap asks the passphrase and decrypts the identity's key. The
// passphrase is wiped as soon as the key is derived from it, and the
// decrypted PKCS #8 bytes as soon as they are parsed.
func (s *Store) unwrap(ctx context.Context, ref *keyRef, req prompt.Request) (crypto.PrivateKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	secret, err := s.prompter.Ask(ctx, req)
	defer secret.Wipe()
	if err != nil {
		return nil, fmt.Errorf("keystore: passphrase for %s: %w", ref.ident.ID, err)
	}
	if secret.Len() == 0 {
		s.log.WarnContext(ctx, "keystore: empty passphrase", "id", ref.ident.ID, "operation", req.Operation)
		return nil, fmt.Errorf("%w for %s", ErrWrongPassphrase, ref.ident.ID)
	}
	var der []byte
	err = s.withKDF(ctx, func() error {
		var err error
		der, err = openKey(ref.blob, secret.Bytes(), ref.ident.ID, ref.fingerprint)
		return err
	})
	secret.Wipe()
	if errors.Is(err, ErrWrongPassphrase) {
		s.log.WarnContext(ctx, "keystore: wrong passphrase", "id", ref.ident.ID, "operation", req.Operation)
		return nil, fmt.Errorf("%w for %s", ErrWrongPassphrase, ref.ident.ID)
	}
	if errors.Is(err, errBlobFormat) {
		return nil, &CorruptError{Where: ref.where, Err: err}
	}
	if err != nil {
		return nil, err
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, &CorruptError{Where: ref.where, Err: fmt.Errorf("decrypted key: %w", err)}
	}
	if !keyMatches(key, ref.ident.Certificate) {
		wipeKey(key)
		return nil, corrupt(ref.where, "decrypted key does not match certificate %s", ref.ident.ID)
	}
	s.log.DebugContext(ctx, "keystore: key unlocked", "id", ref.ident.ID, "operation", req.Operation)
	return key, nil
}

// cacheEntry is an unlocked key kept for Options.CacheTTL.
type cacheEntry struct {
	key   crypto.PrivateKey
	users int  // operations using key now
	dead  bool // expired or invalidated: zero key when users reaches 0
}

// turn returns the per-identity token channel that serialises unlocking.
func (s *Store) turn(id string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.turns[id]
	if !ok {
		t = make(chan struct{}, 1)
		s.turns[id] = t
	}
	return t
}

// cached returns the live cached key for id, counted as in use, and its
// release function; nil when there is none.
func (s *Store) cached(id string) (crypto.PrivateKey, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.cache[id]
	if e == nil || e.dead || s.closed {
		return nil, nil
	}
	e.users++
	return e.key, s.releaser(e)
}

// remember caches key for the TTL and returns it in use by the caller.
func (s *Store) remember(id string, key crypto.PrivateKey) (crypto.PrivateKey, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		wipeKey(key)
		return nil, nil, ErrClosed
	}
	if old := s.cache[id]; old != nil {
		s.dropLocked(old)
	}
	e := &cacheEntry{key: key, users: 1}
	s.cache[id] = e
	time.AfterFunc(s.ttl, func() { s.expire(id, e) })
	return key, s.releaser(e), nil
}

// releaser returns the (idempotent) function that ends one use of e.
func (s *Store) releaser(e *cacheEntry) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			e.users--
			if e.dead && e.users == 0 {
				wipeKey(e.key)
				e.key = nil
			}
		})
	}
}

// expire ends a cache entry when its TTL is up.
func (s *Store) expire(id string, e *cacheEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cache[id] == e {
		delete(s.cache, id)
	}
	s.dropLocked(e)
	s.log.Debug("keystore: cached key expired", "id", id)
}

// invalidate drops id's cached key (Remove).
func (s *Store) invalidate(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.cache[id]; e != nil {
		delete(s.cache, id)
		s.dropLocked(e)
	}
}

// dropLocked marks e dead and zeroes its key if nobody uses it; s.mu held.
func (s *Store) dropLocked(e *cacheEntry) {
	e.dead = true
	if e.users == 0 && e.key != nil {
		wipeKey(e.key)
		e.key = nil
	}
}
