package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// RSAPadding says how a content key reaches an RSA recipient (key transport,
// RFC 5652 §6.2.1).
type RSAPadding int

const (
	// PKCS1v15 is rsaEncryption (RFC 3370 §4.2.1), the padding every S/MIME
	// client reads.
	PKCS1v15 RSAPadding = iota
	// OAEP is RSAES-OAEP (RFC 3560, RFC 8017 §7.1).
	OAEP
)

// Recipient is one recipient of an encrypted message. An RSA certificate gets
// a KeyTransRecipientInfo; an EC certificate (P-256, P-384, P-521) gets a
// KeyAgreeRecipientInfo with a fresh ephemeral key (RFC 5753
// ephemeral-static ECDH).
type Recipient struct {
	// Certificate is the recipient's certificate. Its key must be RSA or EC.
	Certificate *x509.Certificate
	// Padding selects PKCS #1 v1.5 or OAEP; RSA only.
	Padding RSAPadding
	// OAEPHash is the OAEP hash (SHA-1, SHA-224, SHA-256, SHA-384 or
	// SHA-512); SHA-256 when zero. MGF1 uses the same hash. The label is
	// OAEPLabel (empty when nil).
	OAEPHash  crypto.Hash
	OAEPLabel []byte
	// KDFHash is the X9.63 KDF hash for EC recipients; SHA-256 when zero
	// (dhSinglePass-stdDH-sha256kdf-scheme). The key-wrap algorithm follows
	// the content-encryption key: id-aes128-wrap for 128-bit keys,
	// id-aes192-wrap for 192-bit and id-aes256-wrap for 256-bit keys.
	KDFHash crypto.Hash
	// SubjectKeyID identifies the recipient by the certificate's
	// subjectKeyIdentifier instead of its issuer and serial number. The
	// certificate must carry the extension.
	SubjectKeyID bool
}

// KeyAgreer is a private key that can do ECDH: an EC key on a smart card, or
// an *ecdh.PrivateKey. Public may return an *ecdh.PublicKey or an
// *ecdsa.PublicKey. ECDH returns the shared secret (the x-coordinate of the
// shared point, as crypto/ecdh does).
type KeyAgreer interface {
	Public() crypto.PublicKey
	ECDH(remote *ecdh.PublicKey) ([]byte, error)
}

// RecipientInfo describes one recipient as found in a message. A
// KeyAgreeRecipientInfo that names several recipients appears once for each.
type RecipientInfo struct {
	// Kind is the RecipientInfo choice: "ktri", "kari", "kekri", "pwri" or
	// "ori".
	Kind string
	// IssuerAndSerial is the DER of the recipient's IssuerAndSerialNumber,
	// nil when the recipient is named by subject key identifier.
	IssuerAndSerial []byte
	// SubjectKeyID is the recipient's subject key identifier, nil when the
	// recipient is named by issuer and serial number.
	SubjectKeyID []byte
	// KeyAlgorithm names the key-management algorithm: "rsa-pkcs1v15",
	// "rsa-oaep", "ecdh-sha256kdf-aes256wrap",
	// "ecdh-cofactor-sha1kdf-aes128wrap", ...; the dotted OID when it is not
	// one this package implements.
	KeyAlgorithm string
}

// Matches reports whether the RecipientInfo names cert: by issuer and serial
// number, or by subject key identifier.
func (ri RecipientInfo) Matches(cert *x509.Certificate) bool {
	if cert == nil {
		return false
	}
	if ri.IssuerAndSerial != nil {
		return issuerSerialMatches(ri.IssuerAndSerial, cert)
	}
	if ri.SubjectKeyID != nil {
		return len(cert.SubjectKeyId) > 0 && bytes.Equal(ri.SubjectKeyID, cert.SubjectKeyId)
	}
	return false
}

// issuerSerialMatches compares an IssuerAndSerialNumber with a certificate:
// the issuer name byte for byte (as OpenSSL and NSS do for names copied from
// the certificate) and the serial number as an integer.
func issuerSerialMatches(der []byte, cert *x509.Certificate) bool {
	s := cryptobyte.String(der)
	var body, name, serial cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !s.Empty() ||
		!body.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
		!body.ReadASN1(&serial, cbasn1.INTEGER) || !body.Empty() || len(serial) == 0 {
		return false
	}
	if !bytes.Equal(name, cert.RawIssuer) || cert.SerialNumber == nil {
		return false
	}
	return twosComplement(serial).Cmp(cert.SerialNumber) == 0
}

