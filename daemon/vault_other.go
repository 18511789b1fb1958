//go:build !windows

package daemon

import "github.com/smimed/smimed/keystore"

// localVault is the encrypted-file vault.
func localVault(dir string) (keystore.Vault, error) { return keystore.NewFileVault(dir) }
