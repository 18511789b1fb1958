package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/smimed/smimed/smime/internal/ber"
	"github.com/smimed/smimed/smime/internal/gcmstream"
)

// ContentCipher names a content-encryption algorithm.
type ContentCipher int

// The content-encryption algorithms. CBC modes produce EnvelopedData (RFC
// 5652 §6, RFC 3565); GCM modes produce AuthEnvelopedData (RFC 5083, RFC
// 5084). DES3CBC is read but never written.
const (
	AES128CBC ContentCipher = iota + 1
	AES192CBC
	AES256CBC
	AES128GCM
	AES256GCM
	DES3CBC // decrypt only
)

// cipherSpec describes one content-encryption algorithm.
type cipherSpec struct {
	oid      asn1.ObjectIdentifier
	name     string
	keyLen   int
	ivLen    int // CBC: the IV (one block); GCM: the nonce
	gcm      bool
	newBlock func(key []byte) (cipher.Block, error)
}

var cipherSpecs = map[ContentCipher]cipherSpec{
	AES128CBC: {oidEnvAES128CBC, "aes-128-cbc", 16, aes.BlockSize, false, aes.NewCipher},
	AES192CBC: {oidEnvAES192CBC, "aes-192-cbc", 24, aes.BlockSize, false, aes.NewCipher},
	AES256CBC: {oidEnvAES256CBC, "aes-256-cbc", 32, aes.BlockSize, false, aes.NewCipher},
	AES128GCM: {oidEnvAES128GCM, "aes-128-gcm", 16, gcmNonceLen, true, aes.NewCipher},
	AES256GCM: {oidEnvAES256GCM, "aes-256-gcm", 32, gcmNonceLen, true, aes.NewCipher},
	DES3CBC:   {oidEnvDES3CBC, "des-ede3-cbc", 24, des.BlockSize, false, des.NewTripleDESCipher},
}

// cipherByOID returns the content cipher named by oid, 0 when unknown.
func cipherByOID(oid asn1.ObjectIdentifier) ContentCipher {
	for c, s := range cipherSpecs {
		if s.oid.Equal(oid) {
			return c
		}
	}
	return 0
}

// String returns the OpenSSL-style name: "aes-256-cbc", "aes-128-gcm",
// "des-ede3-cbc", ...
func (c ContentCipher) String() string {
	if s, ok := cipherSpecs[c]; ok {
		return s.name
	}
	return fmt.Sprintf("ContentCipher(%d)", int(c))
}

// Authenticated reports whether the cipher authenticates the content (GCM),
// in which case messages are AuthEnvelopedData.
func (c ContentCipher) Authenticated() bool {
	return cipherSpecs[c].gcm
}

// EncryptOptions configure NewEncrypter.
type EncryptOptions struct {
	// Recipients get the content key; at least one.
	Recipients []Recipient
	// Cipher encrypts the content; AES256CBC when zero. DES3CBC is refused.
	Cipher ContentCipher
	// ContentType is the type of the plaintext; id-data when nil.
	ContentType asn1.ObjectIdentifier
	// Rand is the source of keys, IVs and padding; crypto/rand when nil.
	Rand io.Reader
}

// envSegmentSize is the size of the OCTET STRING segments of the encrypted
// content (the CBC code works in larger chunks, see cbcChunk).
const envSegmentSize = 16 << 10

// NewEncrypter writes ContentInfo{envelopedData} (CBC) or
// ContentInfo{authEnvelopedData} (GCM) to w: the recipient infos first, then
// the content streamed as a BER constructed [0] IMPLICIT OCTET STRING of
// segments; Close pads/finishes and writes the mac for GCM. Constant memory
// for any size.
//
// Every RSA recipient gets a KeyTransRecipientInfo, every EC recipient its
// own KeyAgreeRecipientInfo with a fresh ephemeral key; all share one random
// content key. Close does not close w.
func NewEncrypter(w io.Writer, opts EncryptOptions) (io.WriteCloser, error) {
	return newEncrypter(w, opts, encryptHooks{})
}

// encryptHooks let tests produce encodings the options cannot ask for.
type encryptHooks struct {
	// mgfHash replaces the MGF1 hash of OAEP recipients.
	mgfHash crypto.Hash
	// ukm is sent as user keying material to EC recipients.
	ukm []byte
}

