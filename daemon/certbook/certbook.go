// Package certbook keeps the user's trust anchors and the address book of
// other people's certificates, under $XDG_DATA_HOME/smimed/:
//
//	trust/<sha256>.pem    one trust anchor per file (PEM)
//	certs/<sha256>.json   one recipient certificate per file, with what was
//	                      learnt about it from signed mail
//
// <sha256> is the lower-case hex SHA-256 of the certificate's DER. Every
// write goes to a temporary file in the same directory that is synced and
// renamed over the old one (then the directory is synced), so a crash leaves
// either the old or the new entry. A file that cannot be read is reported as
// a *CorruptError naming it, and never hides the other entries.
//
// The address book answers "which certificate do I encrypt to for this
// address" (Select): certificates valid now, whose key usage allows
// encryption, the one the person's signed mail named as their encryption
// key first, then the newest.
//
// # Trust anchors
//
// Anchors come from three places (TrustSources): the system's roots
// (x509.SystemCertPool; Debian: /etc/ssl/certs), the machine's policy and
// the user's own (the trust directory above; AddAnchors). The policy's are
// the files in the machine directory (/etc/smimed/trust) and the files and
// directories the configuration names. Each anchor has a Scope:
// ScopeSigning vouches for signers, ScopeEncryption for recipients'
// certificates. The system's and the user's anchors have both; a file
// directly in the machine directory or in trust.anchors has both, one in
// its signing/ or encryption/ subdirectory, or in trust.signing_anchors or
// trust.encryption_anchors, that scope only. A certificate met in several
// places is one Anchor with the union of the scopes. TrustPool gives the
// pool for one scope; the policy can leave the system's roots or the
// user's anchors out (TrustSources.System, User) to pin its own CAs.
//
// In a directory, the files named *.pem, *.crt, *.cer or *.der (any case)
// are read, not dotfiles nor subdirectories (other files, such as a
// README, are skipped silently); a file the configuration names is read
// whatever its name. A file is PEM (every CERTIFICATE block; other blocks
// are ignored) or one DER certificate, at most 1 MiB. Symbolic links are
// followed; a loop or a dangling link is reported. A file that cannot be
// read, or a configured path that is missing, is a *CorruptError beside
// the anchors that could be read; a missing machine directory is no
// anchors. A certificate that is not a CA is accepted as an anchor too:
// this pins that certificate (it verifies as a chain of its own), for
// organisations that trust a few end-entity certificates rather than a CA;
// Go's verifier would also accept certificates it signed.
//
// RemoveAnchors removes only the user's anchors: a policy anchor stays
// trusted whatever the user removes. The anchors and pools are cached and
// rebuilt when a source changes (the directories', the configured paths'
// and the read files' modification times and sizes are compared on each
// call), so verifying a message neither re-reads the files nor copies the
// system pool.
package certbook

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/smime/cms"
)

// Reasons Select gives when no certificate is usable for an address.
const (
	ReasonNoneFound     = "none-found"
	ReasonExpired       = "expired"
	ReasonWrongKeyUsage = "wrong-key-usage"
)

// Sources of an address-book entry.
const (
	// SourceUser: added by the user (smimectl certs add).
	SourceUser = "user"
	// SourceMessage: learnt from a verified signed or certs-only message.
	SourceMessage = "message"
)

// Error is the type of this package's sentinel errors.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// ErrCorrupt is matched (errors.Is) by every *CorruptError.
const ErrCorrupt Error = "certbook: corrupt entry"

// CorruptError is one stored file that cannot be read.
type CorruptError struct {
	// Path is the file.
	Path string
	// Err says what is wrong with it.
	Err error
}

// Error names the file and the problem.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("certbook: %s is unreadable: %v", e.Path, e.Err)
}

// Unwrap returns the problem.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == error(ErrCorrupt) }

