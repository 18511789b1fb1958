// Package keywrap implements the AES Key Wrap algorithm of RFC 3394 (no
// padding), as used for the key-encryption step of CMS key agreement
// (RFC 5753: id-aes128-wrap, id-aes192-wrap and id-aes256-wrap).
//
// The key-encryption key (KEK) selects AES-128, AES-192 or AES-256 by its
// length. The wrapped key data must be a multiple of 8 bytes and at least
// 16 bytes long; the output is 8 bytes longer than the input. Only the
// default initial value A6A6A6A6A6A6A6A6 (RFC 3394 section 2.2.3.1) is
// supported.
package keywrap

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrIntegrity is returned, wrapped, by Unwrap when the integrity check of
// the unwrapped key data fails: the wrapped key was altered, or the wrong KEK
// was used.
var ErrIntegrity = errors.New("keywrap: integrity check failed")

// defaultIV is the default initial value of RFC 3394 section 2.2.3.1.
const defaultIV uint64 = 0xA6A6A6A6A6A6A6A6

// minKeyLen is the smallest key data length (two 64-bit blocks) the
// algorithm is defined for.
const minKeyLen = 16

// Wrap wraps key under kek with the RFC 3394 key wrap algorithm. kek must be
// 16, 24 or 32 bytes long; key must be a multiple of 8 bytes and at least 16
// bytes long. The result is len(key)+8 bytes long.
func Wrap(kek, key []byte) ([]byte, error) {
	if len(key) < minKeyLen || len(key)%8 != 0 {
		return nil, fmt.Errorf("keywrap: key data is %d bytes, want a multiple of 8 and at least %d", len(key), minKeyLen)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: key-encryption key: %w", err)
	}

	n := len(key) / 8
	out := make([]byte, len(key)+8)
	copy(out[8:], key)
	a := defaultIV
	var b [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			r := out[8*i : 8*i+8]
			binary.BigEndian.PutUint64(b[:8], a)
			copy(b[8:], r)
			block.Encrypt(b[:], b[:])
			a = binary.BigEndian.Uint64(b[:8]) ^ uint64(n*j+i)
			copy(r, b[8:])
		}
	}
	binary.BigEndian.PutUint64(out[:8], a)
	clear(b[:])
	return out, nil
}

// Unwrap reverses Wrap: it unwraps wrapped under kek and checks the RFC 3394
// integrity value. kek must be 16, 24 or 32 bytes long; wrapped must be a
// multiple of 8 bytes and at least 24 bytes long. If the integrity check
// fails, Unwrap returns an error wrapping ErrIntegrity and no key data.
func Unwrap(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) < minKeyLen+8 || len(wrapped)%8 != 0 {
		return nil, fmt.Errorf("keywrap: wrapped key is %d bytes, want a multiple of 8 and at least %d", len(wrapped), minKeyLen+8)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("keywrap: key-encryption key: %w", err)
	}

	n := len(wrapped)/8 - 1
	out := make([]byte, len(wrapped)-8)
	copy(out, wrapped[8:])
	a := binary.BigEndian.Uint64(wrapped[:8])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			r := out[8*(i-1) : 8*i]
			binary.BigEndian.PutUint64(b[:8], a^uint64(n*j+i))
			copy(b[8:], r)
			block.Decrypt(b[:], b[:])
			a = binary.BigEndian.Uint64(b[:8])
			copy(r, b[8:])
		}
	}
	clear(b[:])

	var got, want [8]byte
	binary.BigEndian.PutUint64(got[:], a)
	binary.BigEndian.PutUint64(want[:], defaultIV)
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		clear(out)
		return nil, fmt.Errorf("keywrap: unwrapping %d-byte key: %w", len(out), ErrIntegrity)
	}
	return out, nil
}