func newEncrypter(w io.Writer, opts EncryptOptions, hooks encryptHooks) (io.WriteCloser, error) {
	if opts.Cipher == 0 {
		opts.Cipher = AES256CBC
	}
	if opts.Cipher == DES3CBC {
		return nil, unsupported("%s is accepted for decryption only", opts.Cipher)
	}
	spec, ok := cipherSpecs[opts.Cipher]
	if !ok {
		return nil, unsupported("content cipher %v", opts.Cipher)
	}
	if len(opts.Recipients) == 0 {
		return nil, errors.New("cms: no recipients")
	}
	contentType := opts.ContentType
	if contentType == nil {
		contentType = oidData
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}

	cek := make([]byte, spec.keyLen)
	iv := make([]byte, spec.ivLen)
	if _, err := io.ReadFull(rnd, cek); err != nil {
		return nil, fmt.Errorf("cms: reading random bytes: %w", err)
	}
	defer clear(cek)
	if _, err := io.ReadFull(rnd, iv); err != nil {
		return nil, fmt.Errorf("cms: reading random bytes: %w", err)
	}

	ris, version, err := buildRecipientInfos(rnd, opts.Recipients, cek, hooks)
	if err != nil {
		return nil, err
	}
	if spec.gcm {
		version = 0 // AuthEnvelopedData is always version 0 (RFC 5083 §2.1).
	}

	var aad []byte
	if spec.gcm && !contentType.Equal(oidData) {
		// Name the content type in an authenticated attribute so that
		// it is covered by the tag.
		aad, err = contentTypeAuthAttrs(contentType)
		if err != nil {
			return nil, err
		}
	}

	// Everything up to the encrypted content.
	var hdr cryptobyte.Builder
	hdr.AddASN1Int64(int64(version))
	hdr.AddBytes(ris)
	head, err := hdr.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cms: encoding EnvelopedData: %w", err)
	}
	outer := oidEnvelopedData
	if spec.gcm {
		outer = oidAuthEnvelopedData
	}
	alg, err := contentAlgorithm(spec, iv)
	if err != nil {
		return nil, err
	}
	ctDER, err := asn1.Marshal(contentType)
	if err != nil {
		return nil, fmt.Errorf("cms: content type: %w", err)
	}
	outerDER, _ := asn1.Marshal(outer)

	enc := ber.NewEncoder(w)
	enc.Begin(ber.ClassUniversal, ber.TagSequence) // ContentInfo
	enc.Raw(outerDER)
	enc.Begin(ber.ClassContext, 0) // [0] EXPLICIT content
	enc.Begin(ber.ClassUniversal, ber.TagSequence)
	enc.Raw(head)
	enc.Begin(ber.ClassUniversal, ber.TagSequence) // EncryptedContentInfo
	enc.Raw(ctDER)
	enc.Raw(alg)
	sw, err := enc.StringWriter(ber.ClassContext, 0, envSegmentSize)
	if err != nil {
		return nil, fmt.Errorf("cms: writing the message: %w", err)
	}

	ew := &envelopeWriter{enc: enc, sw: sw}
	if spec.gcm {
		ew.gcm, err = gcmstream.NewSealer(cek, iv, gcmTagLen, aad, sw)
		if err != nil {
			return nil, fmt.Errorf("cms: content cipher: %w", err)
		}
		ew.content = ew.gcm
		if aad != nil {
			ew.authAttrs = withTag(aad, authAttrsTag)
		}
		return ew, nil
	}
	block, err := spec.newBlock(cek)
	if err != nil {
		return nil, fmt.Errorf("cms: content cipher: %w", err)
	}
	ew.content = newCBCWriter(cipher.NewCBCEncrypter(block, iv), sw)
	return ew, nil
}