// Entry is one certificate in the address book.
type Entry struct {
	// Certificate is the recipient's certificate.
	Certificate *x509.Certificate
	// Capabilities are the SMIMECapabilities of the owner's latest signed
	// mail that carried them; nil when unknown.
	Capabilities []cms.Capability
	// CapabilitiesSeen is when Capabilities were learnt.
	CapabilitiesSeen time.Time
	// PreferredAt is when a signed message last named this certificate
	// as its signer's encryption key (SMIMEEncryptionKeyPreference); zero
	// when never.
	PreferredAt time.Time
	// Added is when the entry was first stored.
	Added time.Time
	// Source is SourceUser or SourceMessage.
	Source string
}

// Fingerprint returns the hex SHA-256 of the entry's certificate.
func (e Entry) Fingerprint() string { return Fingerprint(e.Certificate) }

// Fingerprint returns the lower-case hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Emails returns the certificate's e-mail addresses: the rfc822Name
// subjectAltNames, then the subject's emailAddress attributes, lower-cased
// and without duplicates.
func Emails(c *x509.Certificate) []string {
	var out []string
	add := func(s string) {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, e := range c.EmailAddresses {
		add(e)
	}
	oidEmail := []int{1, 2, 840, 113549, 1, 9, 1}
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidEmail) {
			if s, ok := n.Value.(string); ok {
				add(s)
			}
		}
	}
	return out
}

// HasEmail reports whether the certificate names email (compared without
// regard to case).
func HasEmail(c *x509.Certificate, email string) bool {
	return slices.Contains(Emails(c), strings.ToLower(strings.TrimSpace(email)))
}

// CanEncrypt reports whether the certificate may receive encrypted mail: an
// RSA key with keyEncipherment (or no key usage extension), or an EC key
// with keyAgreement (or none); and, when it has an extended key usage,
// emailProtection or any among it.
func CanEncrypt(c *x509.Certificate) bool {
	switch c.PublicKey.(type) {
	case *rsa.PublicKey:
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			return false
		}
	case *ecdsa.PublicKey:
		if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
			return false
		}
	default:
		return false
	}
	return emailEKU(c)
}

// CanSign reports whether the certificate may sign mail: digitalSignature or
// nonRepudiation (or no key usage extension), and emailProtection or any
// among its extended key usages when it has them.
func CanSign(c *x509.Certificate) bool {
	if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return false
	}
	return emailEKU(c)
}

func emailEKU(c *x509.Certificate) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageEmailProtection) ||
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// ValidAt reports whether now lies within the certificate's validity.
func ValidAt(c *x509.Certificate, now time.Time) bool {
	return !now.Before(c.NotBefore) && !now.After(c.NotAfter)
}

// Select returns the entries usable for encrypting to email at now, best
// first: valid now, key usage allowing encryption; the most recently
// preferred (SMIMEEncryptionKeyPreference) first, then the latest NotAfter.
// When none is usable, reason says why: ReasonNoneFound (no certificate
// names the address), ReasonWrongKeyUsage (a valid one exists but cannot
// encrypt) or ReasonExpired.
func Select(entries []Entry, email string, now time.Time) (usable []Entry, reason string) {
	found, keyUsage := false, false
	for _, e := range entries {
		if !HasEmail(e.Certificate, email) {
			continue
		}
		found = true
		if !ValidAt(e.Certificate, now) {
			continue
		}
		if !CanEncrypt(e.Certificate) {
			keyUsage = true
			continue
		}
		usable = append(usable, e)
	}
	switch {
	case len(usable) > 0:
	case !found:
		return nil, ReasonNoneFound
	case keyUsage:
		return nil, ReasonWrongKeyUsage
	default:
		return nil, ReasonExpired
	}
	slices.SortStableFunc(usable, func(a, b Entry) int {
		if c := b.PreferredAt.Compare(a.PreferredAt); c != 0 {
			return c
		}
		if c := b.Certificate.NotAfter.Compare(a.Certificate.NotAfter); c != 0 {
			return c
		}
		return b.Certificate.NotBefore.Compare(a.Certificate.NotBefore)
	})
	return usable, ""
}

