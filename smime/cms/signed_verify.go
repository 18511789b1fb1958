package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// marshalIssuerAndSerial encodes IssuerAndSerialNumber for cert.
func marshalIssuerAndSerial(cert *x509.Certificate) ([]byte, error) {
	if cert.SerialNumber == nil || len(cert.RawIssuer) == 0 {
		return nil, errors.New("cms: certificate lacks issuer or serial number")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(cert.RawIssuer)
		b.AddASN1BigInt(cert.SerialNumber)
	})
	return b.Bytes()
}

// parseIssuerAndSerial splits a DER IssuerAndSerialNumber into the issuer
// Name's encoding and the serial number. The serial is read as a two's
// complement number even when not minimally encoded, as some CAs issue.
func parseIssuerAndSerial(der []byte) (issuer []byte, serial *big.Int, err error) {
	s := cryptobyte.String(der)
	var seq, name, num cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
		!seq.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
		!seq.ReadASN1(&num, cbasn1.INTEGER) || !seq.Empty() || len(num) == 0 {
		return nil, nil, malformed("IssuerAndSerialNumber", "not a SEQUENCE { Name, INTEGER }")
	}
	serial = new(big.Int).SetBytes(num)
	if num[0]&0x80 != 0 {
		serial.Sub(serial, new(big.Int).Lsh(big.NewInt(1), uint(8*len(num))))
	}
	return []byte(name), serial, nil
}

// matchIssuerAndSerial reports whether the IssuerAndSerialNumber names cert.
func matchIssuerAndSerial(der []byte, cert *x509.Certificate) bool {
	issuer, serial, err := parseIssuerAndSerial(der)
	if err != nil || cert.SerialNumber == nil {
		return false
	}
	return bytes.Equal(issuer, cert.RawIssuer) && serial.Cmp(cert.SerialNumber) == 0
}

// matchSubjectKeyID reports whether ski identifies cert: its
// subjectKeyIdentifier extension, or, for a certificate without one, the
// SHA-1 of its public key bits (RFC 5280 section 4.2.1.2, method 1), which
// some senders compute.
func matchSubjectKeyID(ski []byte, cert *x509.Certificate) bool {
	if len(ski) == 0 {
		return false
	}
	if len(cert.SubjectKeyId) > 0 {
		return bytes.Equal(ski, cert.SubjectKeyId)
	}
	s := cryptobyte.String(cert.RawSubjectPublicKeyInfo)
	var spki cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.SkipASN1(cbasn1.SEQUENCE) || !spki.ReadASN1BitString(&bits) {
		return false
	}
	sum := sha1.Sum(bits.Bytes)
	return bytes.Equal(ski, sum[:])
}

// FindCertificate returns the certificate among certs that the signer
// identifies, by issuer and serial number (the issuer compared as encoded)
// or by subject key identifier, or nil.
func (si *SignerInfo) FindCertificate(certs []*x509.Certificate) *x509.Certificate {
	for _, c := range certs {
		if c == nil {
			continue
		}
		if si.IssuerAndSerial != nil {
			if matchIssuerAndSerial(si.IssuerAndSerial, c) {
				return c
			}
		} else if matchSubjectKeyID(si.SubjectKeyID, c) {
			return c
		}
	}
	return nil
}

