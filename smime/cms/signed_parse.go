package cms

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/smimed/smimed/smime/internal/ber"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Limits applied while parsing, against hostile input. Going over one is
// ErrMalformed.
const (
	maxCertificates     = 256
	maxCertificateSize  = 64 << 10
	maxSigners          = 32
	maxSignerInfoSize   = 256 << 10
	maxDigestAlgorithms = 32
	maxDigestAlgsSize   = 4 << 10
	maxSmallElement     = 1 << 10 // OIDs, INTEGERs
)

// SignedData is a parsed SignedData (RFC 5652 section 5) minus its content.
type SignedData struct {
	// ContentType is the eContentType; id-data for S/MIME.
	ContentType asn1.ObjectIdentifier
	// Detached reports that no eContent is present: the content travels
	// elsewhere (multipart/signed) or there is none (certs-only).
	Detached bool
	// DigestAlgorithms are the recognised algorithms of the
	// digestAlgorithms field, in order, without duplicates.
	DigestAlgorithms []crypto.Hash
	// Certificates are the certificates that parsed, in order.
	Certificates []*x509.Certificate
	// SkippedCertificates counts entries of the certificates field that
	// were skipped: unparseable certificates and the other choices
	// (attribute certificates, other formats).
	SkippedCertificates int
	// Signers are the SignerInfos, in order.
	Signers []*SignerInfo
}

// CertsOnly reports whether the SignedData has no signers: a certs-only
// message (RFC 8551 section 3.6) when it carries certificates.
func (sd *SignedData) CertsOnly() bool { return len(sd.Signers) == 0 }

// SignerInfo is one parsed SignerInfo.
type SignerInfo struct {
	// IssuerAndSerial is the DER IssuerAndSerialNumber naming the signer's
	// certificate, nil when the signer is named by SubjectKeyID.
	IssuerAndSerial []byte
	// SubjectKeyID names the signer's certificate by its subject key
	// identifier, nil when IssuerAndSerial is used.
	SubjectKeyID []byte
	// Hash is the digest algorithm, 0 when it is not recognised (DigestOID
	// then says which it is).
	Hash      crypto.Hash
	DigestOID asn1.ObjectIdentifier
	// SignatureAlgorithm names the signature scheme: "rsa-pkcs1v15",
	// "rsa-pss", "ecdsa", or the algorithm's OID in dotted form.
	SignatureAlgorithm string
	// PSSHash is the hash named by the RSASSA-PSS parameters (for
	// "rsa-pss").
	PSSHash crypto.Hash
	// Signature is the signature value.
	Signature []byte
	// SignedAttrs are the signed attributes, in the order received.
	SignedAttrs []Attribute
	// RawSignedAttrs is the signedAttrs field as received: the whole
	// [0] IMPLICIT element, tag and length included (for a message read as
	// BER, after its lengths were made definite). Nil when absent.
	RawSignedAttrs []byte
	// UnsignedAttrs are the unsigned attributes, in the order received.
	UnsignedAttrs []Attribute
	// SigningTime is the signingTime attribute, zero if absent.
	SigningTime time.Time
	// MessageDigest is the messageDigest attribute, nil if absent.
	MessageDigest []byte
	// Capabilities is the SMIMECapabilities attribute, nil if absent or
	// undecodable.
	Capabilities []Capability
	// EncryptionKeyPreference is the SMIMEEncryptionKeyPreference
	// attribute, nil if absent or undecodable.
	EncryptionKeyPreference *KeyPreference
	// TimeStampToken is the first value of the unsigned attribute
	// id-aa-signatureTimeStampToken (RFC 3161 appendix A): a DER
	// ContentInfo in which a time-stamping authority signs the hash of
	// Signature and a time. Nil when absent; further tokens are ignored.
	// It is not checked when parsing: see VerifyTimeStamp.
	TimeStampToken []byte

	contentType asn1.ObjectIdentifier // contentType attribute, nil if absent
	sigKind     sigKind
	sigHash     crypto.Hash // hash the signature algorithm names, 0 if none
	pss         *pssParams
	sigErr      error // problem with signatureAlgorithm, reported by Verify
	digestErr   error // problem with digestAlgorithm, reported by Verify
}

