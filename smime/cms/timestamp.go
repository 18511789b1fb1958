package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/smimed/smimed/smime/internal/ber"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Time-stamp tokens (RFC 3161). A signer may carry, as the unsigned
// attribute id-aa-signatureTimeStampToken (RFC 3161 appendix A), a token in
// which a time-stamping authority (TSA) signs the hash of the signature
// value together with the time: proof that the signature existed then.

// maxTimeStampSkew is how far a token's time may lie ahead of the present
// (beyond its stated accuracy): the TSA's and our clocks may differ a little.
const maxTimeStampSkew = 5 * time.Minute

// maxTimeStampAccuracy bounds the accuracy field, so that it fits a
// time.Duration.
const maxTimeStampAccuracy = 1 << 30 // seconds, about 34 years

// TimeStampOptions configure VerifyTimeStamp.
type TimeStampOptions struct {
	// Roots are the trust anchors the TSA's certificate must chain to; the
	// system roots when nil. An empty pool trusts nothing.
	Roots *x509.CertPool
	// Intermediates are extra intermediate certificates for the TSA's
	// chain; the certificates in the token are always used too.
	Intermediates *x509.CertPool
	// Certificates are more certificates to find the TSA's certificate
	// among (a token need not carry it) and to use as intermediates, e.g.
	// the certificates of the message the token came with.
	Certificates []*x509.Certificate
	// Now is the present: a token dated after Now (beyond its accuracy
	// and five minutes of clock difference) is refused. time.Now() when
	// zero.
	Now time.Time
}

// TimeStamp is a verified time-stamp token: the time a trusted TSA
// attests, and who attests it.
type TimeStamp struct {
	// Time is the token's genTime: the signature existed at this time.
	Time time.Time
	// Accuracy is the token's stated accuracy (the true time lies within
	// Time ± Accuracy); 0 when the token does not say.
	Accuracy time.Duration
	// Authority is the TSA's certificate.
	Authority *x509.Certificate
	// Chain is the TSA's verified chain, Authority first, ending with the
	// trust anchor.
	Chain []*x509.Certificate
	// Serial is the token's serial number, unique per TSA.
	Serial *big.Int
	// Policy is the TSA policy the token was issued under.
	Policy asn1.ObjectIdentifier
	// Hash is the hash of the message imprint.
	Hash crypto.Hash
	// Nonce is the nonce of the request, nil when absent.
	Nonce *big.Int
	// Ordering is the token's ordering flag.
	Ordering bool
	// Name is the tsa field (a directory name, e-mail address, DNS name
	// or URI as text); empty when absent or of another kind.
	Name string
}

// tstInfo is a parsed TSTInfo (RFC 3161 section 2.4.2).
type tstInfo struct {
	policy        asn1.ObjectIdentifier
	hash          crypto.Hash // 0 when not recognised
	hashOID       asn1.ObjectIdentifier
	hashedMessage []byte
	serial        *big.Int
	genTime       time.Time
	accuracy      time.Duration
	ordering      bool
	nonce         *big.Int
	name          string
}

// timeStampToken is a parsed, not yet verified, token.
type timeStampToken struct {
	sd      *SignedData
	content []byte // the DER TSTInfo, as signed
	info    *tstInfo
}

// parseTimeStampToken parses a TimeStampToken: a ContentInfo holding a
// SignedData whose encapsulated content is a TSTInfo, signed by one
// signer.
func parseTimeStampToken(token []byte) (*timeStampToken, error) {
	sd, content, err := ParseSignedData(token)
	if err != nil {
		return nil, fmt.Errorf("cms: time-stamp token: %w", err)
	}
	if !sd.ContentType.Equal(oidTSTInfo) {
		return nil, malformed("TimeStampToken", "content type %s, not id-ct-TSTInfo", contentTypeName(sd.ContentType))
	}
	if content == nil {
		return nil, malformed("TimeStampToken", "no encapsulated TSTInfo")
	}
	if len(sd.Signers) != 1 {
		return nil, malformed("TimeStampToken", "%d signers, want exactly the TSA", len(sd.Signers))
	}
	info, err := parseTSTInfo(content)
	if err != nil {
		return nil, err
	}
	return &timeStampToken{sd: sd, content: content, info: info}, nil
}

