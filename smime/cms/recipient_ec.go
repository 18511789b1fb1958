package cms

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/smimed/smimed/smime/internal/keywrap"
	"github.com/smimed/smimed/smime/internal/x963kdf"
)

// ecdhCurve returns the crypto/ecdh curve and the curve OID of an EC
// certificate key.
func ecdhCurve(c elliptic.Curve) (ecdh.Curve, asn1.ObjectIdentifier, bool) {
	switch c {
	case elliptic.P256():
		return ecdh.P256(), oidEnvP256, true
	case elliptic.P384():
		return ecdh.P384(), oidEnvP384, true
	case elliptic.P521():
		return ecdh.P521(), oidEnvP521, true
	}
	return nil, nil, false
}

// buildKARI encrypts cek to an EC recipient with ephemeral-static ECDH
// (RFC 5753 §3.1.1) and returns the DER of the [1] KeyAgreeRecipientInfo.
// Every call uses a fresh ephemeral key, so each recipient gets its own
// KeyAgreeRecipientInfo. ukm, when not nil, is sent as user keying material.
func buildKARI(rnd io.Reader, r Recipient, pub *ecdsa.PublicKey, cek []byte, kdfHash crypto.Hash, ukm []byte) ([]byte, error) {
	curve, _, ok := ecdhCurve(pub.Curve)
	if !ok {
		return nil, unsupported("EC recipient key on curve %s", pub.Curve.Params().Name)
	}
	scheme, ok := stdDHScheme(kdfHash)
	if !ok {
		return nil, unsupported("KDF hash %v", kdfHash)
	}
	remote, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("cms: recipient key of %s: %w", r.Certificate.Subject, err)
	}
	eph, err := curve.GenerateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("cms: generating an ephemeral key: %w", err)
	}
	z, err := eph.ECDH(remote)
	if err != nil {
		return nil, fmt.Errorf("cms: ECDH with %s: %w", r.Certificate.Subject, err)
	}
	defer clear(z)
	wrapOID, kekLen := wrapForKeyLen(len(cek))
	kek, err := deriveKEK(scheme.hash, z, wrapOID, ukm, kekLen)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	wrapped, err := keywrap.Wrap(kek, cek)
	if err != nil {
		return nil, fmt.Errorf("cms: wrapping the content key: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidECPublicKey)
				})
				b.AddASN1BitString(eph.PublicKey().Bytes())
			})
		})
		if ukm != nil {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ukm)
			})
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(scheme.oid)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(wrapOID)
			})
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				appendRID(b, r.Certificate, r.SubjectKeyID, true)
				b.AddASN1OctetString(wrapped)
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cms: encoding KeyAgreeRecipientInfo: %w", err)
	}
	return der, nil
}

// deriveKEK runs the X9.63 KDF over the shared secret z with the RFC 5753
// ECC-CMS-SharedInfo for the key-wrap algorithm wrapOID with absent
// parameters, the form this package writes.
func deriveKEK(h crypto.Hash, z []byte, wrapOID asn1.ObjectIdentifier, ukm []byte, kekLen int) ([]byte, error) {
	si, err := x963kdf.SharedInfo(wrapOID, ukm, kekLen*8)
	if err != nil {
		return nil, fmt.Errorf("cms: ECC-CMS-SharedInfo: %w", err)
	}
	return deriveWithSharedInfo(h, z, si, kekLen)
}

func deriveWithSharedInfo(h crypto.Hash, z, sharedInfo []byte, kekLen int) ([]byte, error) {
	kek, err := x963kdf.Derive(h, z, sharedInfo, kekLen)
	if err != nil {
		return nil, fmt.Errorf("cms: key derivation: %w", err)
	}
	return kek, nil
}

// receivedSharedInfo encodes the ECC-CMS-SharedInfo of a received
// KeyAgreeRecipientInfo. keyInfo is the key-wrap AlgorithmIdentifier exactly
// as the message carries it (RFC 5753 §7.2: "the object identifier of the
// key-encryption algorithm ... and associated parameters"): NSS sends NULL
// parameters with the AES wraps and hashes them, and Triple-DES wrap has
// NULL parameters by definition. x963kdf.SharedInfo encodes only absent
// parameters, which is what this package sends.
func receivedSharedInfo(keyInfo, ukm []byte, keyLenBits int) ([]byte, error) {
	var supp [4]byte
	binary.BigEndian.PutUint32(supp[:], uint32(keyLenBits))
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(keyInfo)
		if ukm != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ukm)
			})
		}
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(supp[:])
		})
	})
	return b.Bytes()
}

// unwrapKARI recovers the content-encryption key of keyLen bytes with one
// ECDH operation of the recipient's key.
func unwrapKARI(e *recipientEntry, ka KeyAgreer, cert *x509.Certificate, keyLen int) ([]byte, error) {
	p := e.kari
	certPub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: key agreement needs an EC certificate, have %T", ErrNoRecipient, cert.PublicKey)
	}
	curve, curveOID, ok := ecdhCurve(certPub.Curve)
	if !ok {
		return nil, unsupported("EC key on curve %s", certPub.Curve.Params().Name)
	}
	if p.originatorCurve != nil && !p.originatorCurve.Equal(curveOID) {
		return nil, malformed("KeyAgreeRecipientInfo", "originator key on curve %v, recipient key on %v", p.originatorCurve, curveOID)
	}
	eph, err := curve.NewPublicKey(p.originatorPoint)
	if err != nil {
		return nil, malformed("KeyAgreeRecipientInfo", "originator key is not a point on %s", certPub.Curve.Params().Name)
	}
	z, err := ka.ECDH(eph)
	if err != nil {
		return nil, fmt.Errorf("cms: ECDH private key operation: %w", err)
	}
	defer clear(z)
	si, err := receivedSharedInfo(p.wrapAlg, p.ukm, p.kekLen*8)
	if err != nil {
		return nil, fmt.Errorf("cms: ECC-CMS-SharedInfo: %w", err)
	}
	kek, err := deriveWithSharedInfo(p.scheme.hash, z, si, p.kekLen)
	if err != nil {
		return nil, err
	}
	defer clear(kek)
	var cek []byte
	if p.wrapOID.Equal(oidEnvDES3Wrap) {
		cek, err = unwrapDES3(kek, e.encryptedKey)
	} else {
		cek, err = keywrap.Unwrap(kek, e.encryptedKey)
	}
	if err != nil {
		if errors.Is(err, keywrap.ErrIntegrity) || errors.Is(err, errDES3WrapIntegrity) {
			return nil, fmt.Errorf("%w: key unwrap integrity check failed (wrong key or altered message)", ErrDecryption)
		}
		return nil, malformed("KeyAgreeRecipientInfo", "encrypted key: %v", err)
	}
	if len(cek) != keyLen {
		clear(cek)
		return nil, fmt.Errorf("%w: content key has the wrong length", ErrDecryption)
	}
	return cek, nil
}
