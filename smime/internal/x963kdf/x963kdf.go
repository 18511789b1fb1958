// Package x963kdf implements the ANSI X9.63 key derivation function as
// profiled by RFC 5753 section 7.2 for CMS elliptic-curve Diffie-Hellman key
// agreement, and the DER encoding of the ECC-CMS-SharedInfo structure that
// RFC 5753 feeds into it.
//
// The KDF output is Hash(Z || Counter || SharedInfo) for Counter = 1, 2, ...
// as a 4-byte big-endian integer, concatenated and truncated to the
// requested length.
package x963kdf

import (
	"crypto"
	_ "crypto/sha1"   // registers crypto.SHA1
	_ "crypto/sha256" // registers crypto.SHA224 and crypto.SHA256
	_ "crypto/sha512" // registers crypto.SHA384 and crypto.SHA512
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxKeyLen is the largest key length, in bytes, that Derive produces. CMS
// needs at most 32 bytes (an AES-256 key-encryption key); anything near this
// bound indicates a caller bug rather than a real need.
const MaxKeyLen = 1 << 16

// Derive returns keyLen bytes derived from the shared secret z and
// sharedInfo with the X9.63 KDF over hash h, which must be one of
// crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384 or crypto.SHA512.
// z must not be empty and keyLen must be between 1 and MaxKeyLen.
func Derive(h crypto.Hash, z, sharedInfo []byte, keyLen int) ([]byte, error) {
	switch h {
	case crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return nil, fmt.Errorf("x963kdf: unsupported hash %v", h)
	}
	if !h.Available() {
		return nil, fmt.Errorf("x963kdf: hash %v is not linked into the binary", h)
	}
	if keyLen <= 0 || keyLen > MaxKeyLen {
		return nil, fmt.Errorf("x963kdf: key length %d out of range 1..%d", keyLen, MaxKeyLen)
	}
	if len(z) == 0 {
		return nil, fmt.Errorf("x963kdf: empty shared secret")
	}

	hh := h.New()
	out := make([]byte, 0, keyLen+hh.Size())
	var counter [4]byte
	for i := uint32(1); len(out) < keyLen; i++ {
		binary.BigEndian.PutUint32(counter[:], i)
		hh.Reset()
		hh.Write(z)
		hh.Write(counter[:])
		hh.Write(sharedInfo)
		out = hh.Sum(out)
	}
	clear(out[keyLen:cap(out)])
	return out[:keyLen:keyLen], nil
}

// SharedInfo returns the DER encoding of the RFC 5753 ECC-CMS-SharedInfo
//
//	ECC-CMS-SharedInfo ::= SEQUENCE {
//	    keyInfo      AlgorithmIdentifier,
//	    entityUInfo  [0] EXPLICIT OCTET STRING OPTIONAL,
//	    suppPubInfo  [2] EXPLICIT OCTET STRING }
//
// where keyInfo is wrapAlg (the key-wrap algorithm) with absent parameters,
// entityUInfo is ukm and is present only when ukm is non-nil, and
// suppPubInfo is keyLenBits, the key-encryption key length in bits, as a
// 4-byte big-endian integer.
func SharedInfo(wrapAlg asn1.ObjectIdentifier, ukm []byte, keyLenBits int) ([]byte, error) {
	if len(wrapAlg) < 2 {
		return nil, fmt.Errorf("x963kdf: invalid key-wrap algorithm identifier %v", wrapAlg)
	}
	if keyLenBits <= 0 || uint64(keyLenBits) > math.MaxUint32 {
		return nil, fmt.Errorf("x963kdf: key length %d bits out of range", keyLenBits)
	}
	var suppPubInfo [4]byte
	binary.BigEndian.PutUint32(suppPubInfo[:], uint32(keyLenBits))

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(wrapAlg)
		})
		if ukm != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ukm)
			})
		}
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(suppPubInfo[:])
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("x963kdf: encoding ECC-CMS-SharedInfo: %w", err)
	}
	return der, nil
}