// pssParams are decoded RSASSA-PSS-params.
type pssParams struct {
	hash, mgfHash crypto.Hash
	saltLength    int
}

// SignedDataReader parses a SignedData from a stream: the header up to the
// encapsulated content, then the content itself as it is read, then the
// certificates and signers after it.
type SignedDataReader struct {
	d        *ber.Decoder
	sd       *SignedData
	dig      *Digester
	content  *contentReader // nil when detached
	err      error          // first error, sticky
	finished bool
}

// NewSignedDataReader reads a ContentInfo holding a SignedData from r, DER
// or BER, up to the start of the encapsulated content.
func NewSignedDataReader(r io.Reader) (*SignedDataReader, error) {
	return newSignedDataReader(r, true)
}

func newSignedDataReader(r io.Reader, hashContent bool) (*SignedDataReader, error) {
	s := &SignedDataReader{d: ber.NewDecoder(r), sd: &SignedData{}}
	if err := s.readHeader(hashContent); err != nil {
		return nil, err
	}
	return s, nil
}

// berError turns an error from the BER decoder into one of this package's.
func berError(structure string, err error) error {
	switch {
	case errors.Is(err, ber.ErrSyntax), errors.Is(err, ber.ErrTooLarge):
		return malformed(structure, "%v", err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return malformed(structure, "message truncated")
	}
	return fmt.Errorf("cms: reading %s: %w", structure, err)
}

// next returns the next element at the current level; io.EOF at its end
// is reported as a missing element.
func (s *SignedDataReader) next(structure string) (ber.Header, error) {
	h, err := s.d.Next()
	if err == io.EOF {
		return h, malformed(structure, "missing")
	}
	if err != nil {
		return h, berError(structure, err)
	}
	return h, nil
}

// enter expects a constructed universal element with the given tag (or a
// context-specific one when class is ber.ClassContext) and descends into it.
func (s *SignedDataReader) enter(structure string, class, tag int) error {
	h, err := s.next(structure)
	if err != nil {
		return err
	}
	if !h.Is(class, tag) || !h.Constructed {
		return malformed(structure, "unexpected %v", h)
	}
	if err := s.d.Enter(); err != nil {
		return berError(structure, err)
	}
	return nil
}

// readElement expects an element with the given tag and returns its DER
// encoding, at most max bytes.
func (s *SignedDataReader) readElement(structure string, class, tag int, max int64) ([]byte, error) {
	h, err := s.next(structure)
	if err != nil {
		return nil, err
	}
	if !h.Is(class, tag) {
		return nil, malformed(structure, "unexpected %v", h)
	}
	der, err := s.readDER(max)
	if err != nil {
		return nil, berError(structure, err)
	}
	return der, nil
}

// readDER reads the current element whole and returns it in DER (definite
// lengths, strings in one piece). Most messages are DER already; their
// elements are returned as read, without a second decoding pass.
func (s *SignedDataReader) readDER(max int64) ([]byte, error) {
	raw, err := s.d.ReadRaw(max)
	if err != nil {
		return nil, err
	}
	if isDERFramed(raw, 0) {
		return raw, nil
	}
	return ber.ToDER(raw)
}

// isDERFramed reports whether every element in b has a definite, minimally
// encoded length and a low tag number, and no universal string type is
// constructed: then ber.ToDER would return b unchanged.
func isDERFramed(b []byte, depth int) bool {
	if depth > 64 {
		return false
	}
	s := cryptobyte.String(b)
	for !s.Empty() {
		var body cryptobyte.String
		var tag cbasn1.Tag
		if !s.ReadAnyASN1(&body, &tag) || tag == 0 {
			return false // undecodable, or end-of-contents
		}
		if tag&0x20 == 0 {
			continue
		}
		if tag&0xc0 == 0 && tag&0x1f != ber.TagSequence && tag&0x1f != ber.TagSet {
			return false // constructed string (or other universal type)
		}
		if !isDERFramed(body, depth+1) {
			return false
		}
	}
	return true
}

func (s *SignedDataReader) readOID(structure string) (asn1.ObjectIdentifier, error) {
	der, err := s.readElement(structure, ber.ClassUniversal, ber.TagOID, maxSmallElement)
	if err != nil {
		return nil, err
	}
	str := cryptobyte.String(der)
	var oid asn1.ObjectIdentifier
	if !str.ReadASN1ObjectIdentifier(&oid) || !str.Empty() {
		return nil, malformed(structure, "bad OBJECT IDENTIFIER")
	}
	return oid, nil
}

// expectEnd expects the current level to end.
func (s *SignedDataReader) expectEnd(structure string) error {
	h, err := s.d.Next()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return berError(structure, err)
	}
	return malformed(structure, "unexpected %v after the last field", h)
}