// Verify checks the signer's signature with cert's public key.
//
// contentType is the SignedData's eContentType and digests the content's
// digests (from SignedDataReader.Finish or a Digester). Verify checks, in
// order: that a digest for si.Hash is at hand (ErrUnsupported otherwise);
// that the contentType signed attribute is present and equals contentType
// (ErrMalformed); that the messageDigest signed attribute equals
// digests[si.Hash] (ErrDigestMismatch); and that the signature over the
// signed attributes, or over the content digest when there are none
// (allowed for id-data only), verifies (ErrSignature).
//
// RSA PKCS #1 v1.5 (signatureAlgorithm rsaEncryption or
// shaNNNWithRSAEncryption), RSASSA-PSS with its parameters honoured, and
// ECDSA (ecdsa-with-SHAnnn, or id-ecPublicKey as some senders write) are
// verified; a signature algorithm whose hash differs from the digest
// algorithm is ErrUnsupported. MD5 and SHA-1 are verified too, so that a
// caller can tell "weak" from "bad": Weakness says whether a signature
// that verifies may be called good.
func (si *SignerInfo) Verify(cert *x509.Certificate, contentType asn1.ObjectIdentifier, digests map[crypto.Hash][]byte) error {
	if cert == nil {
		return errors.New("cms: Verify needs the signer's certificate")
	}
	if si.digestErr != nil {
		return si.digestErr
	}
	if si.Hash == 0 {
		return unsupported("digest algorithm %v", si.DigestOID)
	}
	if si.sigErr != nil {
		return si.sigErr
	}
	if si.sigHash != 0 && si.sigHash != si.Hash {
		return unsupported("signature algorithm with %s over a %s digest", hashName(si.sigHash), hashName(si.Hash))
	}
	saltLength := 0
	if si.sigKind == sigPSS {
		if si.pss.mgfHash != si.pss.hash {
			return unsupported("RSASSA-PSS with %s and MGF1 with %s", hashName(si.pss.hash), hashName(si.pss.mgfHash))
		}
		saltLength = si.pss.saltLength
	}
	digest, ok := digests[si.Hash]
	if !ok {
		return unsupported("no %s digest of the content is available (the digest algorithm is not announced in the message)", hashName(si.Hash))
	}
	hashed := digest
	if si.RawSignedAttrs == nil && !contentType.Equal(oidData) {
		// RFC 5652 section 5.3: other content types need the
		// contentType attribute, hence signed attributes.
		return malformed("SignerInfo", "no signed attributes over content of type %s", contentTypeName(contentType))
	}
	if si.RawSignedAttrs != nil {
		if si.contentType == nil {
			return malformed("SignerInfo signedAttrs", "contentType attribute missing")
		}
		if !si.contentType.Equal(contentType) {
			return malformed("SignerInfo signedAttrs", "contentType attribute %s differs from the content's type %s",
				contentTypeName(si.contentType), contentTypeName(contentType))
		}
		if si.MessageDigest == nil {
			return malformed("SignerInfo signedAttrs", "messageDigest attribute missing")
		}
		if !bytes.Equal(si.MessageDigest, digest) {
			return fmt.Errorf("%w: %s digest of the content differs from the signed messageDigest", ErrDigestMismatch, hashName(si.Hash))
		}
		h := si.Hash.New()
		h.Write([]byte{0x31})
		h.Write(si.RawSignedAttrs[1:])
		hashed = h.Sum(nil)
	}
	return verifyRaw(cert.PublicKey, si.sigKind, si.Hash, saltLength, hashed, si.Signature)
}

// verifyRaw checks sig over an already hashed value.
func verifyRaw(pub crypto.PublicKey, kind sigKind, h crypto.Hash, saltLength int, hashed, sig []byte) error {
	switch kind {
	case sigPKCS1v15, sigPSS:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: RSA signature but the certificate holds a %s key", ErrSignature, keyTypeName(pub))
		}
		var err error
		if kind == sigPSS {
			err = rsa.VerifyPSS(k, h, hashed, sig, &rsa.PSSOptions{SaltLength: saltLength, Hash: h})
		} else {
			err = rsa.VerifyPKCS1v15(k, h, hashed, sig)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrSignature, err)
		}
		return nil
	case sigECDSA:
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: ECDSA signature but the certificate holds a %s key", ErrSignature, keyTypeName(pub))
		}
		if !ecdsa.VerifyASN1(k, hashed, sig) {
			return fmt.Errorf("%w: ECDSA verification failed", ErrSignature)
		}
		return nil
	}
	return unsupported("signature algorithm")
}

func keyTypeName(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "EC"
	}
	return fmt.Sprintf("%T", pub)
}

// Weakness returns "" or why a signature by this signer with cert must
// never be called good even though it verifies: "MD5 digest", "SHA-1
// digest", "RSA key of 1024 bits (minimum 2048)", "EC key on an
// unsupported curve". cert may be nil to check the digest alone.
func (si *SignerInfo) Weakness(cert *x509.Certificate) string {
	switch {
	case si.Hash == crypto.MD5 || si.sigHash == crypto.MD5:
		return "MD5 digest"
	case si.Hash == crypto.SHA1 || si.sigHash == crypto.SHA1:
		return "SHA-1 digest"
	}
	if si.pss != nil && (si.pss.mgfHash == crypto.SHA1 || si.pss.mgfHash == crypto.MD5) {
		return "SHA-1 digest"
	}
	if cert == nil {
		return ""
	}
	switch k := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 {
			return fmt.Sprintf("RSA key of %d bits (minimum 2048)", bits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return "EC key on an unsupported curve"
		}
	}
	return ""
}
