package cms

import (
	"crypto"
	"encoding/asn1"
)

// Object identifiers used by EnvelopedData and AuthEnvelopedData:
// content-encryption, key-transport, key-agreement and key-wrap algorithms.
// Content types, hashes, rsaEncryption, id-mgf1, id-ecPublicKey and the
// content-type attribute come from oid.go. The names here carry an "Env"
// infix so they never collide with it.
var (
	// Content-encryption algorithms (RFC 3565, RFC 5084, RFC 3370 §5.1).
	oidEnvAES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidEnvAES192CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidEnvAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidEnvAES128GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	oidEnvAES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	oidEnvDES3CBC   = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}

	// Key transport (RFC 3370 §4.2.1, RFC 4055 §4, RFC 8017 appendix A).
	oidEnvRSAESOAEP  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidEnvPSpecified = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 9}

	// Elliptic curves (RFC 5480).
	oidEnvP256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidEnvP384 = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidEnvP521 = asn1.ObjectIdentifier{1, 3, 132, 0, 35}

	// AES key wrap (RFC 3394, RFC 3565 §2.3.2).
	oidEnvAES128Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	oidEnvAES192Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}
	oidEnvAES256Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}

	// Triple-DES key wrap, id-alg-CMS3DESwrap (RFC 3217 §3); read only.
	oidEnvDES3Wrap = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 6}
)

// kdfScheme is one of the RFC 5753 §7.1.4 ECDH key-agreement schemes.
type kdfScheme struct {
	oid      asn1.ObjectIdentifier
	hash     crypto.Hash
	cofactor bool
}

// envKDFSchemes lists the ephemeral-static ECDH schemes this package reads.
// For the NIST prime curves the cofactor is 1, so cofactor DH and standard
// DH compute the same shared secret.
var envKDFSchemes = []kdfScheme{
	{asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 2}, crypto.SHA1, false},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 0}, crypto.SHA224, false},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}, crypto.SHA256, false},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}, crypto.SHA384, false},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}, crypto.SHA512, false},
	{asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 3}, crypto.SHA1, true},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 0}, crypto.SHA224, true},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 1}, crypto.SHA256, true},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 2}, crypto.SHA384, true},
	{asn1.ObjectIdentifier{1, 3, 132, 1, 14, 3}, crypto.SHA512, true},
}

// kdfSchemeByOID returns the scheme named by oid.
func kdfSchemeByOID(oid asn1.ObjectIdentifier) (kdfScheme, bool) {
	for _, s := range envKDFSchemes {
		if s.oid.Equal(oid) {
			return s, true
		}
	}
	return kdfScheme{}, false
}

// stdDHScheme returns the standard-DH scheme for hash h.
func stdDHScheme(h crypto.Hash) (kdfScheme, bool) {
	for _, s := range envKDFSchemes {
		if s.hash == h && !s.cofactor {
			return s, true
		}
	}
	return kdfScheme{}, false
}

// envHashes lists the hash functions usable for OAEP and the X9.63 KDF (a
// subset of oid.go's hashOIDs: no MD5).
var envHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{oidSHA1, crypto.SHA1},
	{oidSHA224, crypto.SHA224},
	{oidSHA256, crypto.SHA256},
	{oidSHA384, crypto.SHA384},
	{oidSHA512, crypto.SHA512},
}

// envHashOID returns the object identifier of h.
func envHashOID(h crypto.Hash) (asn1.ObjectIdentifier, bool) {
	for _, e := range envHashes {
		if e.hash == h {
			return e.oid, true
		}
	}
	return nil, false
}

// envHashFromOID returns the hash named by oid.
func envHashFromOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for _, e := range envHashes {
		if e.oid.Equal(oid) {
			return e.hash, true
		}
	}
	return 0, false
}

// wrapAlgorithm is a key-wrap algorithm of key agreement.
type wrapAlgorithm struct {
	oid    asn1.ObjectIdentifier
	kekLen int    // key-encryption key length in bytes
	name   string // for RecipientInfo.KeyAlgorithm
}

// envWrapAlgorithms lists the key-wrap algorithms this package reads. Only
// the AES ones are written; Triple-DES key wrap (RFC 3217) is what OpenSSL
// uses with des-ede3-cbc content.
var envWrapAlgorithms = []wrapAlgorithm{
	{oidEnvAES128Wrap, 16, "aes128wrap"},
	{oidEnvAES192Wrap, 24, "aes192wrap"},
	{oidEnvAES256Wrap, 32, "aes256wrap"},
	{oidEnvDES3Wrap, 24, "3deswrap"},
}

// wrapByOID returns the key-wrap algorithm named by oid.
func wrapByOID(oid asn1.ObjectIdentifier) (wrapAlgorithm, bool) {
	for _, w := range envWrapAlgorithms {
		if w.oid.Equal(oid) {
			return w, true
		}
	}
	return wrapAlgorithm{}, false
}

// wrapForKeyLen picks the key-wrap algorithm whose strength matches a
// content-encryption key of n bytes.
func wrapForKeyLen(n int) (asn1.ObjectIdentifier, int) {
	switch {
	case n <= 16:
		return oidEnvAES128Wrap, 16
	case n <= 24:
		return oidEnvAES192Wrap, 24
	default:
		return oidEnvAES256Wrap, 32
	}
}