// twosComplement reads a big-endian two's complement integer, tolerating
// non-minimal encodings.
func twosComplement(b []byte) *big.Int {
	n := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return n
}

// recipientEntry is one parsed recipient with what Decrypt needs.
type recipientEntry struct {
	info RecipientInfo
	// unusable says why the entry cannot be decrypted (an unsupported
	// algorithm or form); it is reported only when the entry is the one
	// addressed to the caller.
	unusable error

	// Key transport.
	ktri         *ktriAlgorithm
	encryptedKey []byte

	// Key agreement.
	kari *kariParams
}

// ktriAlgorithm is a parsed key-transport algorithm.
type ktriAlgorithm struct {
	oaep    bool
	hash    crypto.Hash
	mgfHash crypto.Hash
	label   []byte
}

// kariParams holds the parts of a KeyAgreeRecipientInfo shared by its
// recipients.
type kariParams struct {
	// originatorPoint is the ephemeral public key, an encoded EC point.
	originatorPoint []byte
	// originatorCurve is the curve named in the originator key's algorithm
	// parameters, nil when absent or NULL.
	originatorCurve asn1.ObjectIdentifier
	ukm             []byte
	scheme          kdfScheme
	wrapOID         asn1.ObjectIdentifier
	// wrapAlg is the key-wrap AlgorithmIdentifier as the message has it,
	// parameters included: ECC-CMS-SharedInfo repeats it (NSS writes NULL
	// parameters for the AES wraps, and RFC 3217 Triple-DES wrap has them).
	wrapAlg []byte
	kekLen  int
}

// parseRecipientInfos parses the DER of a RecipientInfos SET.
func parseRecipientInfos(der []byte) ([]recipientEntry, error) {
	s := cryptobyte.String(der)
	var set cryptobyte.String
	if !s.ReadASN1(&set, cbasn1.SET) || !s.Empty() {
		return nil, malformed("RecipientInfos", "not a SET")
	}
	var out []recipientEntry
	for !set.Empty() {
		var elem cryptobyte.String
		var tag cbasn1.Tag
		if !set.ReadAnyASN1(&elem, &tag) {
			return nil, malformed("RecipientInfo", "bad encoding")
		}
		switch tag {
		case cbasn1.SEQUENCE:
			e, err := parseKTRI(elem)
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		case cbasn1.Tag(1).Constructed().ContextSpecific():
			es, err := parseKARI(elem)
			if err != nil {
				return nil, err
			}
			out = append(out, es...)
		case cbasn1.Tag(2).Constructed().ContextSpecific():
			out = append(out, otherRecipient("kekri", "KEKRecipientInfo (pre-shared key-encryption keys)"))
		case cbasn1.Tag(3).Constructed().ContextSpecific():
			out = append(out, otherRecipient("pwri", "PasswordRecipientInfo"))
		case cbasn1.Tag(4).Constructed().ContextSpecific():
			out = append(out, otherRecipient("ori", "OtherRecipientInfo"))
		default:
			return nil, malformed("RecipientInfo", "unexpected tag 0x%x", uint8(tag))
		}
	}
	if len(out) == 0 {
		return nil, malformed("RecipientInfos", "no recipients")
	}
	return out, nil
}

// isUnsupported reports whether err wraps ErrUnsupported.
func isUnsupported(err error) bool { return errors.Is(err, ErrUnsupported) }

func otherRecipient(kind, what string) recipientEntry {
	return recipientEntry{
		info:     RecipientInfo{Kind: kind},
		unusable: unsupported("%s", what),
	}
}

// parseAlgorithmIdentifier splits an AlgorithmIdentifier into its OID and
// the encoding of its parameters (nil when absent).
func parseAlgorithmIdentifier(s *cryptobyte.String) (asn1.ObjectIdentifier, []byte, bool) {
	var body cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, false
	}
	if body.Empty() {
		return oid, nil, true
	}
	var params cryptobyte.String
	if !body.ReadAnyASN1Element(&params, nil) || !body.Empty() {
		return nil, nil, false
	}
	return oid, params, true
}

// isNull reports whether params is absent or an ASN.1 NULL.
func isNull(params []byte) bool {
	return params == nil || bytes.Equal(params, []byte{0x05, 0x00})
}