// buildRecipientInfos encrypts cek to every recipient and returns the DER of
// the RecipientInfos SET and the EnvelopedData version it implies (RFC 5652
// §6.1: 0 when every RecipientInfo is a version 0 ktri, otherwise 2).
func buildRecipientInfos(rnd io.Reader, recipients []Recipient, cek []byte, hooks encryptHooks) ([]byte, int, error) {
	version := 0
	var infos [][]byte
	for i, r := range recipients {
		if r.Certificate == nil {
			return nil, 0, fmt.Errorf("cms: recipient %d has no certificate", i)
		}
		if r.SubjectKeyID && len(r.Certificate.SubjectKeyId) == 0 {
			return nil, 0, fmt.Errorf("cms: certificate of %s has no subject key identifier", r.Certificate.Subject)
		}
		switch pub := r.Certificate.PublicKey.(type) {
		case *rsa.PublicKey:
			o := ktriOptions{oaep: r.Padding == OAEP, hash: r.OAEPHash, label: r.OAEPLabel, ski: r.SubjectKeyID}
			switch r.Padding {
			case PKCS1v15, OAEP:
			default:
				return nil, 0, fmt.Errorf("cms: unknown RSA padding %v", r.Padding)
			}
			if o.oaep {
				if o.hash == 0 {
					o.hash = crypto.SHA256
				}
				if _, ok := envHashOID(o.hash); !ok || !o.hash.Available() {
					return nil, 0, unsupported("OAEP hash %v", o.hash)
				}
				o.mgfHash = o.hash
				if hooks.mgfHash != 0 {
					o.mgfHash = hooks.mgfHash
				}
			}
			der, v, err := buildKTRI(rnd, r, pub, cek, o)
			if err != nil {
				return nil, 0, err
			}
			if v != 0 {
				version = 2
			}
			infos = append(infos, der)
		case *ecdsa.PublicKey:
			h := r.KDFHash
			if h == 0 {
				h = crypto.SHA256
			}
			der, err := buildKARI(rnd, r, pub, cek, h, hooks.ukm)
			if err != nil {
				return nil, 0, err
			}
			version = 2
			infos = append(infos, der)
		default:
			return nil, 0, unsupported("recipient key type %T (%s)", pub, r.Certificate.Subject)
		}
	}
	// DER orders the members of a SET OF by their encodings.
	slices.SortFunc(infos, bytes.Compare)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		for _, ri := range infos {
			b.AddBytes(ri)
		}
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, 0, fmt.Errorf("cms: encoding RecipientInfos: %w", err)
	}
	return der, version, nil
}

// contentAlgorithm encodes the ContentEncryptionAlgorithmIdentifier: the IV
// as an OCTET STRING for CBC (RFC 3565 §4.1), GCMParameters for GCM (RFC
// 5084 §3.2).
func contentAlgorithm(spec cipherSpec, iv []byte) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(spec.oid)
		if !spec.gcm {
			b.AddASN1OctetString(iv)
			return
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(iv)
			if gcmTagLen != gcmDefaultTagLen {
				b.AddASN1Int64(gcmTagLen)
			}
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cms: encoding the content-encryption algorithm: %w", err)
	}
	return der, nil
}

// envelopeWriter is what NewEncrypter returns.
type envelopeWriter struct {
	enc       *ber.Encoder
	sw        io.WriteCloser    // the [0] IMPLICIT OCTET STRING segments
	content   io.WriteCloser    // encrypts into sw
	gcm       *gcmstream.Sealer // non-nil for AuthEnvelopedData
	authAttrs []byte
	closed    bool
	err       error
}

func (w *envelopeWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("cms: write after Close")
	}
	n, err := w.content.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Close finishes the content (padding, or the GCM tag) and writes the rest
// of the structure.
func (w *envelopeWriter) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	if err := w.content.Close(); err != nil {
		w.err = err
		return err
	}
	if err := w.sw.Close(); err != nil {
		w.err = err
		return err
	}
	w.enc.End() // EncryptedContentInfo
	if w.gcm != nil {
		if w.authAttrs != nil {
			w.enc.Raw(w.authAttrs)
		}
		tag := w.gcm.Tag()
		mac := ber.AppendHeader(nil, ber.ClassUniversal, ber.TagOctetString, false, int64(len(tag)))
		w.enc.Raw(append(mac, tag...))
	}
	w.enc.End()                         // EnvelopedData / AuthEnvelopedData
	w.enc.End()                         // [0]
	if err := w.enc.End(); err != nil { // ContentInfo
		w.err = fmt.Errorf("cms: writing the message: %w", err)
		return w.err
	}
	return nil
}

// EnvelopedReader parses EnvelopedData or AuthEnvelopedData from a stream.
type EnvelopedReader struct {
	d           *ber.Decoder
	auth        bool
	entries     []recipientEntry
	contentType asn1.ObjectIdentifier
	cipher      ContentCipher
	cipherOID   asn1.ObjectIdentifier
	iv          []byte
	tagLen      int
	// paramErr is set when the content-encryption parameters are not
	// usable (reported by Decrypt).
	paramErr   error
	hasContent bool
	used       bool
}

