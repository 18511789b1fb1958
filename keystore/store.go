package keystore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/prompt"
)

// Identity is a certificate whose private key the store holds.
type Identity struct {
	// ID names the identity: the lower-case hex SHA-256 fingerprint of the
	// certificate (64 digits). It is stable across restarts and machines.
	ID string
	// Label is a name to show: the subject's common name and e-mail
	// address, e.g. "Alice Example <alice@example.org>".
	Label string
	// Certificate is the identity's own certificate.
	Certificate *x509.Certificate
	// Chain holds the other certificates that came with it (issuers),
	// nearest issuer first; it may be empty.
	Chain []*x509.Certificate
	// Backend names where the identity is kept: "file", "secret-service",
	// "keychain" or "dpapi".
	Backend string
}

// Options configure [Open].
type Options struct {
	// Vault is where identities are kept. Required. The Store owns it from
	// now on: [Store.Close] closes it.
	Vault Vault
	// Prompter asks the user for passphrases. Required. The daemon passes
	// its serialised pinentry (or prompt agent) prompter.
	Prompter prompt.Prompter
	// CacheTTL, when positive, lets an unlocked key be reused without a
	// prompt for this long after the passphrase was entered (machine
	// policy decides). The cached key is zeroed when the time is up, when
	// the identity is removed and on Close. Zero (the default) means every
	// private-key operation asks for the passphrase.
	CacheTTL time.Duration
	// Logger receives the store's records (never a passphrase or key
	// material); none when nil.
	Logger *slog.Logger
}

// Store holds software S/MIME identities: certificates, and private keys
// that are kept only encrypted under a per-key passphrase and are decrypted
// for one operation at a time after asking the user for that passphrase.
//
// No method returns a private key or an encrypted key blob: keys leave the
// store only as handles ([Store.Signer], [Store.Decrypter]) that perform one
// operation per call. A Store is safe for concurrent use.
type Store struct {
	vault    Vault
	prompter prompt.Prompter
	ttl      time.Duration
	log      *slog.Logger
	kdf      kdfParams
	// kdfSlots bounds concurrent scrypt derivations (32 MiB each), so that
	// many requests at once cannot balloon the daemon's memory.
	kdfSlots chan struct{}

	mu     sync.Mutex
	closed bool
	cache  map[string]*cacheEntry
	// turns serialises unlocking per identity when caching, so that
	// concurrent operations on one identity prompt once.
	turns map[string]chan struct{}
}

// Open returns a Store over opts.Vault. It does not touch the vault (a
// locked Secret Service collection is unlocked by the first operation that
// needs it, not at daemon start).
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("keystore: open: %w", err)
	}
	if opts.Vault == nil {
		return nil, errors.New("keystore: open: no vault")
	}
	if opts.Prompter == nil {
		return nil, errors.New("keystore: open: no prompter")
	}
	if opts.CacheTTL < 0 {
		return nil, fmt.Errorf("keystore: open: negative CacheTTL %v", opts.CacheTTL)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{
		vault:    opts.Vault,
		prompter: opts.Prompter,
		ttl:      opts.CacheTTL,
		log:      log.With("component", "keystore", "backend", opts.Vault.Backend()),
		kdf:      defaultKDF(),
		kdfSlots: make(chan struct{}, min(runtime.GOMAXPROCS(0), maxParallelKDF)),
		cache:    make(map[string]*cacheEntry),
		turns:    make(map[string]chan struct{}),
	}, nil
}

// maxParallelKDF is the most scrypt derivations a Store runs at once.
const maxParallelKDF = 4

// withKDF runs f, which derives a key from a passphrase, once a derivation
// slot is free.
func (s *Store) withKDF(ctx context.Context, f func() error) error {
	select {
	case s.kdfSlots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("keystore: waiting to derive a key: %w", ctx.Err())
	}
	defer func() { <-s.kdfSlots }()
	return f()
}

// Backend names the store's vault backend.
func (s *Store) Backend() string { return s.vault.Backend() }

// Close zeroes every cached key and closes the vault. Handles obtained
// before fail with [ErrClosed] afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for id, e := range s.cache {
		s.dropLocked(e)
		delete(s.cache, id)
	}
	s.mu.Unlock()
	return s.vault.Close()
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// Identities lists the identities in the store, sorted by label. Entries
// that cannot be read (a damaged file, a certificate without its key) do
// not hide the others: the readable identities are returned together with
// an error that joins one [*CorruptError] per bad entry (errors.As finds
// them; errors.Is(err, ErrCorrupt) holds). Any other error (a locked
// keyring) comes with no identities.
func (s *Store) Identities(ctx context.Context) ([]Identity, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	items, listErr := s.vault.list(ctx)
	if listErr != nil && !onlyCorrupt(listErr) {
		return nil, listErr
	}
	keys := make(map[string]bool)
	var certs []item
	for _, it := range items {
		switch it.kind {
		case kindKey:
			keys[it.id] = true
		case kindCert:
			certs = append(certs, it)
		}
	}
	errs := []error{listErr}
	var ids []Identity
	for _, it := range certs {
		ident, err := s.parseCertItem(it)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !keys[it.id] {
			errs = append(errs, corrupt(it.where, "certificate %s has no key entry", it.id))
			continue
		}
		ids = append(ids, ident)
	}
	slices.SortFunc(ids, func(a, b Identity) int {
		return cmp.Or(cmp.Compare(a.Label, b.Label), cmp.Compare(a.ID, b.ID))
	})
	err := errors.Join(errs...)
	if err != nil {
		s.log.WarnContext(ctx, "keystore: unreadable entries", "err", err)
	}
	return ids, err
}