// parseHashAlgorithm reads a hash AlgorithmIdentifier, accepting absent and
// NULL parameters.
func parseHashAlgorithm(s *cryptobyte.String) (crypto.Hash, asn1.ObjectIdentifier, bool) {
	oid, params, ok := parseAlgorithmIdentifier(s)
	if !ok || !isNull(params) {
		return 0, nil, false
	}
	h, _ := envHashFromOID(oid)
	return h, oid, true
}

// readRID reads a recipient identifier: an IssuerAndSerialNumber SEQUENCE,
// or a subject key identifier under skiTag. keyAgree selects the
// KeyAgreeRecipientIdentifier form, where [0] is a RecipientKeyIdentifier
// SEQUENCE rather than a bare OCTET STRING.
func readRID(s *cryptobyte.String, info *RecipientInfo, keyAgree bool) bool {
	switch {
	case s.PeekASN1Tag(cbasn1.SEQUENCE):
		var isn cryptobyte.String
		if !s.ReadASN1Element(&isn, cbasn1.SEQUENCE) {
			return false
		}
		// The element must hold a Name and an INTEGER.
		var body, name, serial cryptobyte.String
		chk := isn
		if !chk.ReadASN1(&body, cbasn1.SEQUENCE) ||
			!body.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
			!body.ReadASN1(&serial, cbasn1.INTEGER) || !body.Empty() {
			return false
		}
		info.IssuerAndSerial = append([]byte(nil), isn...)
		return true
	case !keyAgree && s.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		var ski cryptobyte.String
		if !s.ReadASN1(&ski, cbasn1.Tag(0).ContextSpecific()) {
			return false
		}
		info.SubjectKeyID = append([]byte{}, ski...)
		return true
	case keyAgree && s.PeekASN1Tag(cbasn1.Tag(0).Constructed().ContextSpecific()):
		var rkid, ski cryptobyte.String
		if !s.ReadASN1(&rkid, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
			!rkid.ReadASN1(&ski, cbasn1.OCTET_STRING) {
			return false
		}
		// date and other (OtherKeyAttribute) are ignored.
		info.SubjectKeyID = append([]byte{}, ski...)
		return true
	}
	return false
}

// parseKTRI parses the contents of a KeyTransRecipientInfo SEQUENCE.
func parseKTRI(s cryptobyte.String) (recipientEntry, error) {
	e := recipientEntry{info: RecipientInfo{Kind: "ktri"}}
	var version int64
	if !s.ReadASN1Integer(&version) {
		return e, malformed("KeyTransRecipientInfo", "bad version")
	}
	if !readRID(&s, &e.info, false) {
		return e, malformed("KeyTransRecipientInfo", "bad recipient identifier")
	}
	oid, params, ok := parseAlgorithmIdentifier(&s)
	if !ok {
		return e, malformed("KeyTransRecipientInfo", "bad keyEncryptionAlgorithm")
	}
	var ek cryptobyte.String
	if !s.ReadASN1(&ek, cbasn1.OCTET_STRING) || !s.Empty() {
		return e, malformed("KeyTransRecipientInfo", "bad encryptedKey")
	}
	e.encryptedKey = append([]byte(nil), ek...)
	switch {
	case oid.Equal(oidRSAEncryption):
		e.info.KeyAlgorithm = "rsa-pkcs1v15"
		e.ktri = &ktriAlgorithm{}
		if !isNull(params) {
			return e, malformed("KeyTransRecipientInfo", "rsaEncryption parameters are not NULL")
		}
	case oid.Equal(oidEnvRSAESOAEP):
		e.info.KeyAlgorithm = "rsa-oaep"
		alg, err := parseOAEPParams(params)
		if err != nil {
			if isUnsupported(err) {
				e.unusable = err
				return e, nil
			}
			return e, err
		}
		e.ktri = alg
	default:
		e.info.KeyAlgorithm = oid.String()
		e.unusable = unsupported("key transport algorithm %v", oid)
	}
	return e, nil
}

// parseOAEPParams parses RSAES-OAEP-params (RFC 8017 appendix A.2.1, RFC
// 4055 §4.1). Absent or NULL parameters mean all defaults.
func parseOAEPParams(params []byte) (*ktriAlgorithm, error) {
	alg := &ktriAlgorithm{oaep: true, hash: crypto.SHA1, mgfHash: crypto.SHA1}
	if isNull(params) {
		return alg, nil
	}
	s := cryptobyte.String(params)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed("RSAES-OAEP-params", "not a SEQUENCE")
	}
	var field cryptobyte.String
	var present bool
	if !seq.ReadOptionalASN1(&field, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, malformed("RSAES-OAEP-params", "bad hashFunc")
	}
	if present {
		h, oid, ok := parseHashAlgorithm(&field)
		if !ok || !field.Empty() {
			return nil, malformed("RSAES-OAEP-params", "bad hashFunc")
		}
		if h == 0 {
			return nil, unsupported("OAEP hash %v", oid)
		}
		alg.hash = h
	}
	if !seq.ReadOptionalASN1(&field, &present, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return nil, malformed("RSAES-OAEP-params", "bad maskGenFunc")
	}
	if present {
		oid, mgfParams, ok := parseAlgorithmIdentifier(&field)
		if !ok || !field.Empty() {
			return nil, malformed("RSAES-OAEP-params", "bad maskGenFunc")
		}
		if !oid.Equal(oidMGF1) {
			return nil, unsupported("OAEP mask generation function %v", oid)
		}
		if mgfParams != nil {
			p := cryptobyte.String(mgfParams)
			h, hoid, ok := parseHashAlgorithm(&p)
			if !ok || !p.Empty() {
				return nil, malformed("RSAES-OAEP-params", "bad MGF1 hash")
			}
			if h == 0 {
				return nil, unsupported("OAEP MGF1 hash %v", hoid)
			}
			alg.mgfHash = h
		}
	}
	if !seq.ReadOptionalASN1(&field, &present, cbasn1.Tag(2).Constructed().ContextSpecific()) {
		return nil, malformed("RSAES-OAEP-params", "bad pSourceFunc")
	}
	if present {
		oid, pParams, ok := parseAlgorithmIdentifier(&field)
		if !ok || !field.Empty() {
			return nil, malformed("RSAES-OAEP-params", "bad pSourceFunc")
		}
		if !oid.Equal(oidEnvPSpecified) {
			return nil, unsupported("OAEP label source %v", oid)
		}
		if pParams != nil {
			p := cryptobyte.String(pParams)
			var label cryptobyte.String
			if !p.ReadASN1(&label, cbasn1.OCTET_STRING) || !p.Empty() {
				return nil, malformed("RSAES-OAEP-params", "bad pSpecified label")
			}
			if len(label) > 0 {
				alg.label = append([]byte(nil), label...)
			}
		}
	}
	if !seq.Empty() {
		return nil, malformed("RSAES-OAEP-params", "trailing data")
	}
	return alg, nil
}

