//go:build windows

package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// dpapiEntropy is the optional entropy given to DPAPI: it keeps other
// programs of the same user that call CryptUnprotectData without it from
// opening our files by accident.
const dpapiEntropy = "smimed vault entry v1"

// NewDPAPIVault opens a vault in dir (usually [DefaultFileVaultDir]:
// %LOCALAPPDATA%\smimed\keys) that works like [NewFileVault] but wraps each
// file in Windows DPAPI (CryptProtectData, current user, no UI), so the
// files can be opened only by the same Windows account on the same machine,
// in addition to the key blobs' own passphrase encryption. Its backend name
// is "dpapi".
func NewDPAPIVault(dir string) (*FileVault, error) {
	return newFileVault(dir, "dpapi", dpapiProtect, dpapiUnprotect)
}

func blobOf(b []byte) *windows.DataBlob {
	if len(b) == 0 {
		return &windows.DataBlob{}
	}
	return &windows.DataBlob{Size: uint32(len(b)), Data: &b[0]}
}

// takeBlob copies a DPAPI output buffer and frees it.
func takeBlob(out *windows.DataBlob) []byte {
	if out.Data == nil {
		return nil
	}
	defer windows.LocalFree(windows.Handle(unsafe.Pointer(out.Data)))
	return bytes.Clone(unsafe.Slice(out.Data, out.Size))
}

func dpapiProtect(plain []byte) ([]byte, error) {
	if len(plain) == 0 {
		return nil, errors.New("dpapi: nothing to protect")
	}
	desc, err := windows.UTF16PtrFromString("smimed key store entry")
	if err != nil {
		return nil, err
	}
	entropy := []byte(dpapiEntropy)
	var out windows.DataBlob
	if err := windows.CryptProtectData(blobOf(plain), desc, blobOf(entropy), 0, nil, windows.CRYPTPROTECT_UI_FORBIDDEN, &out); err != nil {
		return nil, fmt.Errorf("dpapi: CryptProtectData: %w", err)
	}
	return takeBlob(&out), nil
}

func dpapiUnprotect(sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, errors.New("dpapi: empty file")
	}
	entropy := []byte(dpapiEntropy)
	var out windows.DataBlob
	if err := windows.CryptUnprotectData(blobOf(sealed), nil, blobOf(entropy), 0, nil, windows.CRYPTPROTECT_UI_FORBIDDEN, &out); err != nil {
		return nil, fmt.Errorf("dpapi: CryptUnprotectData: %w", err)
	}
	return takeBlob(&out), nil
}
