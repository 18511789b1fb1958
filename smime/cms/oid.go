package cms

import (
	"crypto"
	"encoding/asn1"
)

// Object identifiers for content types, digests, signatures and the signed
// attributes this package reads and writes. The EnvelopedData half keeps its
// key-transport, key-agreement and cipher identifiers in oid_enveloped.go.
var (
	// Content types (RFC 5652 section 4 ff., RFC 5083).
	oidData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidEnvelopedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidAuthEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}

	// Digest algorithms (RFC 3370, RFC 5754).
	oidMD5    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	// RSA (RFC 8017, RFC 4055).
	oidRSAEncryption           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidMD5WithRSAEncryption    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	oidSHA1WithRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	oidMGF1                    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidRSASSAPSS               = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidSHA256WithRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidSHA224WithRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 14}

	// ECDSA (RFC 5480, RFC 5753, RFC 5758).
	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidECDSAWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	oidECDSAWithSHA224 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 1}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}

	// Signed attributes (RFC 5652 section 11).
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}

	// S/MIME attributes (RFC 8551 sections 2.5.2 and 2.5.3).
	oidSMIMECapabilities       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	oidEncryptionKeyPreference = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 11}

	// Time-stamping (RFC 3161, RFC 2634, RFC 5035).
	oidTSTInfo              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidTimeStampToken       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 14}
	oidSigningCertificate   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidSigningCertificateV2 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidExtKeyUsage          = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// hashOIDs maps the digest algorithms this package recognises to their
// identifiers.
var hashOIDs = []struct {
	hash crypto.Hash
	oid  asn1.ObjectIdentifier
}{
	{crypto.MD5, oidMD5},
	{crypto.SHA1, oidSHA1},
	{crypto.SHA224, oidSHA224},
	{crypto.SHA256, oidSHA256},
	{crypto.SHA384, oidSHA384},
	{crypto.SHA512, oidSHA512},
}

// hashOID returns the digest algorithm identifier of h, or nil when h is
// not one this package recognises.
func hashOID(h crypto.Hash) asn1.ObjectIdentifier {
	for _, e := range hashOIDs {
		if e.hash == h {
			return e.oid
		}
	}
	return nil
}

// hashFromOID returns the hash a digest algorithm identifier names, or 0
// when it is not recognised.
func hashFromOID(oid asn1.ObjectIdentifier) crypto.Hash {
	for _, e := range hashOIDs {
		if e.oid.Equal(oid) {
			return e.hash
		}
	}
	return 0
}

// hashName names a hash for messages: "SHA-256", "MD5".
func hashName(h crypto.Hash) string {
	switch h {
	case crypto.MD5:
		return "MD5"
	case crypto.SHA1:
		return "SHA-1"
	case crypto.SHA224:
		return "SHA-224"
	case crypto.SHA256:
		return "SHA-256"
	case crypto.SHA384:
		return "SHA-384"
	case crypto.SHA512:
		return "SHA-512"
	case 0:
		return "no hash"
	}
	return h.String()
}

// contentTypeName names a content type for messages.
func contentTypeName(oid asn1.ObjectIdentifier) string {
	switch {
	case oid.Equal(oidData):
		return "data"
	case oid.Equal(oidSignedData):
		return "signedData"
	case oid.Equal(oidEnvelopedData):
		return "envelopedData"
	case oid.Equal(oidAuthEnvelopedData):
		return "authEnvelopedData"
	case oid.Equal(oidTSTInfo):
		return "TSTInfo"
	}
	return oid.String()
}