func (s *SignedDataReader) readHeader(hashContent bool) error {
	h, err := s.d.Next()
	if err == io.EOF {
		return malformed("ContentInfo", "empty input")
	}
	if err != nil {
		return berError("ContentInfo", err)
	}
	if !h.Is(ber.ClassUniversal, ber.TagSequence) || !h.Constructed {
		return malformed("ContentInfo", "not a SEQUENCE (found %v)", h)
	}
	if err := s.d.Enter(); err != nil {
		return berError("ContentInfo", err)
	}
	ct, err := s.readOID("ContentInfo contentType")
	if err != nil {
		return err
	}
	if !ct.Equal(oidSignedData) {
		return unsupported("content type %s where signedData was expected", contentTypeName(ct))
	}
	if err := s.enter("ContentInfo content", ber.ClassContext, 0); err != nil {
		return err
	}
	if err := s.enter("SignedData", ber.ClassUniversal, ber.TagSequence); err != nil {
		return err
	}
	verDER, err := s.readElement("SignedData version", ber.ClassUniversal, ber.TagInteger, maxSmallElement)
	if err != nil {
		return err
	}
	var version int64
	if str := cryptobyte.String(verDER); !str.ReadASN1Integer(&version) || !str.Empty() {
		return malformed("SignedData version", "bad INTEGER")
	}
	switch version {
	case 1, 3, 4, 5:
	default:
		return malformed("SignedData version", "version %d (want 1, 3, 4 or 5)", version)
	}
	algsDER, err := s.readElement("SignedData digestAlgorithms", ber.ClassUniversal, ber.TagSet, maxDigestAlgsSize)
	if err != nil {
		return err
	}
	if s.sd.DigestAlgorithms, err = parseDigestAlgorithms(algsDER); err != nil {
		return err
	}
	if err := s.enter("EncapsulatedContentInfo", ber.ClassUniversal, ber.TagSequence); err != nil {
		return err
	}
	if s.sd.ContentType, err = s.readOID("eContentType"); err != nil {
		return err
	}
	h, err = s.d.Next()
	if err == io.EOF {
		s.sd.Detached = true
		return nil
	}
	if err != nil {
		return berError("EncapsulatedContentInfo", err)
	}
	if !h.Is(ber.ClassContext, 0) || !h.Constructed {
		return malformed("EncapsulatedContentInfo", "unexpected %v", h)
	}
	if err := s.d.Enter(); err != nil {
		return berError("eContent", err)
	}
	h, err = s.next("eContent")
	if err != nil {
		return err
	}
	if !h.Is(ber.ClassUniversal, ber.TagOctetString) {
		return unsupported("eContent encoded as %v, not an OCTET STRING", h)
	}
	r, err := s.d.StringReader()
	if err != nil {
		return berError("eContent", err)
	}
	s.content = &contentReader{s: s, r: r}
	if hashContent {
		s.dig = NewDigester(s.sd.DigestAlgorithms...)
	}
	return nil
}

