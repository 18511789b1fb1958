package keystore

import (
	"context"
	"fmt"
)

// Vault is where a [Store] keeps its entries: for each identity, the
// encrypted key blob and the certificate chain. Backends differ only in where
// those bytes live; the key is encrypted by the Store before it reaches any
// of them.
//
// The vault's storage methods (put, get, list, delete of named entries with
// attributes, each taking a context) are deliberately unexported: outside
// this package a Vault can be built, named and closed, but nothing can read a
// blob back out of it. Get one from [NewFileVault], [NewSecretServiceVault],
// or on macOS and Windows NewKeychainVault and NewDPAPIVault, and hand it to
// [Open].
type Vault interface {
	// Backend names the backend: "file", "secret-service", "keychain" or
	// "dpapi". It is shown in [Identity.Backend].
	Backend() string
	// Close releases what the vault holds (a D-Bus connection it opened).
	// [Store.Close] calls it.
	Close() error

	// put stores it, replacing an entry with the same id and kind.
	put(ctx context.Context, it item) error
	// get returns the entry, or an error wrapping ErrNotFound.
	get(ctx context.Context, id string, kind itemKind) (item, error)
	// list returns every readable entry. If some entries cannot be read,
	// it returns the others together with an error that joins one
	// *CorruptError per unreadable entry.
	list(ctx context.Context) ([]item, error)
	// remove deletes the entry; an error wrapping ErrNotFound when there is
	// none.
	remove(ctx context.Context, id string, kind itemKind) error
}

// itemKind says what an entry holds.
type itemKind string

const (
	// kindKey entries hold the encrypted key blob.
	kindKey itemKind = "key"
	// kindCert entries hold the certificate chain as PEM, leaf first.
	kindCert itemKind = "cert"
)

func (k itemKind) valid() bool { return k == kindKey || k == kindCert }

// item is one vault entry. Its name is the pair (id, kind); the backends
// turn that into a file name, Secret Service attributes or a keychain
// account.
type item struct {
	id    string
	kind  itemKind
	label string // human-readable name shown by the OS key manager
	data  []byte
	where string // file path or D-Bus object path, for error messages; set by get/list
}

// maxIDLen bounds identity IDs; ours are 64 hex digits.
const maxIDLen = 128

// checkID accepts the IDs this package issues (lower-case hex) and, for
// forward compatibility, other short names made of [a-z0-9-]. Anything that
// could walk out of a directory or confuse a D-Bus attribute is refused.
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: %q", ErrInvalidID, id)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c == '-') {
			return fmt.Errorf("%w: %q", ErrInvalidID, id)
		}
	}
	return nil
}

func checkName(id string, kind itemKind) error {
	if err := checkID(id); err != nil {
		return err
	}
	if !kind.valid() {
		return fmt.Errorf("keystore: unknown entry kind %q", kind)
	}
	return nil
}