// parseKARI parses the contents of a [1] KeyAgreeRecipientInfo and returns
// one entry for each of its RecipientEncryptedKeys.
func parseKARI(s cryptobyte.String) ([]recipientEntry, error) {
	const st = "KeyAgreeRecipientInfo"
	var version int64
	if !s.ReadASN1Integer(&version) {
		return nil, malformed(st, "bad version")
	}
	var orig cryptobyte.String
	if !s.ReadASN1(&orig, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, malformed(st, "bad originator")
	}
	p := &kariParams{}
	var unusable error
	switch {
	case orig.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()):
		var opk cryptobyte.String
		if !orig.ReadASN1(&opk, cbasn1.Tag(1).Constructed().ContextSpecific()) {
			return nil, malformed(st, "bad originatorKey")
		}
		oid, params, ok := parseAlgorithmIdentifier(&opk)
		var bits cryptobyte.String
		if !ok || !opk.ReadASN1(&bits, cbasn1.BIT_STRING) || !opk.Empty() || len(bits) < 2 || bits[0] != 0 {
			return nil, malformed(st, "bad originatorKey")
		}
		p.originatorPoint = append([]byte(nil), bits[1:]...)
		if !oid.Equal(oidECPublicKey) {
			unusable = unsupported("originator key algorithm %v", oid)
			break
		}
		if !isNull(params) {
			ps := cryptobyte.String(params)
			var curve asn1.ObjectIdentifier
			if !ps.ReadASN1ObjectIdentifier(&curve) || !ps.Empty() {
				return nil, malformed(st, "bad originatorKey parameters")
			}
			p.originatorCurve = curve
		}
	default:
		// issuerAndSerialNumber or subjectKeyIdentifier: static-static
		// key agreement with the originator's certificate.
		if orig.Empty() {
			return nil, malformed(st, "empty originator")
		}
		unusable = unsupported("key agreement with a static originator key")
	}
	if !orig.Empty() && unusable == nil {
		return nil, malformed(st, "trailing data in originator")
	}
	var ukmField cryptobyte.String
	var hasUKM bool
	if !s.ReadOptionalASN1(&ukmField, &hasUKM, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return nil, malformed(st, "bad ukm")
	}
	if hasUKM {
		var ukm cryptobyte.String
		if !ukmField.ReadASN1(&ukm, cbasn1.OCTET_STRING) || !ukmField.Empty() {
			return nil, malformed(st, "bad ukm")
		}
		p.ukm = append([]byte{}, ukm...)
	}
	kaOID, kaParams, ok := parseAlgorithmIdentifier(&s)
	if !ok {
		return nil, malformed(st, "bad keyEncryptionAlgorithm")
	}
	algName := kaOID.String()
	if scheme, known := kdfSchemeByOID(kaOID); known {
		p.scheme = scheme
		ps := cryptobyte.String(kaParams)
		wrapOID, wrapParams, ok := parseAlgorithmIdentifier(&ps)
		if !ok || !ps.Empty() {
			return nil, malformed(st, "keyEncryptionAlgorithm parameters are not a KeyWrapAlgorithm")
		}
		p.wrapOID = wrapOID
		p.wrapAlg = append([]byte(nil), kaParams...)
		wrap, known := wrapByOID(wrapOID)
		switch {
		case !known:
			if unusable == nil {
				unusable = unsupported("key wrap algorithm %v", wrapOID)
			}
			algName += "-" + wrapOID.String()
		case !isNull(wrapParams):
			return nil, malformed(st, "key wrap algorithm has parameters")
		default:
			p.kekLen = wrap.kekLen
			algName = kariAlgorithmName(scheme, wrap)
		}
	} else if unusable == nil {
		unusable = unsupported("key agreement algorithm %v", kaOID)
	}
	var reks cryptobyte.String
	if !s.ReadASN1(&reks, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed(st, "bad recipientEncryptedKeys")
	}
	var out []recipientEntry
	for !reks.Empty() {
		var rek cryptobyte.String
		if !reks.ReadASN1(&rek, cbasn1.SEQUENCE) {
			return nil, malformed(st, "bad RecipientEncryptedKey")
		}
		e := recipientEntry{info: RecipientInfo{Kind: "kari", KeyAlgorithm: algName}, kari: p, unusable: unusable}
		var ek cryptobyte.String
		if !readRID(&rek, &e.info, true) || !rek.ReadASN1(&ek, cbasn1.OCTET_STRING) || !rek.Empty() {
			return nil, malformed(st, "bad RecipientEncryptedKey")
		}
		e.encryptedKey = append([]byte(nil), ek...)
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, malformed(st, "no recipientEncryptedKeys")
	}
	return out, nil
}