// Limits on the parts of a message read into memory.
const (
	maxRecipientInfos = 4 << 20
	maxAlgorithm      = 4 << 10
	maxAuthAttrs      = 64 << 10
)

// berErr turns an error of the BER decoder into one of this package's.
func berErr(structure string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnsupported), errors.Is(err, ErrDecryption):
		return err
	case errors.Is(err, ber.ErrSyntax), errors.Is(err, ber.ErrTooLarge):
		return malformed(structure, "%v", err)
	case errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
		return malformed(structure, "message truncated")
	}
	return fmt.Errorf("cms: reading %s: %w", structure, err)
}

// envDecoder wraps the BER decoder with CMS error reporting.
type envDecoder struct{ d *ber.Decoder }

// expect reads the next element, which must have the given class, tag and
// form.
func (p envDecoder) expect(structure string, class, tag int, constructed bool) (ber.Header, error) {
	h, err := p.d.Next()
	if err == io.EOF {
		return h, malformed(structure, "missing")
	}
	if err != nil {
		return h, berErr(structure, err)
	}
	if !h.Is(class, tag) || h.Constructed != constructed {
		return h, malformed(structure, "unexpected %v", h)
	}
	return h, nil
}

// enter reads the next element, which must be constructed with the given
// class and tag, and descends into it.
func (p envDecoder) enter(structure string, class, tag int) error {
	if _, err := p.expect(structure, class, tag, true); err != nil {
		return err
	}
	return berErr(structure, p.d.Enter())
}

// oid reads an OBJECT IDENTIFIER.
func (p envDecoder) oid(structure string) (asn1.ObjectIdentifier, error) {
	if _, err := p.expect(structure, ber.ClassUniversal, ber.TagOID, false); err != nil {
		return nil, err
	}
	der, err := p.d.ReadDER(256)
	if err != nil {
		return nil, berErr(structure, err)
	}
	var oid asn1.ObjectIdentifier
	s := cryptobyte.String(der)
	if !s.ReadASN1ObjectIdentifier(&oid) {
		return nil, malformed(structure, "bad OBJECT IDENTIFIER")
	}
	return oid, nil
}

// end expects the end of the current constructed element.
func (p envDecoder) end(structure string) error {
	h, err := p.d.Next()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return berErr(structure, err)
	}
	return malformed(structure, "unexpected %v", h)
}

