package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
)

// wipeKey zeroes the secret numbers of a decrypted private key: for RSA the
// private exponent, the primes and the CRT values; for ECDSA the scalar.
// What it cannot reach is listed in README.md (copies that crypto/rsa and
// crypto/ecdsa keep in unexported fields, and intermediate values of the
// operations themselves).
func wipeKey(k crypto.PrivateKey) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if k == nil {
			return
		}
		wipeInt(k.D)
		for _, p := range k.Primes {
			wipeInt(p)
		}
		wipeInt(k.Precomputed.Dp)
		wipeInt(k.Precomputed.Dq)
		wipeInt(k.Precomputed.Qinv)
		//lint:ignore SA1019 Precompute still fills CRTValues (multi-prime keys); wipe them too.
		for _, v := range k.Precomputed.CRTValues {
			wipeInt(v.Exp)
			wipeInt(v.Coeff)
			wipeInt(v.R)
		}
	case *ecdsa.PrivateKey:
		if k == nil {
			return
		}
		//lint:ignore SA1019 zeroing the scalar of a key that is never used again is the point here.
		wipeInt(k.D)
	}
}

// wipeInt zeroes the words of x, including spare capacity, and sets it to
// zero.
func wipeInt(x *big.Int) {
	if x == nil {
		return
	}
	w := x.Bits()
	clear(w[:cap(w)])
	x.SetInt64(0)
}

// keyMatches reports whether key is the private half of cert's public key.
func keyMatches(key crypto.PrivateKey, cert *x509.Certificate) bool {
	type publicKeyEqualer interface{ Equal(crypto.PublicKey) bool }
	signer, ok := key.(crypto.Signer)
	if !ok {
		return false
	}
	pub, ok := signer.Public().(publicKeyEqualer)
	return ok && pub.Equal(cert.PublicKey)
}
