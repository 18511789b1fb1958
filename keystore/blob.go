package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/scrypt"
)

// The encrypted key blob, version 1. Every private key this package keeps is
// stored only in this form, whatever the backend:
//
//	offset size  field
//	0      6     magic "SMDKEY"
//	6      1     format version (1)
//	7      1     KDF: 1 = scrypt (RFC 7914)
//	8      1     scrypt log2(N)   (15 when written by this version)
//	9      1     scrypt r         (8)
//	10     1     scrypt p         (1)
//	11     1     AEAD: 1 = AES-256-GCM
//	12     16    scrypt salt (random)
//	28     12    GCM nonce (random)
//	40     ...   ciphertext of the PKCS #8 DER private key, then the 16-byte tag
//
// The GCM additional data binds the blob to its identity: the 40 header bytes
// (so no parameter can be altered), the label "smimed key v1", then the
// identity ID and the certificate's SHA-256 fingerprint, each preceded by its
// length as a 16-bit big-endian integer. A blob copied onto another identity,
// or an identity whose certificate was swapped, fails to open exactly like a
// wrong passphrase does.
const (
	blobMagic      = "SMDKEY"
	blobVersion    = 1
	blobKDFScrypt  = 1
	blobAEADAESGCM = 1
	blobSaltLen    = 16
	blobNonceLen   = 12
	blobHeaderLen  = 12 + blobSaltLen + blobNonceLen
	blobTagLen     = 16
	blobAADLabel   = "smimed key v1"
	aesKeyLen      = 32
)

// kdfParams are scrypt's cost parameters.
type kdfParams struct {
	logN, r, p uint8
}

// defaultKDF is what new blobs use: N=2^15, r=8, p=1 (32 MiB, some tens of
// milliseconds per derivation on a desktop).
func defaultKDF() kdfParams { return kdfParams{logN: 15, r: 8, p: 1} }

// check bounds the parameters a blob may ask for, so that a damaged or
// hostile blob cannot make the daemon allocate gigabytes.
func (k kdfParams) check() error {
	if k.logN < 10 || k.logN > 20 || k.r < 1 || k.r > 32 || k.p < 1 || k.p > 16 {
		return fmt.Errorf("%w: scrypt parameters logN=%d r=%d p=%d out of range", errBlobFormat, k.logN, k.r, k.p)
	}
	// scrypt needs 128*r*N bytes; keep it at or below 256 MiB.
	if uint64(128)*uint64(k.r)<<k.logN > 256<<20 {
		return fmt.Errorf("%w: scrypt parameters need too much memory", errBlobFormat)
	}
	return nil
}

// blobAAD builds the GCM additional data for a blob with this header.
func blobAAD(header []byte, id string, fingerprint []byte) []byte {
	aad := make([]byte, 0, len(header)+len(blobAADLabel)+4+len(id)+len(fingerprint))
	aad = append(aad, header...)
	aad = append(aad, blobAADLabel...)
	aad = binary.BigEndian.AppendUint16(aad, uint16(len(id)))
	aad = append(aad, id...)
	aad = binary.BigEndian.AppendUint16(aad, uint16(len(fingerprint)))
	aad = append(aad, fingerprint...)
	return aad
}

// deriveAEAD runs scrypt over the passphrase and returns AES-256-GCM keyed
// with the result. The derived key bytes are zeroed before returning; the
// expanded AES key schedule inside the cipher cannot be (see README).
func deriveAEAD(passphrase, salt []byte, k kdfParams) (cipher.AEAD, error) {
	key, err := scrypt.Key(passphrase, salt, 1<<k.logN, int(k.r), int(k.p), aesKeyLen)
	if err != nil {
		return nil, fmt.Errorf("keystore: scrypt: %w", err)
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keystore: aes: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealKey encrypts a PKCS #8 DER private key under passphrase for the
// identity id whose certificate has the given SHA-256 fingerprint. It does
// not modify or keep pkcs8 or passphrase.
func sealKey(pkcs8, passphrase []byte, id string, fingerprint []byte, k kdfParams) ([]byte, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	header := make([]byte, blobHeaderLen, blobHeaderLen+len(pkcs8)+blobTagLen)
	copy(header, blobMagic)
	header[6] = blobVersion
	header[7] = blobKDFScrypt
	header[8], header[9], header[10] = k.logN, k.r, k.p
	header[11] = blobAEADAESGCM
	if _, err := rand.Read(header[12 : 12+blobSaltLen+blobNonceLen]); err != nil {
		return nil, fmt.Errorf("keystore: random: %w", err)
	}
	salt := header[12 : 12+blobSaltLen]
	nonce := header[12+blobSaltLen : blobHeaderLen]
	aead, err := deriveAEAD(passphrase, salt, k)
	if err != nil {
		return nil, err
	}
	return aead.Seal(header, nonce, pkcs8, blobAAD(header, id, fingerprint)), nil
}

// openKey decrypts a blob made by sealKey and returns the PKCS #8 DER, which
// the caller must clear. A wrong passphrase, a blob of another identity and
// any change to the blob give ErrWrongPassphrase (GCM cannot tell them
// apart); bytes that are not a blob of a known version give an error
// wrapping errBlobFormat.
func openKey(blob, passphrase []byte, id string, fingerprint []byte) ([]byte, error) {
	if len(blob) < blobHeaderLen+blobTagLen || string(blob[:6]) != blobMagic {
		return nil, errBlobFormat
	}
	header := blob[:blobHeaderLen]
	if header[6] != blobVersion {
		return nil, fmt.Errorf("%w: version %d", errBlobFormat, header[6])
	}
	if header[7] != blobKDFScrypt {
		return nil, fmt.Errorf("%w: KDF %d", errBlobFormat, header[7])
	}
	if header[11] != blobAEADAESGCM {
		return nil, fmt.Errorf("%w: cipher %d", errBlobFormat, header[11])
	}
	k := kdfParams{logN: header[8], r: header[9], p: header[10]}
	if err := k.check(); err != nil {
		return nil, err
	}
	aead, err := deriveAEAD(passphrase, header[12:12+blobSaltLen], k)
	if err != nil {
		return nil, err
	}
	nonce := header[12+blobSaltLen:]
	der, err := aead.Open(nil, nonce, blob[blobHeaderLen:], blobAAD(header, id, fingerprint))
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return der, nil
}