// NewEnvelopedReader reads the ContentInfo up to the start of the encrypted
// content (originatorInfo skipped, recipientInfos parsed, content-encryption
// algorithm and params parsed). Input may be BER (indefinite lengths,
// segmented strings) or DER.
func NewEnvelopedReader(r io.Reader) (*EnvelopedReader, error) {
	p := envDecoder{ber.NewDecoder(r)}
	e := &EnvelopedReader{d: p.d}
	if err := p.enter("ContentInfo", ber.ClassUniversal, ber.TagSequence); err != nil {
		return nil, err
	}
	ct, err := p.oid("ContentInfo contentType")
	if err != nil {
		return nil, err
	}
	structure := "EnvelopedData"
	switch {
	case ct.Equal(oidEnvelopedData):
	case ct.Equal(oidAuthEnvelopedData):
		e.auth = true
		structure = "AuthEnvelopedData"
	default:
		return nil, unsupported("content type %v is not EnvelopedData or AuthEnvelopedData", ct)
	}
	if err := p.enter("ContentInfo content", ber.ClassContext, 0); err != nil {
		return nil, err
	}
	if err := p.enter(structure, ber.ClassUniversal, ber.TagSequence); err != nil {
		return nil, err
	}
	if _, err := p.expect(structure+" version", ber.ClassUniversal, ber.TagInteger, false); err != nil {
		return nil, err
	}
	vder, err := p.d.ReadDER(16)
	if err != nil {
		return nil, berErr(structure+" version", err)
	}
	var version int64
	if vs := cryptobyte.String(vder); !vs.ReadASN1Integer(&version) || version < 0 || version > 5 {
		return nil, malformed(structure, "bad version")
	}

	h, err := p.d.Next()
	if err != nil {
		return nil, berErr(structure, err)
	}
	if h.Is(ber.ClassContext, 0) && h.Constructed {
		// originatorInfo: certificates and CRLs of the originator, only
		// needed for static-static key agreement, which is not supported.
		if err := p.d.Skip(); err != nil {
			return nil, berErr("OriginatorInfo", err)
		}
		if h, err = p.d.Next(); err != nil {
			return nil, berErr(structure, err)
		}
	}
	if !h.Is(ber.ClassUniversal, ber.TagSet) || !h.Constructed {
		return nil, malformed(structure, "expected RecipientInfos, found %v", h)
	}
	risDER, err := p.d.ReadDER(maxRecipientInfos)
	if err != nil {
		return nil, berErr("RecipientInfos", err)
	}
	if e.entries, err = parseRecipientInfos(risDER); err != nil {
		return nil, err
	}

	eci := "EncryptedContentInfo"
	if err := p.enter(eci, ber.ClassUniversal, ber.TagSequence); err != nil {
		return nil, err
	}
	if e.contentType, err = p.oid(eci + " contentType"); err != nil {
		return nil, err
	}
	if _, err := p.expect(eci+" contentEncryptionAlgorithm", ber.ClassUniversal, ber.TagSequence, true); err != nil {
		return nil, err
	}
	algDER, err := p.d.ReadDER(maxAlgorithm)
	if err != nil {
		return nil, berErr(eci+" contentEncryptionAlgorithm", err)
	}
	if err := e.parseContentAlgorithm(algDER); err != nil {
		return nil, err
	}
	h, err = p.d.Next()
	switch {
	case err == io.EOF:
		// encryptedContent is absent: the ciphertext travels elsewhere.
	case err != nil:
		return nil, berErr(eci, err)
	case !h.Is(ber.ClassContext, 0):
		return nil, malformed(eci, "expected encryptedContent, found %v", h)
	default:
		e.hasContent = true
	}
	return e, nil
}

// parseContentAlgorithm parses the ContentEncryptionAlgorithmIdentifier.
func (e *EnvelopedReader) parseContentAlgorithm(der []byte) error {
	const st = "contentEncryptionAlgorithm"
	s := cryptobyte.String(der)
	oid, params, ok := parseAlgorithmIdentifier(&s)
	if !ok || !s.Empty() {
		return malformed(st, "bad AlgorithmIdentifier")
	}
	e.cipherOID = oid
	c := cipherByOID(oid)
	if c == 0 {
		return nil
	}
	spec := cipherSpecs[c]
	if spec.gcm != e.auth {
		if e.auth {
			e.paramErr = unsupported("%s in AuthEnvelopedData (needs an authenticated cipher)", spec.name)
		} else {
			e.paramErr = unsupported("%s in EnvelopedData (authenticated ciphers need AuthEnvelopedData)", spec.name)
		}
		e.cipher = c
		return nil
	}
	ps := cryptobyte.String(params)
	if !spec.gcm {
		var iv cryptobyte.String
		if !ps.ReadASN1(&iv, cbasn1.OCTET_STRING) || !ps.Empty() || len(iv) != spec.ivLen {
			return malformed(st, "%s parameters must be an IV of %d bytes", spec.name, spec.ivLen)
		}
		e.iv = append([]byte(nil), iv...)
		e.cipher = c
		return nil
	}
	var seq, nonce cryptobyte.String
	if !ps.ReadASN1(&seq, cbasn1.SEQUENCE) || !ps.Empty() || !seq.ReadASN1(&nonce, cbasn1.OCTET_STRING) {
		return malformed(st, "bad GCMParameters")
	}
	tagLen := int64(gcmDefaultTagLen)
	if !seq.Empty() {
		if !seq.ReadASN1Integer(&tagLen) || !seq.Empty() {
			return malformed(st, "bad GCMParameters")
		}
	}
	switch {
	case tagLen == 4 || tagLen == 8:
		e.paramErr = unsupported("GCM tag of %d bytes", tagLen)
	case tagLen < 12 || tagLen > 16:
		return malformed(st, "GCM tag length %d", tagLen)
	case len(nonce) != gcmNonceLen:
		e.paramErr = unsupported("GCM nonce of %d bytes", len(nonce))
	}
	e.iv = append([]byte(nil), nonce...)
	e.tagLen = int(tagLen)
	e.cipher = c
	return nil
}