// Book is the trust anchors and the address book in one directory. It is
// safe for concurrent use; the files are the only state, so entries added
// by one Book are seen by another over the same directory.
type Book struct {
	dir    string
	logger *slog.Logger
	mu     sync.Mutex // serialises read-modify-write of entries
	trust  trustCache // anchors and pools of TrustAnchors, TrustPool
	// seen caches entries Add read, by path, with the file's size and
	// modification time: a signer verified again and again is merged
	// without re-reading and re-parsing its file. Guarded by mu.
	seen map[string]seenEntry
}

type seenEntry struct {
	mod  time.Time
	size int64
	e    Entry
}

// readEntrySeen is readEntry through the seen cache; the caller holds b.mu.
func (b *Book) readEntrySeen(path string) (Entry, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Entry{}, err
	}
	if c, ok := b.seen[path]; ok && c.mod.Equal(st.ModTime()) && c.size == st.Size() {
		return c.e, nil
	}
	e, err := readEntry(path)
	if err != nil {
		delete(b.seen, path)
		return Entry{}, err
	}
	if b.seen == nil {
		b.seen = map[string]seenEntry{}
	}
	b.seen[path] = seenEntry{mod: st.ModTime(), size: st.Size(), e: e}
	return e, nil
}

// DefaultDir returns $XDG_DATA_HOME/smimed (~/.local/share/smimed).
func DefaultDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "smimed"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("certbook: no home directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "smimed"), nil
}

// Open opens the book in dir (usually DefaultDir), creating dir/trust and
// dir/certs (mode 0700) when needed and removing temporary files a crash
// left behind.
func Open(dir string, logger *slog.Logger) (*Book, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Book{dir: dir, logger: logger}
	for _, sub := range []string{b.trustDir(), b.certsDir()} {
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return nil, fmt.Errorf("certbook: %w", err)
		}
		if st, err := os.Stat(sub); err == nil && st.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(sub, 0o700); err != nil {
				return nil, fmt.Errorf("certbook: %w", err)
			}
		}
		debris, _ := filepath.Glob(filepath.Join(sub, ".tmp-*"))
		for _, d := range debris {
			_ = os.Remove(d)
		}
	}
	return b, nil
}

// Dir returns the book's directory.
func (b *Book) Dir() string { return b.dir }

func (b *Book) trustDir() string { return filepath.Join(b.dir, "trust") }
func (b *Book) certsDir() string { return filepath.Join(b.dir, "certs") }

// Anchors returns the user's own trust anchors (the trust directory; see
// TrustAnchors for the policy's too). Unreadable files are reported in the
// error (one *CorruptError each) beside the readable anchors.
func (b *Book) Anchors(ctx context.Context) ([]*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names, err := b.files(b.trustDir(), ".pem")
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	var errs []error
	for _, name := range names {
		path := filepath.Join(b.trustDir(), name)
		c, err := readAnchor(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing (RemoveAnchors running): not damage
		}
		if err != nil {
			errs = append(errs, &CorruptError{Path: path, Err: err})
			continue
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

func readAnchor(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	if Fingerprint(c)+".pem" != filepath.Base(path) {
		return nil, errors.New("the certificate does not match the file name")
	}
	return c, nil
}

// AddAnchors stores certificates as the user's trust anchors (both scopes)
// and returns those that were not the user's anchors already.
func (b *Book) AddAnchors(ctx context.Context, certs []*x509.Certificate) ([]*x509.Certificate, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.trust.invalidate()
	var added []*x509.Certificate
	for _, c := range certs {
		if err := ctx.Err(); err != nil {
			return added, err
		}
		path := filepath.Join(b.trustDir(), Fingerprint(c)+".pem")
		if old, err := readAnchor(path); err == nil && old.Equal(c) {
			continue
		}
		if err := writeAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})); err != nil {
			return added, err
		}
		added = append(added, c)
	}
	return added, nil
}