// parseDigestAlgorithms decodes the digestAlgorithms SET and returns the
// recognised hashes.
func parseDigestAlgorithms(der []byte) ([]crypto.Hash, error) {
	str := cryptobyte.String(der)
	var set cryptobyte.String
	if !str.ReadASN1(&set, cbasn1.SET) || !str.Empty() {
		return nil, malformed("SignedData digestAlgorithms", "not a SET")
	}
	var hashes []crypto.Hash
	for n := 0; !set.Empty(); n++ {
		if n == maxDigestAlgorithms {
			return nil, malformed("SignedData digestAlgorithms", "more than %d algorithms", maxDigestAlgorithms)
		}
		oid, params, ok := readAlgorithm(&set)
		if !ok {
			return nil, malformed("SignedData digestAlgorithms", "bad AlgorithmIdentifier")
		}
		h := hashFromOID(oid)
		if h == 0 {
			continue
		}
		if !absentOrNULL(params) {
			return nil, malformed("SignedData digestAlgorithms", "%s with parameters", hashName(h))
		}
		if !slices.Contains(hashes, h) {
			hashes = append(hashes, h)
		}
	}
	return hashes, nil
}

// readAlgorithm reads an AlgorithmIdentifier; params is the parameters'
// whole DER element, nil when absent.
func readAlgorithm(s *cryptobyte.String) (oid asn1.ObjectIdentifier, params []byte, ok bool) {
	var alg cryptobyte.String
	if !s.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, false
	}
	if alg.Empty() {
		return oid, nil, true
	}
	var p cryptobyte.String
	var tag cbasn1.Tag
	if !alg.ReadAnyASN1Element(&p, &tag) || !alg.Empty() {
		return nil, nil, false
	}
	return oid, []byte(p), true
}

// absentOrNULL reports whether AlgorithmIdentifier parameters are absent or
// NULL, which RFC 4055 and RFC 5754 ask readers to treat alike.
func absentOrNULL(params []byte) bool {
	return params == nil || bytes.Equal(params, []byte{0x05, 0x00})
}

// contentReader streams eContent, hashing it as it goes.
type contentReader struct {
	s    *SignedDataReader
	r    io.Reader
	done bool
}

func (c *contentReader) Read(p []byte) (int, error) {
	if c.s.err != nil {
		return 0, c.s.err
	}
	if c.done {
		return 0, io.EOF
	}
	n, err := c.r.Read(p)
	if n > 0 && c.s.dig != nil {
		c.s.dig.Write(p[:n])
	}
	if err == io.EOF {
		c.done = true
		return n, io.EOF
	}
	if err != nil {
		c.s.err = berError("eContent", err)
		return n, c.s.err
	}
	return n, nil
}

// Content streams the eContent (nothing when the SignedData is detached).
// As it is read, it is hashed with every recognised algorithm of
// digestAlgorithms.
func (s *SignedDataReader) Content() io.Reader {
	if s.content == nil {
		return bytes.NewReader(nil)
	}
	return s.content
}

// Finish reads any content not yet read (hashing it), the certificates
// (skipping those that do not parse), skips the CRLs, parses the
// SignerInfos and checks that nothing follows the message. It returns the
// SignedData and the digests of the content under each recognised digest
// algorithm; the digests are nil for a detached SignedData.
func (s *SignedDataReader) Finish() (*SignedData, map[crypto.Hash][]byte, error) {
	if s.finished {
		return nil, nil, errors.New("cms: Finish called twice")
	}
	s.finished = true
	if s.err != nil {
		return nil, nil, s.err
	}
	if err := s.finish(); err != nil {
		s.err = err
		return nil, nil, err
	}
	var digests map[crypto.Hash][]byte
	if s.content != nil && s.dig != nil {
		digests = s.dig.Sums()
	}
	return s.sd, digests, nil
}