// Recipients returns the recipients named in the message, in message order.
// A KeyAgreeRecipientInfo naming several recipients appears once for each.
func (e *EnvelopedReader) Recipients() []RecipientInfo {
	out := make([]RecipientInfo, len(e.entries))
	for i, ent := range e.entries {
		out[i] = ent.info
		out[i].IssuerAndSerial = bytes.Clone(ent.info.IssuerAndSerial)
		out[i].SubjectKeyID = bytes.Clone(ent.info.SubjectKeyID)
	}
	return out
}

// Cipher returns the content-encryption algorithm, 0 when unrecognised
// (then Decrypt returns ErrUnsupported naming the OID).
func (e *EnvelopedReader) Cipher() ContentCipher { return e.cipher }

// ContentType returns the type of the encrypted content (id-data for a MIME
// entity).
func (e *EnvelopedReader) ContentType() asn1.ObjectIdentifier { return e.contentType }

// DecryptOptions configure Decrypt.
type DecryptOptions struct {
	// SpoolDir holds the ciphertext of authenticated (GCM) messages while
	// the tag is checked, so that no plaintext is released before
	// authentication; os.TempDir() when empty. Only ciphertext is written
	// there (mode 0600), removed on Close.
	SpoolDir string
}

// Decrypt finds the RecipientInfo addressed to cert (ErrNoRecipient if
// none), unwraps the content key with key (crypto.Decrypter for RSA — called
// with nil opts for PKCS #1 v1.5 and *rsa.OAEPOptions{Hash, MGFHash, Label}
// for OAEP; KeyAgreer or *ecdsa.PrivateKey for EC), and returns the
// plaintext.
//
// CBC: streamed, padding checked at the end (ErrDecryption). GCM: ciphertext
// spooled, tag verified against authAttrs (AAD = DER of authAttrs with SET
// tag, if present) and mac, then the plaintext streamed from the spool.
//
// Exactly one private-key operation per call, and none when the message
// cannot be decrypted anyway (unknown cipher, no matching recipient). A key
// that does not belong to cert yields ErrDecryption before any private-key
// operation. For RSA PKCS #1 v1.5 a failed unwrap continues with a random
// key so that the failure surfaces as ErrDecryption at the padding or tag
// check (Bleichenbacher/MMA countermeasure, RFC 3218); a Decrypter must
// report bad padding with an error wrapping rsa.ErrDecryption, other errors
// (cancelled PIN, removed token) are returned as they are. Note that CBC has
// no integrity: a wrong content key is caught by the padding check only with
// high probability, not certainty.
//
// The returned ReadCloser's Close removes the spool; Read after the end of
// the content returns io.EOF only after the trailing structure (mac,
// unauthAttrs, closing tags) parsed fine. Decrypt may be called once.
func (e *EnvelopedReader) Decrypt(key crypto.PrivateKey, cert *x509.Certificate, opts DecryptOptions) (io.ReadCloser, error) {
	if e.used {
		return nil, errors.New("cms: Decrypt called twice")
	}
	e.used = true
	if e.cipher == 0 {
		return nil, unsupported("content-encryption algorithm %v", e.cipherOID)
	}
	if e.paramErr != nil {
		return nil, e.paramErr
	}
	if !e.hasContent {
		return nil, unsupported("detached encrypted content")
	}
	if cert == nil {
		return nil, fmt.Errorf("%w: no certificate given", ErrNoRecipient)
	}
	var ent *recipientEntry
	for i := range e.entries {
		if e.entries[i].info.Matches(cert) {
			if ent == nil || (ent.unusable != nil && e.entries[i].unusable == nil) {
				ent = &e.entries[i]
			}
		}
	}
	if ent == nil {
		return nil, fmt.Errorf("%w: none of %d recipients is %s (serial %x)", ErrNoRecipient, len(e.entries), cert.Subject, cert.SerialNumber)
	}
	if ent.unusable != nil {
		return nil, ent.unusable
	}
	spec := cipherSpecs[e.cipher]

	var spool *os.File
	if spec.gcm {
		// Create the spool before the private-key operation, so that an
		// unwritable spool directory costs no PIN prompt.
		var err error
		if spool, err = createSpool(opts.SpoolDir); err != nil {
			return nil, err
		}
	}
	cek, err := e.unwrapKey(ent, key, cert, spec.keyLen)
	if err != nil {
		closeSpool(spool)
		return nil, err
	}
	defer clear(cek)

	// The encryptedContent element is still pending in the decoder.
	sr, err := e.d.StringReader()
	if err != nil {
		closeSpool(spool)
		return nil, berErr("encryptedContent", err)
	}
	if spec.gcm {
		return e.decryptGCM(cek, sr, spool)
	}
	block, err := spec.newBlock(cek)
	if err != nil {
		return nil, fmt.Errorf("cms: content cipher: %w", err)
	}
	return newCBCReader(cipher.NewCBCDecrypter(block, e.iv), sr, e.finishEnveloped), nil
}