// RemoveAnchors removes the user's anchors with the given fingerprints (hex
// SHA-256) and returns those it removed. A corrupt anchor file can be
// removed by its fingerprint too; it is then not in the result. Policy
// anchors are never removed: a certificate that is one stays trusted (see
// TrustAnchors).
func (b *Book) RemoveAnchors(ctx context.Context, fingerprints []string) ([]*x509.Certificate, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer b.trust.invalidate()
	var removed []*x509.Certificate
	for _, fp := range fingerprints {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if !isFingerprint(fp) {
			return removed, fmt.Errorf("certbook: %q is not a SHA-256 fingerprint", fp)
		}
		path := filepath.Join(b.trustDir(), fp+".pem")
		c, readErr := readAnchor(path)
		err := os.Remove(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("certbook: %w", err)
		}
		syncDir(b.trustDir())
		if readErr == nil {
			removed = append(removed, c)
		}
	}
	return removed, nil
}

func isFingerprint(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// List returns the address book, sorted by first e-mail address then
// NotAfter (newest first). Unreadable files are reported in the error
// beside the readable entries.
func (b *Book) List(ctx context.Context) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names, err := b.files(b.certsDir(), ".json")
	if err != nil {
		return nil, err
	}
	var out []Entry
	var errs []error
	for _, name := range names {
		path := filepath.Join(b.certsDir(), name)
		e, err := readEntry(path)
		if err != nil {
			errs = append(errs, &CorruptError{Path: path, Err: err})
			continue
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(x, y Entry) int {
		ex, ey := Emails(x.Certificate), Emails(y.Certificate)
		if c := strings.Compare(strings.Join(ex, ","), strings.Join(ey, ",")); c != 0 {
			return c
		}
		return y.Certificate.NotAfter.Compare(x.Certificate.NotAfter)
	})
	return out, errors.Join(errs...)
}

// Find returns the entries whose certificate names email, unsorted;
// see Select for choosing one. Corrupt files are reported as in List.
func (b *Book) Find(ctx context.Context, email string) ([]Entry, error) {
	all, err := b.List(ctx)
	var out []Entry
	for _, e := range all {
		if HasEmail(e.Certificate, email) {
			out = append(out, e)
		}
	}
	return out, err
}

// Add stores e, merging it with the stored entry for the same certificate:
// newer Capabilities and PreferredAt replace older ones, Added and a
// SourceUser source are kept. It reports whether anything changed on disk.
func (b *Book) Add(ctx context.Context, e Entry) (changed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if e.Certificate == nil {
		return false, errors.New("certbook: no certificate")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	path := filepath.Join(b.certsDir(), Fingerprint(e.Certificate)+".json")
	merged := e
	if old, err := b.readEntrySeen(path); err == nil {
		merged = old
		if e.Capabilities != nil && !e.CapabilitiesSeen.Before(old.CapabilitiesSeen) {
			merged.Capabilities, merged.CapabilitiesSeen = e.Capabilities, e.CapabilitiesSeen
		}
		if e.PreferredAt.After(old.PreferredAt) {
			merged.PreferredAt = e.PreferredAt
		}
		if e.Source == SourceUser {
			merged.Source = SourceUser
		}
		if entryEqual(merged, old) {
			return false, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		b.logger.Warn("certbook: replacing an unreadable entry", "path", path, "err", err)
	}
	if merged.Added.IsZero() {
		merged.Added = time.Now().UTC()
	}
	data, err := encodeEntry(merged)
	if err != nil {
		return false, err
	}
	delete(b.seen, path)
	if err := writeAtomic(path, data); err != nil {
		return false, err
	}
	return true, nil
}

// Remove deletes the entry with the given fingerprint; it reports whether
// there was one.
func (b *Book) Remove(ctx context.Context, fingerprint string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if !isFingerprint(fingerprint) {
		return false, fmt.Errorf("certbook: %q is not a SHA-256 fingerprint", fingerprint)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := os.Remove(filepath.Join(b.certsDir(), fingerprint+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("certbook: %w", err)
	}
	syncDir(b.certsDir())
	return true, nil
}

// files lists the entry files in dir with the given suffix, skipping
// temporary files.
func (b *Book) files(dir, suffix string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certbook: %w", err)
	}
	var out []string
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, suffix) || de.IsDir() {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// entryFile is the JSON form of an Entry.
type entryFile struct {
	Format           string           `json:"format"`
	Version          int              `json:"version"`
	Certificate      string           `json:"certificate"` // base64 DER
	Capabilities     []capabilityFile `json:"capabilities,omitempty"`
	CapabilitiesSeen time.Time        `json:"capabilities_seen,omitzero"`
	PreferredAt      time.Time        `json:"preferred_at,omitzero"`
	Added            time.Time        `json:"added"`
	Source           string           `json:"source"`
}

type capabilityFile struct {
	Algorithm  string `json:"algorithm"`            // dotted OID
	Parameters string `json:"parameters,omitempty"` // base64 DER
}

const entryFormat = "smimed-certbook-entry"

func encodeEntry(e Entry) ([]byte, error) {
	f := entryFile{
		Format: entryFormat, Version: 1,
		Certificate:      base64.StdEncoding.EncodeToString(e.Certificate.Raw),
		CapabilitiesSeen: e.CapabilitiesSeen.UTC(),
		PreferredAt:      e.PreferredAt.UTC(),
		Added:            e.Added.UTC(),
		Source:           e.Source,
	}
	for _, c := range e.Capabilities {
		f.Capabilities = append(f.Capabilities, capabilityFile{
			Algorithm:  c.Algorithm.String(),
			Parameters: base64.StdEncoding.EncodeToString(c.Parameters),
		})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("certbook: %w", err)
	}
	return append(data, '\n'), nil
}

func readEntry(path string) (Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Entry{}, err
	}
	var f entryFile
	if err := json.Unmarshal(data, &f); err != nil {
		return Entry{}, fmt.Errorf("not an address-book entry: %w", err)
	}
	if f.Format != entryFormat || f.Version != 1 {
		return Entry{}, fmt.Errorf("not an address-book entry (format %q version %d)", f.Format, f.Version)
	}
	der, err := base64.StdEncoding.DecodeString(f.Certificate)
	if err != nil {
		return Entry{}, fmt.Errorf("certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return Entry{}, err
	}
	if Fingerprint(c)+".json" != filepath.Base(path) {
		return Entry{}, errors.New("the certificate does not match the file name")
	}
	e := Entry{Certificate: c, CapabilitiesSeen: f.CapabilitiesSeen, PreferredAt: f.PreferredAt, Added: f.Added, Source: f.Source}
	for _, cf := range f.Capabilities {
		oid, err := parseOID(cf.Algorithm)
		if err != nil {
			return Entry{}, fmt.Errorf("capability %q: %w", cf.Algorithm, err)
		}
		params, err := base64.StdEncoding.DecodeString(cf.Parameters)
		if err != nil {
			return Entry{}, fmt.Errorf("capability %q: %w", cf.Algorithm, err)
		}
		if len(params) == 0 {
			params = nil
		}
		e.Capabilities = append(e.Capabilities, cms.Capability{Algorithm: oid, Parameters: params})
	}
	return e, nil
}

func entryEqual(a, b Entry) bool {
	if !a.CapabilitiesSeen.Equal(b.CapabilitiesSeen) || !a.PreferredAt.Equal(b.PreferredAt) ||
		a.Source != b.Source || len(a.Capabilities) != len(b.Capabilities) {
		return false
	}
	for i := range a.Capabilities {
		if !a.Capabilities[i].Algorithm.Equal(b.Capabilities[i].Algorithm) ||
			string(a.Capabilities[i].Parameters) != string(b.Capabilities[i].Parameters) {
			return false
		}
	}
	return true
}