// onlyCorrupt reports whether err consists only of *CorruptError values.
func onlyCorrupt(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyCorrupt(e) {
				return false
			}
		}
		return true
	}
	var ce *CorruptError
	return errors.As(err, &ce)
}

// Identity returns one identity by ID; the error wraps [ErrNotFound] when
// there is none.
func (s *Store) Identity(ctx context.Context, id string) (Identity, error) {
	ref, err := s.load(ctx, id)
	if err != nil {
		return Identity{}, err
	}
	return ref.ident, nil
}

// Remove deletes an identity: its certificate and its encrypted key. A
// cached unlocked key is zeroed first. The error wraps [ErrNotFound] when
// there was nothing to delete.
func (s *Store) Remove(ctx context.Context, id string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := checkID(id); err != nil {
		return err
	}
	s.invalidate(id)
	// Certificate first: a crash in between leaves an orphan encrypted key,
	// which is invisible, rather than a certificate without its key.
	certErr := s.vault.remove(ctx, id, kindCert)
	keyErr := s.vault.remove(ctx, id, kindKey)
	if errors.Is(certErr, ErrNotFound) && errors.Is(keyErr, ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	var errs []error
	for _, err := range []error{certErr, keyErr} {
		if err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("keystore: remove %s: %w", id, err)
	}
	s.log.InfoContext(ctx, "keystore: identity removed", "id", id)
	return nil
}

// keyRef is what a key handle holds: the identity and its encrypted blob,
// read from the vault when the handle was made.
type keyRef struct {
	store       *Store
	ident       Identity
	fingerprint []byte
	blob        []byte
	where       string
}

// load reads an identity's certificate and encrypted key.
func (s *Store) load(ctx context.Context, id string) (*keyRef, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := checkID(id); err != nil {
		return nil, err
	}
	certItem, err := s.vault.get(ctx, id, kindCert)
	if err != nil {
		return nil, err
	}
	ident, err := s.parseCertItem(certItem)
	if err != nil {
		return nil, err
	}
	keyItem, err := s.vault.get(ctx, id, kindKey)
	if errors.Is(err, ErrNotFound) {
		return nil, corrupt(certItem.where, "certificate %s has no key entry", id)
	}
	if err != nil {
		return nil, err
	}
	return &keyRef{store: s, ident: ident, fingerprint: fingerprintBytes(ident.Certificate), blob: keyItem.data, where: keyItem.where}, nil
}

// parseCertItem reads a certificate entry: PEM certificates, leaf first,
// whose leaf fingerprint must be the entry's ID.
func (s *Store) parseCertItem(it item) (Identity, error) {
	var certs []*x509.Certificate
	rest := it.data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return Identity{}, &CorruptError{Where: it.where, Err: err}
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return Identity{}, corrupt(it.where, "no certificate in the entry")
	}
	if fingerprintID(certs[0]) != it.id {
		return Identity{}, corrupt(it.where, "certificate does not match the entry's ID %s", it.id)
	}
	return Identity{
		ID:          it.id,
		Label:       labelFor(certs[0]),
		Certificate: certs[0],
		Chain:       certs[1:],
		Backend:     s.vault.Backend(),
	}, nil
}

// fingerprintID is the identity ID for a certificate.
func fingerprintID(c *x509.Certificate) string {
	return hex.EncodeToString(fingerprintBytes(c))
}

// fingerprintBytes is the certificate's SHA-256 fingerprint.
func fingerprintBytes(c *x509.Certificate) []byte {
	fp := sha256.Sum256(c.Raw)
	return fp[:]
}

// labelFor names a certificate for people: "CN <email>", the common name or
// the address alone, or the whole subject.
func labelFor(c *x509.Certificate) string {
	cn := strings.TrimSpace(c.Subject.CommonName)
	email := ""
	if len(c.EmailAddresses) > 0 {
		email = c.EmailAddresses[0]
	}
	switch {
	case cn != "" && email != "" && !strings.EqualFold(cn, email):
		return cn + " <" + email + ">"
	case cn != "":
		return cn
	case email != "":
		return email
	}
	return c.Subject.String()
}

// certPEM encodes the leaf and chain as the certificate entry.
func certPEM(leaf *x509.Certificate, chain []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range append([]*x509.Certificate{leaf}, chain...) {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}