// parseTSTInfo decodes a DER TSTInfo:
//
//	TSTInfo ::= SEQUENCE {
//	   version        INTEGER { v1(1) },
//	   policy         TSAPolicyId,
//	   messageImprint MessageImprint,
//	   serialNumber   INTEGER,
//	   genTime        GeneralizedTime,
//	   accuracy       Accuracy OPTIONAL,
//	   ordering       BOOLEAN DEFAULT FALSE,
//	   nonce          INTEGER OPTIONAL,
//	   tsa            [0] GeneralName OPTIONAL,
//	   extensions     [1] IMPLICIT Extensions OPTIONAL }
func parseTSTInfo(der []byte) (*tstInfo, error) {
	const st = "TSTInfo"
	s := cryptobyte.String(der)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed(st, "not a SEQUENCE")
	}
	info := &tstInfo{}
	var version int64
	if !seq.ReadASN1Integer(&version) {
		return nil, malformed(st, "bad version")
	}
	if version != 1 {
		return nil, malformed(st, "version %d (want 1)", version)
	}
	if !seq.ReadASN1ObjectIdentifier(&info.policy) {
		return nil, malformed(st, "bad policy")
	}
	var imprint cryptobyte.String
	if !seq.ReadASN1(&imprint, cbasn1.SEQUENCE) {
		return nil, malformed(st, "bad messageImprint")
	}
	oid, params, ok := readAlgorithm(&imprint)
	if !ok || !imprint.ReadASN1Bytes(&info.hashedMessage, cbasn1.OCTET_STRING) || !imprint.Empty() {
		return nil, malformed(st, "bad messageImprint")
	}
	info.hashOID, info.hash = oid, hashFromOID(oid)
	if info.hash != 0 && !absentOrNULL(params) {
		return nil, malformed(st, "messageImprint hash %s with parameters", hashName(info.hash))
	}
	info.serial = new(big.Int)
	if !seq.ReadASN1Integer(info.serial) {
		return nil, malformed(st, "bad serialNumber")
	}
	var gt cryptobyte.String
	if !seq.ReadASN1(&gt, cbasn1.GeneralizedTime) {
		return nil, malformed(st, "bad genTime")
	}
	var err error
	if info.genTime, err = parseGenTime(string(gt)); err != nil {
		return nil, err
	}
	if seq.PeekASN1Tag(cbasn1.SEQUENCE) {
		var acc cryptobyte.String
		seq.ReadASN1(&acc, cbasn1.SEQUENCE)
		if info.accuracy, err = parseAccuracy(acc); err != nil {
			return nil, err
		}
	}
	if !readOptionalBoolean(&seq, &info.ordering) {
		return nil, malformed(st, "bad ordering")
	}
	if seq.PeekASN1Tag(cbasn1.INTEGER) {
		info.nonce = new(big.Int)
		if !seq.ReadASN1Integer(info.nonce) {
			return nil, malformed(st, "bad nonce")
		}
	}
	tsaTag := cbasn1.Tag(0).Constructed().ContextSpecific()
	if seq.PeekASN1Tag(tsaTag) {
		var gn cryptobyte.String
		if !seq.ReadASN1(&gn, tsaTag) {
			return nil, malformed(st, "bad tsa")
		}
		if info.name, err = generalNameString(gn); err != nil {
			return nil, err
		}
	}
	extTag := cbasn1.Tag(1).Constructed().ContextSpecific()
	if seq.PeekASN1Tag(extTag) {
		var exts cryptobyte.String
		if !seq.ReadASN1(&exts, extTag) {
			return nil, malformed(st, "bad extensions")
		}
		if err := checkTSTExtensions(exts); err != nil {
			return nil, err
		}
	}
	if !seq.Empty() {
		return nil, malformed(st, "unexpected data after the last field")
	}
	return info, nil
}