func (s *SignedDataReader) finish() error {
	if s.content != nil {
		if _, err := io.Copy(io.Discard, s.content); err != nil {
			return err
		}
		if err := s.expectEnd("eContent"); err != nil {
			return err
		}
		if err := s.expectEnd("EncapsulatedContentInfo"); err != nil {
			return err
		}
	}
	stage := 0
	for done := false; !done; {
		h, err := s.d.Next()
		if err == io.EOF {
			return malformed("SignedData", "signerInfos missing")
		}
		if err != nil {
			return berError("SignedData", err)
		}
		switch {
		case h.Is(ber.ClassContext, 0) && h.Constructed && stage < 1:
			stage = 1
			if err := s.readCertificates(); err != nil {
				return err
			}
		case h.Is(ber.ClassContext, 1) && h.Constructed && stage < 2:
			stage = 2
			if err := s.d.Skip(); err != nil {
				return berError("SignedData crls", err)
			}
		case h.Is(ber.ClassUniversal, ber.TagSet) && h.Constructed:
			if err := s.readSignerInfos(); err != nil {
				return err
			}
			done = true
		default:
			return malformed("SignedData", "unexpected %v", h)
		}
	}
	for _, level := range []string{"SignedData", "ContentInfo content", "ContentInfo"} {
		if err := s.expectEnd(level); err != nil {
			return err
		}
	}
	h, err := s.d.Next()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return berError("ContentInfo", err)
	}
	return malformed("ContentInfo", "trailing data after the message (%v)", h)
}

func (s *SignedDataReader) readCertificates() error {
	if err := s.d.Enter(); err != nil {
		return berError("SignedData certificates", err)
	}
	for n := 0; ; n++ {
		h, err := s.d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return berError("SignedData certificates", err)
		}
		if n == maxCertificates {
			return malformed("SignedData certificates", "more than %d certificates", maxCertificates)
		}
		if !h.Is(ber.ClassUniversal, ber.TagSequence) || !h.Constructed {
			// extendedCertificate, attribute certificates, other.
			if err := s.d.Skip(); err != nil {
				return berError("SignedData certificates", err)
			}
			s.sd.SkippedCertificates++
			continue
		}
		der, err := s.readDER(maxCertificateSize)
		if errors.Is(err, ber.ErrTooLarge) {
			return malformed("SignedData certificates", "certificate %d is larger than %d bytes", n, maxCertificateSize)
		}
		if err != nil {
			return berError("SignedData certificates", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			s.sd.SkippedCertificates++
			continue
		}
		s.sd.Certificates = append(s.sd.Certificates, cert)
	}
}

func (s *SignedDataReader) readSignerInfos() error {
	if err := s.d.Enter(); err != nil {
		return berError("SignedData signerInfos", err)
	}
	for n := 0; ; n++ {
		h, err := s.d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return berError("SignedData signerInfos", err)
		}
		if n == maxSigners {
			return malformed("SignedData signerInfos", "more than %d signers", maxSigners)
		}
		if !h.Is(ber.ClassUniversal, ber.TagSequence) || !h.Constructed {
			return malformed("SignedData signerInfos", "unexpected %v", h)
		}
		der, err := s.readDER(maxSignerInfoSize)
		if errors.Is(err, ber.ErrTooLarge) {
			return malformed("SignerInfo", "larger than %d bytes", maxSignerInfoSize)
		}
		if err != nil {
			return berError("SignerInfo", err)
		}
		si, err := parseSignerInfo(der)
		if err != nil {
			return err
		}
		s.sd.Signers = append(s.sd.Signers, si)
	}
}

// ParseSignedData parses a DER or BER ContentInfo holding a SignedData, for
// detached signatures and certs-only messages held in memory. When eContent
// is present it is returned (non-nil, possibly empty); callers then compute
// its digests themselves (NewDigester). Large opaque messages are better
// read with NewSignedDataReader.
func ParseSignedData(ber []byte) (*SignedData, []byte, error) {
	// A read buffer no larger than the message: small messages are the
	// common case here, and the decoder's default buffer is 64 KiB.
	size := min(max(len(ber), 16), 64<<10)
	r, err := newSignedDataReader(bufio.NewReaderSize(bytes.NewReader(ber), size), false)
	if err != nil {
		return nil, nil, err
	}
	var content []byte
	if !r.sd.Detached {
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r.content); err != nil {
			return nil, nil, err
		}
		content = buf.Bytes()
		if content == nil {
			content = []byte{}
		}
	}
	sd, _, err := r.Finish()
	if err != nil {
		return nil, nil, err
	}
	return sd, content, nil
}