// finishEnveloped parses what follows the encrypted content of an
// EnvelopedData: the end of EncryptedContentInfo, optional
// unprotectedAttrs, and the closing of every enclosing element.
func (e *EnvelopedReader) finishEnveloped() error {
	p := envDecoder{e.d}
	if err := p.end("EncryptedContentInfo"); err != nil {
		return err
	}
	h, err := e.d.Next()
	switch {
	case err == io.EOF:
		return e.closeOuter()
	case err != nil:
		return berErr("EnvelopedData", err)
	case !h.Is(ber.ClassContext, 1) || !h.Constructed:
		return malformed("EnvelopedData", "unexpected %v after EncryptedContentInfo", h)
	}
	// unprotectedAttrs are not protected by anything; they are skipped.
	if err := e.d.Skip(); err != nil {
		return berErr("unprotectedAttrs", err)
	}
	if err := p.end("EnvelopedData"); err != nil {
		return err
	}
	return e.closeOuter()
}

// closeOuter parses the end of the [0] content and of the ContentInfo, and
// checks that nothing follows.
func (e *EnvelopedReader) closeOuter() error {
	p := envDecoder{e.d}
	if err := p.end("ContentInfo content"); err != nil {
		return err
	}
	if err := p.end("ContentInfo"); err != nil {
		return err
	}
	h, err := e.d.Next()
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return berErr("ContentInfo", err)
	}
	return malformed("ContentInfo", "trailing data (%v) after the message", h)
}

// unwrapKey checks that key fits the recipient and recovers the content key
// with one private-key operation.
func (e *EnvelopedReader) unwrapKey(ent *recipientEntry, key crypto.PrivateKey, cert *x509.Certificate, keyLen int) ([]byte, error) {
	switch {
	case ent.ktri != nil:
		if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
			return nil, fmt.Errorf("%w: key transport needs an RSA certificate, have %T", ErrNoRecipient, cert.PublicKey)
		}
		dec, ok := key.(crypto.Decrypter)
		if !ok {
			return nil, fmt.Errorf("%w: an RSA recipient needs a crypto.Decrypter, have %T", ErrDecryption, key)
		}
		if !publicKeyMatches(dec.Public(), cert.PublicKey) {
			return nil, fmt.Errorf("%w: the private key does not belong to the certificate", ErrDecryption)
		}
		return unwrapKTRI(ent, dec, keyLen, rand.Reader)
	case ent.kari != nil:
		var ka KeyAgreer
		switch k := key.(type) {
		case KeyAgreer:
			ka = k
		case *ecdsa.PrivateKey:
			ek, err := k.ECDH()
			if err != nil {
				return nil, fmt.Errorf("cms: EC private key: %w", err)
			}
			ka = ek
		default:
			return nil, fmt.Errorf("%w: an EC recipient needs a KeyAgreer, have %T", ErrDecryption, key)
		}
		if !publicKeyMatches(ka.Public(), cert.PublicKey) {
			return nil, fmt.Errorf("%w: the private key does not belong to the certificate", ErrDecryption)
		}
		return unwrapKARI(ent, ka, cert, keyLen)
	}
	return nil, unsupported("recipient kind %s", ent.info.Kind)
}

// publicKeyMatches reports whether a private key's public half is the
// certificate's key. A key that cannot say (Public returns nil or an unknown
// type) is given the benefit of the doubt.
func publicKeyMatches(pub, certPub crypto.PublicKey) bool {
	if pub == nil {
		return true
	}
	switch p := pub.(type) {
	case *ecdh.PublicKey:
		cp, ok := certPub.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		ce, err := cp.ECDH()
		return err == nil && p.Equal(ce)
	case interface{ Equal(crypto.PublicKey) bool }:
		return p.Equal(certPub)
	}
	return true
}