// readOptionalBoolean reads a BOOLEAN DEFAULT FALSE. (cryptobyte's
// ReadOptionalASN1Boolean is for explicitly tagged ones.)
func readOptionalBoolean(s *cryptobyte.String, out *bool) bool {
	*out = false
	if !s.PeekASN1Tag(cbasn1.BOOLEAN) {
		return true
	}
	return s.ReadASN1Boolean(out)
}

// parseGenTime decodes the contents of genTime, a GeneralizedTime in UTC
// with optional fractional seconds: YYYYMMDDhhmmss[.f...]Z (RFC 3161
// section 2.4.2). cryptobyte's GeneralizedTime reader refuses fractions.
func parseGenTime(s string) (time.Time, error) {
	const st = "TSTInfo genTime"
	if len(s) < 15 || s[len(s)-1] != 'Z' {
		return time.Time{}, malformed(st, "%q is not YYYYMMDDhhmmss[.f]Z", s)
	}
	for i := 0; i < 14; i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, malformed(st, "%q is not YYYYMMDDhhmmss[.f]Z", s)
		}
	}
	t, err := time.Parse("20060102150405", s[:14])
	if err != nil {
		return time.Time{}, malformed(st, "%q: %v", s, err)
	}
	frac := s[14 : len(s)-1]
	if frac == "" {
		return t, nil
	}
	// A dot and 1 to 9 digits; DER forbids trailing zeros, which some
	// TSAs write anyway: they change nothing, so they are accepted.
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return time.Time{}, malformed(st, "%q: bad fraction of a second", s)
	}
	ns := 0
	for i := 1; i < 10; i++ {
		d := 0
		if i < len(frac) {
			if frac[i] < '0' || frac[i] > '9' {
				return time.Time{}, malformed(st, "%q: bad fraction of a second", s)
			}
			d = int(frac[i] - '0')
		}
		ns = ns*10 + d
	}
	return t.Add(time.Duration(ns)), nil
}

// parseAccuracy decodes the contents of
//
//	Accuracy ::= SEQUENCE {
//	   seconds INTEGER OPTIONAL,
//	   millis  [0] INTEGER (1..999) OPTIONAL,
//	   micros  [1] INTEGER (1..999) OPTIONAL }
func parseAccuracy(s cryptobyte.String) (time.Duration, error) {
	const st = "TSTInfo accuracy"
	var sec, ms, us int64
	if s.PeekASN1Tag(cbasn1.INTEGER) {
		if !s.ReadASN1Integer(&sec) || sec < 0 || sec > maxTimeStampAccuracy {
			return 0, malformed(st, "bad seconds")
		}
	}
	if s.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()) {
		if !s.ReadASN1Int64WithTag(&ms, cbasn1.Tag(0).ContextSpecific()) || ms < 0 || ms > 999 {
			return 0, malformed(st, "bad millis")
		}
	}
	if s.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) {
		if !s.ReadASN1Int64WithTag(&us, cbasn1.Tag(1).ContextSpecific()) || us < 0 || us > 999 {
			return 0, malformed(st, "bad micros")
		}
	}
	if !s.Empty() {
		return 0, malformed(st, "unexpected data")
	}
	return time.Duration(sec)*time.Second + time.Duration(ms)*time.Millisecond + time.Duration(us)*time.Microsecond, nil
}