// parseSignerInfo decodes one DER SignerInfo (RFC 5652 section 5.3).
func parseSignerInfo(der []byte) (*SignerInfo, error) {
	const st = "SignerInfo"
	s := cryptobyte.String(der)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed(st, "not a SEQUENCE")
	}
	si := &SignerInfo{}
	var version int64
	if !seq.ReadASN1Integer(&version) {
		return nil, malformed(st, "bad version")
	}
	switch {
	case seq.PeekASN1Tag(cbasn1.SEQUENCE):
		var ias cryptobyte.String
		seq.ReadASN1Element(&ias, cbasn1.SEQUENCE)
		if _, _, err := parseIssuerAndSerial(ias); err != nil {
			return nil, err
		}
		si.IssuerAndSerial = []byte(ias)
	case seq.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		if !seq.ReadASN1Bytes(&si.SubjectKeyID, cbasn1.Tag(0).ContextSpecific()) {
			return nil, malformed(st, "bad subjectKeyIdentifier")
		}
		if si.SubjectKeyID == nil {
			si.SubjectKeyID = []byte{}
		}
	default:
		return nil, malformed(st, "bad SignerIdentifier")
	}
	oid, params, ok := readAlgorithm(&seq)
	if !ok {
		return nil, malformed(st, "bad digestAlgorithm")
	}
	si.DigestOID, si.Hash = oid, hashFromOID(oid)
	if si.Hash != 0 && !absentOrNULL(params) {
		si.digestErr = malformed(st, "digest algorithm %s with parameters", hashName(si.Hash))
	}
	signedTag := cbasn1.Tag(0).Constructed().ContextSpecific()
	if seq.PeekASN1Tag(signedTag) {
		var raw, body cryptobyte.String
		if !seq.ReadASN1Element(&raw, signedTag) {
			return nil, malformed(st, "bad signedAttrs")
		}
		if len(raw) > maxSignedAttrsSize {
			return nil, malformed(st, "signed attributes larger than %d bytes", maxSignedAttrsSize)
		}
		si.RawSignedAttrs = []byte(raw)
		raw.ReadASN1(&body, signedTag)
		var err error
		if si.SignedAttrs, err = parseAttributeSet("SignerInfo signedAttrs", body); err != nil {
			return nil, err
		}
	}
	sigOID, sigParams, ok := readAlgorithm(&seq)
	if !ok {
		return nil, malformed(st, "bad signatureAlgorithm")
	}
	si.setSignatureAlgorithm(sigOID, sigParams)
	if !seq.ReadASN1Bytes(&si.Signature, cbasn1.OCTET_STRING) {
		return nil, malformed(st, "bad signature")
	}
	unsignedTag := cbasn1.Tag(1).Constructed().ContextSpecific()
	if seq.PeekASN1Tag(unsignedTag) {
		var body cryptobyte.String
		seq.ReadASN1(&body, unsignedTag)
		var err error
		if si.UnsignedAttrs, err = parseAttributeSet("SignerInfo unsignedAttrs", body); err != nil {
			return nil, err
		}
		for _, a := range si.UnsignedAttrs {
			if a.Type.Equal(oidTimeStampToken) {
				si.TimeStampToken = a.Values[0]
				break
			}
		}
	}
	if !seq.Empty() {
		return nil, malformed(st, "unexpected data after the last field")
	}
	if err := si.decodeSignedAttrs(); err != nil {
		return nil, err
	}
	return si, nil
}

