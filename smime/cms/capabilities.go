package cms

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Capability is one SMIMECapability (RFC 8551 section 2.5.2): an algorithm
// the sender can use, with the parameters that qualify it.
type Capability struct {
	Algorithm asn1.ObjectIdentifier
	// Parameters is one DER element, or nil when absent.
	Parameters []byte
}

// Algorithm identifiers used only to announce capabilities. The
// EnvelopedData half defines the same algorithms for its own use in
// oid_enveloped.go; these carry a distinct prefix so the two never clash.
var (
	capOIDAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	capOIDAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	capOIDAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	capOIDAES128GCM  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	capOIDAES256GCM  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	capOIDAES256Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}
	capOIDRSAESOAEP  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	// dhSinglePass-stdDH-sha*kdf-scheme (RFC 5753 section 7.1.4).
	capOIDStdDHSHA256KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}
	capOIDStdDHSHA384KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}
	capOIDStdDHSHA512KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}
)

// Limit on the number of capabilities read from a message.
const maxCapabilities = 128

// DefaultCapabilities lists what smimed can decrypt, best first, for the
// SMIMECapabilities attribute of the messages it signs:
//
//   - content encryption: AES-256-GCM, AES-128-GCM (RFC 5084), then
//     AES-256/192/128-CBC (RFC 3565), all with absent parameters;
//   - key transport: RSAES-OAEP with SHA-256 and MGF1-SHA-256 (parameters
//     as RFC 4055 section 4.1 writes them), then rsaEncryption (NULL
//     parameters, as for the AlgorithmIdentifier);
//   - key agreement: dhSinglePass-stdDH with the SHA-256, SHA-384 and
//     SHA-512 KDFs, each with the key wrap algorithm id-aes256-wrap as its
//     parameter (RFC 5753 section 7.2).
func DefaultCapabilities() []Capability {
	null := []byte{0x05, 0x00}
	wrap := mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(capOIDAES256Wrap)
		})
	})
	return []Capability{
		{Algorithm: capOIDAES256GCM},
		{Algorithm: capOIDAES128GCM},
		{Algorithm: capOIDAES256CBC},
		{Algorithm: capOIDAES192CBC},
		{Algorithm: capOIDAES128CBC},
		{Algorithm: capOIDRSAESOAEP, Parameters: oaepSHA256Params()},
		{Algorithm: oidRSAEncryption, Parameters: null},
		{Algorithm: capOIDStdDHSHA256KDF, Parameters: wrap},
		{Algorithm: capOIDStdDHSHA384KDF, Parameters: wrap},
		{Algorithm: capOIDStdDHSHA512KDF, Parameters: wrap},
	}
}

// oaepSHA256Params is RSAES-OAEP-params { hashFunc sha256Identifier,
// maskGenFunc mgf1SHA256Identifier } with pSourceFunc left at its default
// (RFC 4055 section 4.1, where the hash identifiers carry NULL).
func oaepSHA256Params() []byte {
	return mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				addAlgorithmNULL(b, oidSHA256)
			})
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidMGF1)
					addAlgorithmNULL(b, oidSHA256)
				})
			})
		})
	})
}

// addAlgorithmNULL adds AlgorithmIdentifier { oid, NULL }.
func addAlgorithmNULL(b *cryptobyte.Builder, oid asn1.ObjectIdentifier) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1NULL()
	})
}

// mustDER runs a builder over constant input that cannot fail.
func mustDER(f func(b *cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	f(&b)
	return b.BytesOrPanic()
}

// CapabilitiesAttribute encodes caps, in the order given (most preferred
// first), as an SMIMECapabilities signed attribute.
func CapabilitiesAttribute(caps []Capability) (Attribute, error) {
	if len(caps) == 0 {
		return Attribute{}, fmt.Errorf("cms: no capabilities to announce")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, c := range caps {
			if c.Parameters != nil && !isOneDERElement(c.Parameters) {
				b.SetError(fmt.Errorf("cms: capability %v: parameters are not one DER element", c.Algorithm))
				return
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(c.Algorithm)
				if c.Parameters != nil {
					b.AddBytes(c.Parameters)
				}
			})
		}
	})
	v, err := b.Bytes()
	if err != nil {
		return Attribute{}, err
	}
	return Attribute{Type: oidSMIMECapabilities, Values: [][]byte{v}}, nil
}