// generalNameString returns a GeneralName (the contents of the explicit
// [0] of the tsa field) as text: directoryName, rfc822Name, dNSName and
// uniformResourceIdentifier; "" for the other kinds.
func generalNameString(s cryptobyte.String) (string, error) {
	const st = "TSTInfo tsa"
	var v cryptobyte.String
	var tag cbasn1.Tag
	if !s.ReadAnyASN1(&v, &tag) || !s.Empty() {
		return "", malformed(st, "not one GeneralName")
	}
	switch tag {
	case cbasn1.Tag(1).ContextSpecific(), cbasn1.Tag(2).ContextSpecific(), cbasn1.Tag(6).ContextSpecific():
		return string(v), nil
	case cbasn1.Tag(4).Constructed().ContextSpecific():
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(v, &rdn); err != nil || len(rest) != 0 {
			return "", malformed(st, "bad directoryName")
		}
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		return n.String(), nil
	}
	return "", nil
}

// checkTSTExtensions refuses critical extensions: RFC 3161 defines none,
// so a critical one is something this package cannot honour.
func checkTSTExtensions(s cryptobyte.String) error {
	const st = "TSTInfo extensions"
	for n := 0; !s.Empty(); n++ {
		if n == maxAttributes {
			return malformed(st, "more than %d extensions", maxAttributes)
		}
		var ext cryptobyte.String
		var oid asn1.ObjectIdentifier
		var critical bool
		var val cryptobyte.String
		if !s.ReadASN1(&ext, cbasn1.SEQUENCE) || !ext.ReadASN1ObjectIdentifier(&oid) ||
			!readOptionalBoolean(&ext, &critical) ||
			!ext.ReadASN1(&val, cbasn1.OCTET_STRING) || !ext.Empty() {
			return malformed(st, "bad Extension")
		}
		if critical {
			return unsupported("critical time-stamp extension %v", oid)
		}
	}
	return nil
}

// checkImprint checks that the token's messageImprint is the hash of
// signature with an acceptable hash.
func (info *tstInfo) checkImprint(signature []byte) error {
	switch info.hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	case crypto.MD5, crypto.SHA1:
		return fmt.Errorf("%w: time-stamp message imprint with %s", ErrWeakAlgorithm, hashName(info.hash))
	case 0:
		return unsupported("time-stamp message imprint with hash %v", info.hashOID)
	default:
		return unsupported("time-stamp message imprint with %s (want SHA-256, SHA-384 or SHA-512)", hashName(info.hash))
	}
	h := info.hash.New()
	h.Write(signature)
	if !bytes.Equal(h.Sum(nil), info.hashedMessage) {
		return fmt.Errorf("%w: the %s message imprint is not the hash of this signature", ErrImprintMismatch, hashName(info.hash))
	}
	return nil
}

// checkTimeStampCovers parses token and checks that it time-stamps
// signature; it does not check the TSA's signature or certificate. Signers
// use it to refuse a token that a TSA made for something else.
func checkTimeStampCovers(token, signature []byte) error {
	t, err := parseTimeStampToken(token)
	if err != nil {
		return err
	}
	return t.info.checkImprint(signature)
}