// decodeSignedAttrs fills the fields derived from well-known signed
// attributes.
func (si *SignerInfo) decodeSignedAttrs() error {
	const st = "SignerInfo signedAttrs"
	if v, ok, err := findAttribute(si.SignedAttrs, oidContentType, "contentType"); err != nil {
		return err
	} else if ok {
		s := cryptobyte.String(v)
		if !s.ReadASN1ObjectIdentifier(&si.contentType) || !s.Empty() {
			return malformed(st, "contentType is not an OBJECT IDENTIFIER")
		}
	}
	if v, ok, err := findAttribute(si.SignedAttrs, oidMessageDigest, "messageDigest"); err != nil {
		return err
	} else if ok {
		s := cryptobyte.String(v)
		if !s.ReadASN1Bytes(&si.MessageDigest, cbasn1.OCTET_STRING) || !s.Empty() {
			return malformed(st, "messageDigest is not an OCTET STRING")
		}
		if si.MessageDigest == nil {
			si.MessageDigest = []byte{}
		}
	}
	if v, ok, err := findAttribute(si.SignedAttrs, oidSigningTime, "signingTime"); err != nil {
		return err
	} else if ok {
		t, err := parseSigningTime(v)
		if err != nil {
			return err
		}
		si.SigningTime = t
	}
	// The S/MIME attributes only inform the reply; an undecodable one is
	// ignored rather than failing a signature that is otherwise good.
	for _, a := range si.SignedAttrs {
		if len(a.Values) != 1 {
			continue
		}
		switch {
		case a.Type.Equal(oidSMIMECapabilities) && si.Capabilities == nil:
			if caps, err := parseCapabilities(a.Values[0]); err == nil {
				si.Capabilities = caps
			}
		case a.Type.Equal(oidEncryptionKeyPreference) && si.EncryptionKeyPreference == nil:
			if kp, err := parseKeyPreference(a.Values[0]); err == nil {
				si.EncryptionKeyPreference = kp
			}
		}
	}
	return nil
}

// rsaSigOIDs maps the PKCS #1 v1.5 signature OIDs to their hashes.
var rsaSigOIDs = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{oidMD5WithRSAEncryption, crypto.MD5},
	{oidSHA1WithRSAEncryption, crypto.SHA1},
	{oidSHA224WithRSAEncryption, crypto.SHA224},
	{oidSHA256WithRSAEncryption, crypto.SHA256},
	{oidSHA384WithRSAEncryption, crypto.SHA384},
	{oidSHA512WithRSAEncryption, crypto.SHA512},
}

// ecdsaSigOIDs maps the ECDSA signature OIDs to their hashes.
var ecdsaSigOIDs = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{oidECDSAWithSHA1, crypto.SHA1},
	{oidECDSAWithSHA224, crypto.SHA224},
	{oidECDSAWithSHA256, crypto.SHA256},
	{oidECDSAWithSHA384, crypto.SHA384},
	{oidECDSAWithSHA512, crypto.SHA512},
}

// setSignatureAlgorithm classifies the signatureAlgorithm field. A problem
// with it is kept for Verify rather than failing the whole message, whose
// other signers may be fine.
func (si *SignerInfo) setSignatureAlgorithm(oid asn1.ObjectIdentifier, params []byte) {
	const st = "SignerInfo signatureAlgorithm"
	si.SignatureAlgorithm = oid.String()
	switch {
	case oid.Equal(oidRSAEncryption):
		si.sigKind, si.SignatureAlgorithm = sigPKCS1v15, "rsa-pkcs1v15"
		if !absentOrNULL(params) {
			si.sigErr = malformed(st, "rsaEncryption with parameters")
		}
		return
	case oid.Equal(oidRSASSAPSS):
		si.sigKind, si.SignatureAlgorithm = sigPSS, "rsa-pss"
		p, err := parsePSSParams(params)
		if err != nil {
			si.sigErr = err
			return
		}
		si.pss, si.PSSHash, si.sigHash = p, p.hash, p.hash
		return
	case oid.Equal(oidECPublicKey):
		// Some senders name the key type instead of the signature
		// algorithm; the digest algorithm then says which hash.
		si.sigKind, si.SignatureAlgorithm = sigECDSA, "ecdsa"
		return
	}
	for _, e := range rsaSigOIDs {
		if e.oid.Equal(oid) {
			si.sigKind, si.SignatureAlgorithm, si.sigHash = sigPKCS1v15, "rsa-pkcs1v15", e.hash
			if !absentOrNULL(params) {
				si.sigErr = malformed(st, "%v with parameters", oid)
			}
			return
		}
	}
	for _, e := range ecdsaSigOIDs {
		if e.oid.Equal(oid) {
			si.sigKind, si.SignatureAlgorithm, si.sigHash = sigECDSA, "ecdsa", e.hash
			if !absentOrNULL(params) {
				si.sigErr = malformed(st, "%v with parameters", oid)
			}
			return
		}
	}
	si.sigKind = sigUnknown
	si.sigErr = unsupported("signature algorithm %v", oid)
}

