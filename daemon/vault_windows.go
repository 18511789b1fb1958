//go:build windows

package daemon

import "github.com/smimed/smimed/keystore"

// localVault is the encrypted-file vault, DPAPI-wrapped.
func localVault(dir string) (keystore.Vault, error) { return keystore.NewDPAPIVault(dir) }