// VerifyTimeStamp verifies an RFC 3161 time-stamp token (a DER or BER
// ContentInfo, as found in SignerInfo.TimeStampToken) over signatureValue,
// the signature value it is attached to, and returns the attested time.
//
// It checks, in order: the token's structure (a SignedData with one signer
// over an id-ct-TSTInfo; ErrMalformed, ErrUnsupported); that the message
// imprint uses SHA-256, SHA-384 or SHA-512 (MD5 and SHA-1 are
// ErrWeakAlgorithm) and equals the hash of signatureValue
// (ErrImprintMismatch); the TSA's signature, as SignerInfo.Verify does
// (ErrDigestMismatch, ErrSignature), with no weak algorithm or key
// (ErrWeakAlgorithm); and then that the TSA is trusted
// (ErrTimeStampUntrusted): its certificate is found in the token or in
// opts.Certificates, matches the ESS signingCertificate or
// signingCertificateV2 attribute when one is present, has a critical
// extended key usage of id-kp-timeStamping alone and a key usage (if any)
// allowing signatures, and chains to opts.Roots at the token's time; and
// that the token's time is not in the future.
//
// The TSA's certificates are not checked for revocation.
func VerifyTimeStamp(token, signatureValue []byte, opts TimeStampOptions) (*TimeStamp, error) {
	t, err := parseTimeStampToken(token)
	if err != nil {
		return nil, err
	}
	info := t.info
	if err := info.checkImprint(signatureValue); err != nil {
		return nil, err
	}
	si := t.sd.Signers[0]
	candidates := append(append([]*x509.Certificate(nil), t.sd.Certificates...), opts.Certificates...)
	cert := si.FindCertificate(candidates)
	if cert == nil {
		return nil, fmt.Errorf("%w: the TSA's certificate is neither in the token nor among the given certificates", ErrTimeStampUntrusted)
	}
	digests := map[crypto.Hash][]byte{}
	if si.Hash != 0 && si.Hash.Available() {
		h := si.Hash.New()
		h.Write(t.content)
		digests[si.Hash] = h.Sum(nil)
	}
	if err := si.Verify(cert, oidTSTInfo, digests); err != nil {
		return nil, fmt.Errorf("cms: time-stamp token: %w", err)
	}
	if w := si.Weakness(cert); w != "" {
		return nil, fmt.Errorf("%w: the time-stamp token is signed with a %s", ErrWeakAlgorithm, w)
	}
	if err := checkESSCertIDs(si, cert); err != nil {
		return nil, err
	}
	if err := checkTSACertificate(cert); err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	if opts.Intermediates != nil {
		inter = opts.Intermediates.Clone()
	}
	for _, c := range candidates {
		if c != nil && c != cert {
			inter.AddCert(c)
		}
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         opts.Roots,
		Intermediates: inter,
		CurrentTime:   info.genTime,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: the certificate chain of %s does not verify at %s: %v",
			ErrTimeStampUntrusted, tsaName(cert), info.genTime.UTC().Format(time.RFC3339), err)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if info.genTime.After(now.Add(info.accuracy + maxTimeStampSkew)) {
		return nil, fmt.Errorf("%w: the token's time %s is in the future", ErrTimeStampUntrusted, info.genTime.UTC().Format(time.RFC3339))
	}
	return &TimeStamp{
		Time:      info.genTime,
		Accuracy:  info.accuracy,
		Authority: cert,
		Chain:     chains[0],
		Serial:    info.serial,
		Policy:    info.policy,
		Hash:      info.hash,
		Nonce:     info.nonce,
		Ordering:  info.ordering,
		Name:      info.name,
	}, nil
}

// tsaName names a TSA certificate in an error.
func tsaName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return fmt.Sprintf("%q", c.Subject.CommonName)
	}
	return fmt.Sprintf("%q", c.Subject.String())
}

// checkTSACertificate checks the TSA certificate's purpose as RFC 3161
// section 2.3 asks (and OpenSSL checks): a critical extended key usage
// extension naming id-kp-timeStamping and nothing else, and a key usage,
// if any, that allows signatures.
func checkTSACertificate(c *x509.Certificate) error {
	critical := false
	for _, e := range c.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			critical = e.Critical
		}
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(c.UnknownExtKeyUsage) != 0 {
		return fmt.Errorf("%w: the certificate of %s is not for time-stamping (its extended key usage must be id-kp-timeStamping only)",
			ErrTimeStampUntrusted, tsaName(c))
	}
	if !critical {
		return fmt.Errorf("%w: the certificate of %s does not mark its id-kp-timeStamping extended key usage critical",
			ErrTimeStampUntrusted, tsaName(c))
	}
	if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("%w: the key usage of %s's certificate does not allow signatures", ErrTimeStampUntrusted, tsaName(c))
	}
	return nil
}

