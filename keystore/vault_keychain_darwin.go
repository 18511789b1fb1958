//go:build darwin && cgo

package keystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/keybase/go-keychain"
)

// keychainService is the service attribute of our generic-password items.
const keychainService = "org.smimed.smimed"

// KeychainVault keeps entries as generic-password items of the user's macOS
// login keychain (service "org.smimed.smimed", account "<id>.key" or
// "<id>.cert"), not synchronised to iCloud and readable only while the
// keychain is unlocked on this device. It needs cgo (the Security
// framework); a build without cgo has no KeychainVault and uses
// [NewFileVault].
//
// A locked keychain that cannot be unlocked without user interaction gives
// an error wrapping [ErrLocked].
type KeychainVault struct {
	mu sync.Mutex // Security framework calls are serialised
}

// NewKeychainVault returns the macOS keychain vault.
func NewKeychainVault() (*KeychainVault, error) { return &KeychainVault{}, nil }

// Backend returns "keychain".
func (v *KeychainVault) Backend() string { return "keychain" }

// Close does nothing.
func (v *KeychainVault) Close() error { return nil }

func keychainQuery(account string) keychain.Item {
	q := keychain.NewItem()
	q.SetSecClass(keychain.SecClassGenericPassword)
	q.SetService(keychainService)
	if account != "" {
		q.SetAccount(account)
	}
	return q
}

func keychainErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, keychain.ErrorInteractionNotAllowed), errors.Is(err, keychain.ErrorUserCanceled),
		errors.Is(err, keychain.ErrorAuthFailed):
		return fmt.Errorf("%w: keychain: %s: %w", ErrLocked, what, err)
	case errors.Is(err, keychain.ErrorNoSuchKeychain), errors.Is(err, keychain.ErrorNotAvailable):
		return fmt.Errorf("%w: keychain: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("keystore: keychain: %s: %w", what, err)
}

func (v *KeychainVault) put(ctx context.Context, it item) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkName(it.id, it.kind); err != nil {
		return err
	}
	account := it.id + "." + string(it.kind)
	v.mu.Lock()
	defer v.mu.Unlock()
	add := keychainQuery(account)
	add.SetLabel(it.label)
	add.SetData(it.data)
	add.SetSynchronizable(keychain.SynchronizableNo)
	add.SetAccessible(keychain.AccessibleWhenUnlockedThisDeviceOnly)
	err := keychain.AddItem(add)
	if errors.Is(err, keychain.ErrorDuplicateItem) {
		upd := keychain.NewItem()
		upd.SetLabel(it.label)
		upd.SetData(it.data)
		err = keychain.UpdateItem(keychainQuery(account), upd)
	}
	return keychainErr("store "+account, err)
}

func (v *KeychainVault) get(ctx context.Context, id string, kind itemKind) (item, error) {
	if err := ctx.Err(); err != nil {
		return item{}, err
	}
	if err := checkName(id, kind); err != nil {
		return item{}, err
	}
	account := id + "." + string(kind)
	v.mu.Lock()
	defer v.mu.Unlock()
	q := keychainQuery(account)
	q.SetMatchLimit(keychain.MatchLimitOne)
	q.SetReturnData(true)
	res, err := keychain.QueryItem(q)
	if err != nil {
		return item{}, keychainErr("read "+account, err)
	}
	if len(res) == 0 {
		return item{}, fmt.Errorf("%w: %s entry %s", ErrNotFound, kind, id)
	}
	where := "keychain:" + keychainService + "/" + account
	if len(res[0].Data) == 0 {
		return item{}, corrupt(where, "item holds no data")
	}
	return item{id: id, kind: kind, data: res[0].Data, where: where}, nil
}

func (v *KeychainVault) list(ctx context.Context) ([]item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// macOS refuses kSecReturnData together with kSecMatchLimitAll: list
	// the accounts, then read each item.
	v.mu.Lock()
	q := keychainQuery("")
	q.SetMatchLimit(keychain.MatchLimitAll)
	q.SetReturnAttributes(true)
	res, err := keychain.QueryItem(q)
	v.mu.Unlock()
	if err != nil {
		return nil, keychainErr("list", err)
	}
	var items []item
	var errs []error
	for _, r := range res {
		i := strings.LastIndexByte(r.Account, '.')
		if i <= 0 || checkName(r.Account[:i], itemKind(r.Account[i+1:])) != nil {
			errs = append(errs, corrupt("keychain:"+keychainService+"/"+r.Account, "not an entry name"))
			continue
		}
		it, err := v.get(ctx, r.Account[:i], itemKind(r.Account[i+1:]))
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case errors.Is(err, ErrCorrupt):
			errs = append(errs, err)
			continue
		case err != nil:
			return nil, err
		}
		items = append(items, it)
	}
	return items, errors.Join(errs...)
}

func (v *KeychainVault) remove(ctx context.Context, id string, kind itemKind) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkName(id, kind); err != nil {
		return err
	}
	account := id + "." + string(kind)
	v.mu.Lock()
	defer v.mu.Unlock()
	err := keychain.DeleteItem(keychainQuery(account))
	if errors.Is(err, keychain.ErrorItemNotFound) {
		return fmt.Errorf("%w: %s entry %s", ErrNotFound, kind, id)
	}
	return keychainErr("delete "+account, err)
}
