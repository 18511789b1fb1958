package keystore

import "fmt"

// Error is the type of this package's sentinel errors. Compare them with
// [errors.Is]: they usually come wrapped with context (which identity, which
// file, which D-Bus object).
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

const (
	// ErrLocked: the OS key store (a Secret Service collection, the macOS
	// keychain) is locked and no unlock prompt could be shown or it was not
	// answered (headless session, prompt dismissed, deadline passed). The
	// daemon reports it as org.smimed.Error.KeystoreLocked.
	ErrLocked Error = "keystore: the key store is locked"
	// ErrUnavailable: the backend does not exist on this machine or session
	// (no Secret Service on the bus); the caller may fall back to the file
	// vault.
	ErrUnavailable Error = "keystore: key store backend not available"
	// ErrWrongPassphrase: the passphrase did not decrypt the key (or the PKCS
	// #12 password did not open the file). It is never retried
	// automatically.
	ErrWrongPassphrase Error = "keystore: wrong passphrase"
	// ErrPassphraseMismatch: the new passphrase and its repetition differ.
	ErrPassphraseMismatch Error = "keystore: the passphrases do not match"
	// ErrEmptyPassphrase: an empty passphrase was given for a new key; every
	// software key is protected by a passphrase.
	ErrEmptyPassphrase Error = "keystore: the passphrase is empty"
	// ErrNotFound: no identity with this ID.
	ErrNotFound Error = "keystore: no such identity"
	// ErrExists: the identity (same certificate) is already in the store.
	ErrExists Error = "keystore: identity already exists"
	// ErrKeyMismatch: the private key does not belong to the certificate.
	ErrKeyMismatch Error = "keystore: the private key does not match the certificate"
	// ErrUnsupportedKey: the key is neither RSA nor ECDSA on P-256, P-384 or
	// P-521, or the operation does not suit the key (RSA decryption with an
	// EC key).
	ErrUnsupportedKey Error = "keystore: unsupported key"
	// ErrBadInput: the file or PEM data given for import cannot be read.
	ErrBadInput Error = "keystore: unreadable input"
	// ErrInvalidID: the identity ID is not one this package issues.
	ErrInvalidID Error = "keystore: invalid identity ID"
	// ErrClosed: the Store was closed.
	ErrClosed Error = "keystore: store closed"
	// ErrCorrupt: a stored entry cannot be read; see [CorruptError].
	ErrCorrupt Error = "keystore: corrupt entry"
	// ErrUnsupportedBackend: the backend cannot do what was asked, e.g.
	// hold directory passwords ([Store.DirectoryPassword]), which only the
	// Secret Service can.
	ErrUnsupportedBackend Error = "keystore: not supported by this key store backend"
)

// CorruptError reports one stored entry that cannot be read: a vault file
// that is not ours or was damaged, a Secret Service item with missing
// attributes, an encrypted key blob in an unknown format. Entries that can be
// read are unaffected. errors.Is(err, ErrCorrupt) holds.
type CorruptError struct {
	// Where names the entry: a file path, or a D-Bus object path.
	Where string
	// Err says what is wrong with it.
	Err error
}

// Error names the entry and the problem.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("keystore: corrupt entry %s: %v", e.Where, e.Err)
}

// Unwrap returns the underlying problem.
func (e *CorruptError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(where string, format string, args ...any) error {
	return &CorruptError{Where: where, Err: fmt.Errorf(format, args...)}
}

// errBlobFormat is wrapped by the blob decoder when the bytes are not a key
// blob of a version this package reads.
const errBlobFormat Error = "not a smimed key blob of a known version"
