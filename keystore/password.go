package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/prompt"
)

// DirectoryPasswordSchema is the xdg:schema attribute of the Secret Service
// items that hold LDAP bind passwords (see [Store.DirectoryPassword]).
const DirectoryPasswordSchema = "org.smimed.DirectoryPassword"

// DirectoryPasswordAttributes returns the attributes that name the bind
// password of bindDN on server (an LDAP URL's "scheme://host:port"): the
// item an administrator or the user stores with
//
//	secret-tool store --label='smimed directory' xdg:schema org.smimed.DirectoryPassword \
//	    server ldap://ldap.example.org:389 bindname 'cn=reader,dc=example,dc=org'
func DirectoryPasswordAttributes(server, bindDN string) map[string]string {
	return map[string]string{"xdg:schema": DirectoryPasswordSchema, "server": server, "bindname": bindDN}
}

// secretVault is a Vault that can also read secrets other programs stored
// under attributes of their choosing (the Secret Service). A nil Secret and
// a nil error mean that no item has those attributes.
type secretVault interface {
	lookupSecret(ctx context.Context, attrs map[string]string) (*prompt.Secret, error)
}

// passwordNotFoundError reports that no directory password is stored;
// errors.Is(err, ErrNotFound) holds.
type passwordNotFoundError struct{ server, bindDN string }

func (e *passwordNotFoundError) Error() string {
	return fmt.Sprintf("keystore: no directory password stored for server %s, bindname %q", e.server, e.bindDN)
}

func (e *passwordNotFoundError) Is(target error) bool { return target == ErrNotFound }

// DirectoryPassword returns the password for a simple bind as bindDN to the
// LDAP server server ("ldap://host:port" or "ldaps://host:port", as
// directory.Server.Origin gives it). It is the secret of the item whose
// attributes are [DirectoryPasswordAttributes] (matched exactly: the same
// scheme, host, port and DN spelling), with one trailing line break
// removed (echo pw | secret-tool store ... adds one).
//
// The caller wipes the Secret once the bind is done; the Store keeps no
// copy (the bytes the D-Bus library received are zeroed, its internal
// message buffers are garbage, not zeroed), and neither logs it nor puts it
// in an error.
//
// Errors: no such item → an error for which errors.Is(err, ErrNotFound)
// holds; the collection is locked and its unlock prompt could not be shown
// or was dismissed → ErrLocked; a backend that cannot hold such passwords
// (the file vault, DPAPI, the macOS keychain) → ErrUnsupportedBackend.
func (s *Store) DirectoryPassword(ctx context.Context, server, bindDN string) (*prompt.Secret, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if server == "" || bindDN == "" {
		return nil, errors.New("keystore: directory password: the server and the bind DN are required")
	}
	sv, ok := s.vault.(secretVault)
	if !ok {
		return nil, fmt.Errorf("%w: the %s key store cannot hold directory passwords (they are read from the Secret Service only)",
			ErrUnsupportedBackend, s.vault.Backend())
	}
	sec, err := sv.lookupSecret(ctx, DirectoryPasswordAttributes(server, bindDN))
	if err != nil {
		return nil, fmt.Errorf("keystore: directory password for %s: %w", server, err)
	}
	if sec == nil {
		return nil, &passwordNotFoundError{server: server, bindDN: bindDN}
	}
	if sec.Len() == 0 {
		return nil, fmt.Errorf("keystore: the directory password stored for server %s, bindname %q is empty", server, bindDN)
	}
	return sec, nil
}

// lookupSecret reads the secret of the first item of the vault's collection
// with exactly these attributes (unlocking the collection, with the
// service's prompt, when it is locked). nil, nil when there is none.
func (v *SecretServiceVault) lookupSecret(ctx context.Context, attrs map[string]string) (*prompt.Secret, error) {
	coll, err := v.collection(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := v.search(ctx, coll, attrs)
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, nil
	}
	if len(paths) > 1 {
		v.log.WarnContext(ctx, "keystore: several secret service items match; using the first", "items", len(paths), "item", string(paths[0]))
	}
	var secret ssSecret
	err = v.withSession(ctx, func(sess dbus.ObjectPath) error {
		return v.call(ctx, paths[0], ssItem+".GetSecret", sess).Store(&secret)
	})
	defer clear(secret.Value)
	if err != nil {
		return nil, v.wrapErr("get secret of "+string(paths[0]), err)
	}
	val := secret.Value
	if bytes.HasSuffix(val, []byte("\n")) {
		val = val[:len(val)-1]
		if bytes.HasSuffix(val, []byte("\r")) {
			val = val[:len(val)-1]
		}
	}
	return prompt.NewSecret(val), nil
}