// checkESSCertIDs checks the signingCertificate (RFC 2634 section 5.4,
// SHA-1 hash) and signingCertificateV2 (RFC 5035, any hash, SHA-256 by
// default) signed attributes, when present: the first certificate they
// identify must be the one the token verified with. RFC 3161 requires one
// of them; a token without either is accepted, since the signature check
// already binds the TSA's key.
func checkESSCertIDs(si *SignerInfo, cert *x509.Certificate) error {
	for _, a := range []struct {
		oid  asn1.ObjectIdentifier
		name string
		v2   bool
	}{{oidSigningCertificate, "signingCertificate", false}, {oidSigningCertificateV2, "signingCertificateV2", true}} {
		v, ok, err := findAttribute(si.SignedAttrs, a.oid, a.name)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		h, sum, err := parseFirstESSCertID(v, a.v2)
		if err != nil {
			return err
		}
		if !h.Available() {
			return unsupported("%s with hash %s", a.name, hashName(h))
		}
		d := h.New()
		d.Write(cert.Raw)
		if !bytes.Equal(d.Sum(nil), sum) {
			return fmt.Errorf("%w: the token's %s attribute names another certificate than %s's", ErrTimeStampUntrusted, a.name, tsaName(cert))
		}
	}
	return nil
}

// parseFirstESSCertID returns the hash and certHash of the first ESSCertID
// (v2: ESSCertIDv2) of a SigningCertificate value.
//
//	SigningCertificate ::= SEQUENCE { certs SEQUENCE OF ESSCertID, policies ... OPTIONAL }
//	ESSCertID ::= SEQUENCE { certHash OCTET STRING, issuerSerial IssuerSerial OPTIONAL }
//	ESSCertIDv2 ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier DEFAULT id-sha256,
//	                           certHash OCTET STRING, issuerSerial IssuerSerial OPTIONAL }
func parseFirstESSCertID(v []byte, v2 bool) (crypto.Hash, []byte, error) {
	const st = "TimeStampToken signingCertificate"
	s := cryptobyte.String(v)
	var sc, certs, id cryptobyte.String
	if !s.ReadASN1(&sc, cbasn1.SEQUENCE) || !s.Empty() || !sc.ReadASN1(&certs, cbasn1.SEQUENCE) ||
		!certs.ReadASN1(&id, cbasn1.SEQUENCE) {
		return 0, nil, malformed(st, "not a SEQUENCE of ESSCertID")
	}
	h := crypto.SHA1
	if v2 {
		h = crypto.SHA256
		if id.PeekASN1Tag(cbasn1.SEQUENCE) {
			oid, params, ok := readAlgorithm(&id)
			if !ok {
				return 0, nil, malformed(st, "bad hashAlgorithm")
			}
			if h = hashFromOID(oid); h == 0 {
				return 0, nil, unsupported("signingCertificateV2 with hash %v", oid)
			}
			if !absentOrNULL(params) {
				return 0, nil, malformed(st, "hash %s with parameters", hashName(h))
			}
		}
	}
	var sum []byte
	if !id.ReadASN1Bytes(&sum, cbasn1.OCTET_STRING) {
		return 0, nil, malformed(st, "bad certHash")
	}
	return h, sum, nil
}

// timeStampAttribute checks that token time-stamps signature and returns
// the unsigned attribute carrying it, as DER. Its errors wrap no sentinel.
func timeStampAttribute(token, signature []byte) (Attribute, error) {
	if !isOneDERElement(token) {
		der, err := ber.ToDER(token)
		if err != nil {
			return Attribute{}, fmt.Errorf("cms: the time-stamping authority returned an unusable token: not one BER element: %v", err)
		}
		token = der
	}
	if err := checkTimeStampCovers(token, signature); err != nil {
		// Not %w: the message being signed is fine, the TSA's answer is
		// not, and callers must not take this for a malformed message.
		return Attribute{}, fmt.Errorf("cms: the time-stamping authority returned an unusable token: %v", err)
	}
	return Attribute{Type: oidTimeStampToken, Values: [][]byte{bytes.Clone(token)}}, nil
}

// errNoTimeStamp is returned when a TimeStamp callback returns no token
// and no error.
var errNoTimeStamp = errors.New("cms: the time-stamping authority returned no token")