// parsePSSParams decodes RSASSA-PSS-params (RFC 4055 section 3.1; the
// module uses explicit tags). Absent parameters mean all defaults.
func parsePSSParams(params []byte) (*pssParams, error) {
	const st = "RSASSA-PSS parameters"
	p := &pssParams{hash: crypto.SHA1, mgfHash: crypto.SHA1, saltLength: 20}
	if params == nil {
		return p, nil
	}
	s := cryptobyte.String(params)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, malformed(st, "not a SEQUENCE")
	}
	readHash := func(s *cryptobyte.String, what string) (crypto.Hash, error) {
		oid, hp, ok := readAlgorithm(s)
		if !ok || !s.Empty() {
			return 0, malformed(st, "bad %s", what)
		}
		h := hashFromOID(oid)
		if h == 0 {
			return 0, unsupported("RSASSA-PSS %s %v", what, oid)
		}
		if !absentOrNULL(hp) {
			return 0, malformed(st, "%s %s with parameters", what, hashName(h))
		}
		return h, nil
	}
	var f cryptobyte.String
	var present bool
	var err error
	if !seq.ReadOptionalASN1(&f, &present, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, malformed(st, "bad hashAlgorithm")
	}
	if present {
		if p.hash, err = readHash(&f, "hashAlgorithm"); err != nil {
			return nil, err
		}
	}
	if !seq.ReadOptionalASN1(&f, &present, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return nil, malformed(st, "bad maskGenAlgorithm")
	}
	if present {
		oid, mp, ok := readAlgorithm(&f)
		if !ok || !f.Empty() {
			return nil, malformed(st, "bad maskGenAlgorithm")
		}
		if !oid.Equal(oidMGF1) {
			return nil, unsupported("RSASSA-PSS mask generation function %v", oid)
		}
		if mp == nil {
			return nil, malformed(st, "MGF1 without a hash")
		}
		m := cryptobyte.String(mp)
		if p.mgfHash, err = readHash(&m, "MGF1 hash"); err != nil {
			return nil, err
		}
	}
	var salt, trailer int64
	if !seq.ReadOptionalASN1(&f, &present, cbasn1.Tag(2).Constructed().ContextSpecific()) {
		return nil, malformed(st, "bad saltLength")
	}
	if present {
		if !f.ReadASN1Integer(&salt) || !f.Empty() || salt < 0 || salt > 1<<16 {
			return nil, malformed(st, "bad saltLength")
		}
		p.saltLength = int(salt)
	}
	if !seq.ReadOptionalASN1(&f, &present, cbasn1.Tag(3).Constructed().ContextSpecific()) {
		return nil, malformed(st, "bad trailerField")
	}
	if present {
		if !f.ReadASN1Integer(&trailer) || !f.Empty() {
			return nil, malformed(st, "bad trailerField")
		}
		if trailer != 1 {
			return nil, unsupported("RSASSA-PSS trailer field %d", trailer)
		}
	}
	if !seq.Empty() {
		return nil, malformed(st, "unexpected data after the last field")
	}
	return p, nil
}