// parseCapabilities decodes an SMIMECapabilities value.
func parseCapabilities(v []byte) ([]Capability, error) {
	s := cryptobyte.String(v)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("SMIMECapabilities", "not a SEQUENCE")
	}
	caps := []Capability{}
	for !seq.Empty() {
		if len(caps) == maxCapabilities {
			return nil, malformed("SMIMECapabilities", "more than %d capabilities", maxCapabilities)
		}
		var c cryptobyte.String
		var cap Capability
		if !seq.ReadASN1(&c, cbasn1.SEQUENCE) || !c.ReadASN1ObjectIdentifier(&cap.Algorithm) {
			return nil, malformed("SMIMECapabilities", "capability %d is not a SEQUENCE { OID, ... }", len(caps))
		}
		if !c.Empty() {
			var p cryptobyte.String
			var tag cbasn1.Tag
			if !c.ReadAnyASN1Element(&p, &tag) || !c.Empty() {
				return nil, malformed("SMIMECapabilities", "capability %v: bad parameters", cap.Algorithm)
			}
			cap.Parameters = []byte(p)
		}
		caps = append(caps, cap)
	}
	return caps, nil
}

// KeyPreference is a decoded SMIMEEncryptionKeyPreference attribute
// (RFC 8551 section 2.5.3): which certificate the sender wants messages to
// it encrypted to. Exactly one field is set.
type KeyPreference struct {
	// IssuerAndSerial is the DER IssuerAndSerialNumber (as a SEQUENCE) of
	// the preferred certificate.
	IssuerAndSerial []byte
	// SubjectKeyID is the preferred certificate's subject key identifier
	// (from the receipentKeyId or subjectAltKeyIdentifier choices).
	SubjectKeyID []byte
}

// Matches reports whether cert is the certificate the preference names.
func (k *KeyPreference) Matches(cert *x509.Certificate) bool {
	if k == nil || cert == nil {
		return false
	}
	if k.IssuerAndSerial != nil {
		return matchIssuerAndSerial(k.IssuerAndSerial, cert)
	}
	if k.SubjectKeyID != nil {
		return matchSubjectKeyID(k.SubjectKeyID, cert)
	}
	return false
}

// EncryptionKeyPreferenceAttribute makes an SMIMEEncryptionKeyPreference
// attribute naming cert by the issuerAndSerialNumber choice ([0]).
func EncryptionKeyPreferenceAttribute(cert *x509.Certificate) (Attribute, error) {
	if cert == nil {
		return Attribute{}, fmt.Errorf("cms: no certificate for the encryption key preference")
	}
	ias, err := marshalIssuerAndSerial(cert)
	if err != nil {
		return Attribute{}, err
	}
	// [0] IMPLICIT IssuerAndSerialNumber: same contents, constructed [0].
	v := append([]byte{0xa0}, ias[1:]...)
	return Attribute{Type: oidEncryptionKeyPreference, Values: [][]byte{v}}, nil
}

// parseKeyPreference decodes an SMIMEEncryptionKeyPreference value:
//
//	SMIMEEncryptionKeyPreference ::= CHOICE {
//	   issuerAndSerialNumber   [0] IssuerAndSerialNumber,
//	   receipentKeyId          [1] RecipientKeyIdentifier,
//	   subjectAltKeyIdentifier [2] SubjectKeyIdentifier }
//
// with implicit tags (the S/MIME modules use IMPLICIT TAGS).
func parseKeyPreference(v []byte) (*KeyPreference, error) {
	s := cryptobyte.String(v)
	var inner cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1(&inner, &tag) || !s.Empty() {
		return nil, malformed("SMIMEEncryptionKeyPreference", "undecodable")
	}
	switch tag {
	case cbasn1.Tag(0).Constructed().ContextSpecific():
		ias := mustDER(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(inner) })
		})
		if _, _, err := parseIssuerAndSerial(ias); err != nil {
			return nil, err
		}
		return &KeyPreference{IssuerAndSerial: ias}, nil
	case cbasn1.Tag(1).Constructed().ContextSpecific():
		// RecipientKeyIdentifier ::= SEQUENCE { subjectKeyIdentifier,
		// date GeneralizedTime OPTIONAL, other OPTIONAL }
		var ski []byte
		if !inner.ReadASN1Bytes(&ski, cbasn1.OCTET_STRING) {
			return nil, malformed("SMIMEEncryptionKeyPreference", "bad RecipientKeyIdentifier")
		}
		return &KeyPreference{SubjectKeyID: ski}, nil
	case cbasn1.Tag(2).ContextSpecific():
		return &KeyPreference{SubjectKeyID: bytes.Clone([]byte(inner))}, nil
	}
	return nil, malformed("SMIMEEncryptionKeyPreference", "unknown choice tag %#x", uint8(tag))
}
