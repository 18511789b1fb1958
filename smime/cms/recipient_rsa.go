package cms

import (
	"crypto"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ktriOptions are the key-transport settings of one RSA recipient.
type ktriOptions struct {
	oaep    bool
	hash    crypto.Hash
	mgfHash crypto.Hash
	label   []byte
	ski     bool
}

// buildKTRI encrypts cek to an RSA recipient and returns the DER of the
// KeyTransRecipientInfo and its version (0 for issuerAndSerialNumber, 2 for
// subjectKeyIdentifier, RFC 5652 §6.2.1).
func buildKTRI(rnd io.Reader, r Recipient, pub *rsa.PublicKey, cek []byte, o ktriOptions) ([]byte, int, error) {
	var ek []byte
	var err error
	if o.oaep {
		ek, err = rsa.EncryptOAEPWithOptions(rnd, pub, cek, &rsa.OAEPOptions{Hash: o.hash, MGFHash: o.mgfHash, Label: o.label})
	} else {
		// PKCS#1 v1.5 key transport is what Thunderbird's NSS, Outlook and
		// gpgsm read; it is chosen only for recipients that have not
		// advertised OAEP (see smime/README.md, "Algorithm choice").
		//lint:ignore SA1019 interop requires RSA PKCS#1 v1.5 key transport
		ek, err = rsa.EncryptPKCS1v15(rnd, pub, cek)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cms: encrypting the content key for %s: %w", r.Certificate.Subject, err)
	}
	version := 0
	if o.ski {
		version = 2
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(int64(version))
		appendRID(b, r.Certificate, o.ski, false)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if !o.oaep {
				b.AddASN1ObjectIdentifier(oidRSAEncryption)
				b.AddASN1NULL()
				return
			}
			b.AddASN1ObjectIdentifier(oidEnvRSAESOAEP)
			appendOAEPParams(b, o)
		})
		b.AddASN1OctetString(ek)
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, 0, fmt.Errorf("cms: encoding KeyTransRecipientInfo: %w", err)
	}
	return der, version, nil
}

// appendOAEPParams adds RSAES-OAEP-params in DER: fields equal to their
// DEFAULT (SHA-1, MGF1 with SHA-1, empty label) are omitted.
func appendOAEPParams(b *cryptobyte.Builder, o ktriOptions) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if o.hash != crypto.SHA1 {
			oid, _ := envHashOID(o.hash)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				appendHashAlgorithm(b, oid)
			})
		}
		if o.mgfHash != crypto.SHA1 {
			oid, _ := envHashOID(o.mgfHash)
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidMGF1)
					appendHashAlgorithm(b, oid)
				})
			})
		}
		if len(o.label) > 0 {
			b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidEnvPSpecified)
					b.AddASN1OctetString(o.label)
				})
			})
		}
	})
}

// unwrapKTRI recovers the content-encryption key of keyLen bytes with one
// call to the recipient's Decrypter.
//
// For PKCS #1 v1.5 a failed decryption, or a key of the wrong length, does
// not return an error: a random key takes its place, so that the failure
// shows only later, as the same ErrDecryption a bad padding or tag gives
// (RFC 3218 §2.3, the countermeasure to Bleichenbacher's attack). A
// Decrypter must therefore report bad padding with an error wrapping
// rsa.ErrDecryption, as crypto/rsa does; any other error is taken as a
// failure of the key itself (a PIN prompt cancelled, a token removed) and is
// returned as is.
func unwrapKTRI(e *recipientEntry, dec crypto.Decrypter, keyLen int, rnd io.Reader) ([]byte, error) {
	alg := e.ktri
	if !alg.oaep {
		fallback := make([]byte, keyLen)
		if _, err := io.ReadFull(rnd, fallback); err != nil {
			return nil, fmt.Errorf("cms: reading random bytes: %w", err)
		}
		key, err := dec.Decrypt(rnd, e.encryptedKey, nil)
		if err != nil && !errors.Is(err, rsa.ErrDecryption) {
			return nil, fmt.Errorf("cms: RSA private key operation: %w", err)
		}
		good := 0
		if err == nil {
			good = subtle.ConstantTimeEq(int32(len(key)), int32(keyLen))
		}
		if good == 1 {
			subtle.ConstantTimeCopy(good, fallback, key)
		}
		clear(key)
		return fallback, nil
	}
	opts := &rsa.OAEPOptions{Hash: alg.hash, MGFHash: alg.mgfHash, Label: alg.label}
	key, err := dec.Decrypt(rnd, e.encryptedKey, opts)
	if err != nil {
		if errors.Is(err, rsa.ErrDecryption) {
			return nil, fmt.Errorf("%w: RSA-OAEP key transport", ErrDecryption)
		}
		return nil, fmt.Errorf("cms: RSA private key operation: %w", err)
	}
	if len(key) != keyLen {
		clear(key)
		return nil, fmt.Errorf("%w: content key has the wrong length", ErrDecryption)
	}
	return key, nil
}