// kariAlgorithmName is the RecipientInfo.KeyAlgorithm of a key agreement.
func kariAlgorithmName(s kdfScheme, wrap wrapAlgorithm) string {
	kind := "ecdh"
	if s.cofactor {
		kind = "ecdh-cofactor"
	}
	var h string
	switch s.hash {
	case crypto.SHA1:
		h = "sha1"
	case crypto.SHA224:
		h = "sha224"
	case crypto.SHA256:
		h = "sha256"
	case crypto.SHA384:
		h = "sha384"
	case crypto.SHA512:
		h = "sha512"
	}
	return fmt.Sprintf("%s-%skdf-%s", kind, h, wrap.name)
}

// appendRID adds the identifier of cert: its IssuerAndSerialNumber, or its
// subject key identifier as [0] IMPLICIT OCTET STRING (key transport) or
// [0] IMPLICIT RecipientKeyIdentifier (key agreement).
func appendRID(b *cryptobyte.Builder, cert *x509.Certificate, ski, keyAgree bool) {
	switch {
	case !ski:
		appendIssuerAndSerial(b, cert)
	case keyAgree:
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(cert.SubjectKeyId)
		})
	default:
		b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddBytes(cert.SubjectKeyId)
		})
	}
}

// appendIssuerAndSerial adds IssuerAndSerialNumber ::= SEQUENCE { issuer
// Name, serialNumber CertificateSerialNumber } for cert.
func appendIssuerAndSerial(b *cryptobyte.Builder, cert *x509.Certificate) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(cert.RawIssuer)
		b.AddASN1BigInt(cert.SerialNumber)
	})
}

// appendHashAlgorithm adds a hash AlgorithmIdentifier with NULL parameters,
// the form RFC 4055 §2.1 spells out for RSAES-OAEP-params.
func appendHashAlgorithm(b *cryptobyte.Builder, oid asn1.ObjectIdentifier) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1NULL()
	})
}
