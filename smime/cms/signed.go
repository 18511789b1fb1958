package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"github.com/smimed/smimed/smime/internal/ber"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// SignOptions configures one signer.
type SignOptions struct {
	// Signer is the private-key handle. Only Public and Sign are called,
	// and Sign exactly once per message.
	Signer crypto.Signer
	// Certificate is the signer's certificate; its public key must match
	// Signer.Public().
	Certificate *x509.Certificate
	// Chain holds intermediates, included after the certificate.
	Chain []*x509.Certificate
	// Hash is crypto.SHA256 (the default when 0), SHA384 or SHA512;
	// anything else is ErrUnsupported.
	Hash crypto.Hash
	// PSS selects RSASSA-PSS (salt as long as the hash, MGF1 with the same
	// hash) for RSA keys. It is ignored for EC keys.
	PSS bool
	// SigningTime goes into the signingTime attribute; time.Now() when zero.
	SigningTime time.Time
	// Attributes are extra signed attributes, e.g. from
	// CapabilitiesAttribute and EncryptionKeyPreferenceAttribute. They may
	// not repeat contentType, messageDigest or signingTime.
	Attributes []Attribute
	// SubjectKeyID identifies the signer by its certificate's
	// subjectKeyIdentifier (a version 3 SignerInfo) instead of by
	// issuerAndSerialNumber (version 1). The certificate must carry the
	// extension.
	SubjectKeyID bool
	// Rand is the randomness for PSS and ECDSA; crypto/rand when nil.
	Rand io.Reader
	// TimeStamp, when not nil, is called once with the signature value
	// after signing; it returns an RFC 3161 time-stamp token (the DER
	// ContentInfo a TSA answers with) over that value, which goes into the
	// SignerInfo as the unsigned attribute id-aa-signatureTimeStampToken.
	// A token that does not parse as one, or whose message imprint is not
	// the signature value's hash, fails signing, as does an error from
	// TimeStamp. The TSA's signature and certificate are not checked here.
	TimeStamp func(signature []byte) ([]byte, error)
}

// sigKind is a signature scheme.
type sigKind int

const (
	sigUnknown sigKind = iota
	sigPKCS1v15
	sigPSS
	sigECDSA
)

// signerCore holds what is needed to make one SignerInfo.
type signerCore struct {
	signer      crypto.Signer
	cert        *x509.Certificate
	chain       []*x509.Certificate
	hash        crypto.Hash
	kind        sigKind
	sigAlg      []byte // DER AlgorithmIdentifier
	sid         []byte // DER SignerIdentifier
	version     int64  // SignerInfo and SignedData version: 1 or 3
	signingTime time.Time
	extra       []Attribute
	rand        io.Reader
	timeStamp   func(signature []byte) ([]byte, error)
	used        bool
}

// errSignerUsed is returned when a signer is asked for a second signature.
var errSignerUsed = errors.New("cms: signer already used for one message")

func newSignerCore(opts SignOptions) (*signerCore, error) {
	if opts.Signer == nil {
		return nil, errors.New("cms: SignOptions.Signer is nil")
	}
	if opts.Certificate == nil {
		return nil, errors.New("cms: SignOptions.Certificate is nil")
	}
	c := &signerCore{
		signer:      opts.Signer,
		cert:        opts.Certificate,
		chain:       opts.Chain,
		hash:        opts.Hash,
		signingTime: opts.SigningTime,
		rand:        opts.Rand,
		timeStamp:   opts.TimeStamp,
		version:     1,
	}
	for i, ch := range c.chain {
		if ch == nil {
			return nil, fmt.Errorf("cms: SignOptions.Chain[%d] is nil", i)
		}
	}
	if c.hash == 0 {
		c.hash = crypto.SHA256
	}
	switch c.hash {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return nil, unsupported("signing with digest %s (use SHA-256, SHA-384 or SHA-512)", hashName(c.hash))
	}
	if c.signingTime.IsZero() {
		c.signingTime = time.Now()
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}

	pub := opts.Signer.Public()
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !eq.Equal(opts.Certificate.PublicKey) {
		return nil, errors.New("cms: the signer's public key does not match the certificate")
	}
	var err error
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if opts.PSS {
			c.kind = sigPSS
			c.sigAlg, err = marshalPSSAlgorithm(c.hash)
		} else {
			c.kind = sigPKCS1v15
			c.sigAlg = mustDER(func(b *cryptobyte.Builder) { addAlgorithmNULL(b, oidRSAEncryption) })
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, unsupported("signing with an EC key on curve %s", k.Curve.Params().Name)
		}
		c.kind = sigECDSA
		c.sigAlg = mustDER(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(ecdsaOID(c.hash))
			})
		})
	default:
		return nil, unsupported("signing with a %T key", pub)
	}
	if err != nil {
		return nil, err
	}

	if opts.SubjectKeyID {
		if len(opts.Certificate.SubjectKeyId) == 0 {
			return nil, errors.New("cms: the signer's certificate has no subjectKeyIdentifier extension")
		}
		c.sid = mustDER(func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddBytes(opts.Certificate.SubjectKeyId)
			})
		})
		c.version = 3
	} else {
		c.sid, err = marshalIssuerAndSerial(opts.Certificate)
		if err != nil {
			return nil, err
		}
	}

	seen := map[string]bool{}
	for _, a := range opts.Attributes {
		for _, reserved := range []struct {
			oid  asn1.ObjectIdentifier
			name string
		}{{oidContentType, "contentType"}, {oidMessageDigest, "messageDigest"}, {oidSigningTime, "signingTime"}} {
			if a.Type.Equal(reserved.oid) {
				return nil, fmt.Errorf("cms: extra attribute %s is set by the signer itself", reserved.name)
			}
		}
		if seen[a.Type.String()] {
			return nil, fmt.Errorf("cms: extra attribute %v given twice", a.Type)
		}
		seen[a.Type.String()] = true
		if _, err := marshalAttribute(a); err != nil {
			return nil, err
		}
		vals := make([][]byte, len(a.Values))
		for i, v := range a.Values {
			vals[i] = bytes.Clone(v)
		}
		c.extra = append(c.extra, Attribute{Type: slices.Clone(a.Type), Values: vals})
	}
	return c, nil
}

// ecdsaOID returns ecdsa-with-SHAnnn for h.
func ecdsaOID(h crypto.Hash) asn1.ObjectIdentifier {
	switch h {
	case crypto.SHA384:
		return oidECDSAWithSHA384
	case crypto.SHA512:
		return oidECDSAWithSHA512
	}
	return oidECDSAWithSHA256
}

// marshalPSSAlgorithm encodes id-RSASSA-PSS with parameters written out in
// full (RFC 4055 section 3.1): the hash, MGF1 with the same hash, and a salt
// as long as the hash; the trailer field keeps its default.
func marshalPSSAlgorithm(h crypto.Hash) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidRSASSAPSS)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				addAlgorithmNULL(b, hashOID(h))
			})
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidMGF1)
					addAlgorithmNULL(b, hashOID(h))
				})
			})
			b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1Int64(int64(h.Size()))
			})
		})
	})
	return b.Bytes()
}

// digestAlgorithmDER is AlgorithmIdentifier { hash } with absent
// parameters (RFC 5754 section 2).
func digestAlgorithmDER(h crypto.Hash) []byte {
	return mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(hashOID(h))
		})
	})
}

// signerInfo signs the signed attributes built around contentDigest and
// returns the DER SignerInfo.
func (c *signerCore) signerInfo(contentDigest []byte) ([]byte, error) {
	if c.used {
		return nil, errSignerUsed
	}
	c.used = true

	ctVal, err := marshalOIDValue(oidData)
	if err != nil {
		return nil, err
	}
	timeVal, err := marshalSigningTime(c.signingTime)
	if err != nil {
		return nil, fmt.Errorf("cms: signing time: %w", err)
	}
	attrs := append([]Attribute{
		{Type: oidContentType, Values: [][]byte{ctVal}},
		{Type: oidSigningTime, Values: [][]byte{timeVal}},
		{Type: oidMessageDigest, Values: [][]byte{marshalOctetString(contentDigest)}},
	}, c.extra...)
	// The SignerInfo carries them as [0] IMPLICIT; what is signed is the
	// same encoding with the SET tag (RFC 5652 section 5.4).
	field, err := marshalAttributeSet(attrs, cbasn1.Tag(0).Constructed().ContextSpecific())
	if err != nil {
		return nil, err
	}
	set := append([]byte{0x31}, field[1:]...)
	if len(set) > maxSignedAttrsSize {
		return nil, fmt.Errorf("cms: signed attributes of %d bytes exceed %d", len(set), maxSignedAttrsSize)
	}
	h := c.hash.New()
	h.Write(set)
	digest := h.Sum(nil)

	var opts crypto.SignerOpts = c.hash
	if c.kind == sigPSS {
		opts = &rsa.PSSOptions{SaltLength: c.hash.Size(), Hash: c.hash}
	}
	sig, err := c.signer.Sign(c.rand, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("cms: sign: %w", err)
	}
	// Check the signature before it leaves: a faulty token or a signer
	// returning the wrong format must not produce a message that fails
	// for every recipient.
	if err := verifyRaw(c.cert.PublicKey, c.kind, c.hash, c.hash.Size(), digest, sig); err != nil {
		return nil, fmt.Errorf("cms: the signer produced a signature that does not verify: %w", err)
	}

	var unsigned []byte
	if c.timeStamp != nil {
		token, err := c.timeStamp(bytes.Clone(sig))
		if err != nil {
			return nil, fmt.Errorf("cms: time-stamp: %w", err)
		}
		if len(token) == 0 {
			return nil, errNoTimeStamp
		}
		attr, err := timeStampAttribute(token, sig)
		if err != nil {
			return nil, err
		}
		if unsigned, err = marshalAttributeSet([]Attribute{attr}, cbasn1.Tag(1).Constructed().ContextSpecific()); err != nil {
			return nil, err
		}
	}

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(c.version)
		b.AddBytes(c.sid)
		b.AddBytes(digestAlgorithmDER(c.hash))
		b.AddBytes(field)
		b.AddBytes(c.sigAlg)
		b.AddASN1OctetString(sig)
		if unsigned != nil {
			b.AddBytes(unsigned)
		}
	})
	si, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	if len(si) > maxSignerInfoSize {
		return nil, fmt.Errorf("cms: SignerInfo of %d bytes (with its time-stamp token) exceeds %d", len(si), maxSignerInfoSize)
	}
	return si, nil
}

// certificatesField encodes certificates [0] IMPLICIT CertificateSet with
// the certificates in the order given.
func certificatesField(certs []*x509.Certificate) []byte {
	return mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			for _, c := range certs {
				b.AddBytes(c.Raw)
			}
		})
	})
}

func (c *signerCore) certs() []*x509.Certificate {
	return append([]*x509.Certificate{c.cert}, c.chain...)
}

// DetachedSigner hashes the content written to it and then produces a
// detached signature (the multipart/signed form of RFC 8551 section 3.5).
type DetachedSigner struct {
	core   *signerCore
	h      hash.Hash
	signed bool
}

// NewDetachedSigner checks opts and returns a signer ready for content.
func NewDetachedSigner(opts SignOptions) (*DetachedSigner, error) {
	core, err := newSignerCore(opts)
	if err != nil {
		return nil, err
	}
	return &DetachedSigner{core: core, h: core.hash.New()}, nil
}

// Write hashes content; it fails only after Sign.
func (s *DetachedSigner) Write(p []byte) (int, error) {
	if s.signed {
		return 0, errors.New("cms: write after Sign")
	}
	return s.h.Write(p)
}

// Sign returns a DER ContentInfo holding a SignedData with no eContent,
// the signer's certificate and chain, and one SignerInfo. It calls the
// Signer once; a second call fails.
func (s *DetachedSigner) Sign() ([]byte, error) {
	if s.signed {
		return nil, errSignerUsed
	}
	s.signed = true
	si, err := s.core.signerInfo(s.h.Sum(nil))
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(s.core.version)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddBytes(digestAlgorithmDER(s.core.hash))
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
				})
				b.AddBytes(certificatesField(s.core.certs()))
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddBytes(si)
				})
			})
		})
	})
	return b.Bytes()
}

// signedSegmentSize is the size of the OCTET STRING segments of streamed content.
const signedSegmentSize = 16 << 10

// NewOpaqueSigner writes a ContentInfo{signedData} with the content
// encapsulated, streaming: BER with indefinite lengths, the eContent a
// constructed OCTET STRING of segments. The header is written at once;
// Close computes the signature and writes the certificates and the
// SignerInfo. Memory use does not depend on the content's size.
func NewOpaqueSigner(w io.Writer, opts SignOptions) (io.WriteCloser, error) {
	core, err := newSignerCore(opts)
	if err != nil {
		return nil, err
	}
	e := ber.NewEncoder(w)
	e.Begin(ber.ClassUniversal, ber.TagSequence) // ContentInfo
	e.Raw(mustDER(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidSignedData) }))
	e.Begin(ber.ClassContext, 0)
	e.Begin(ber.ClassUniversal, ber.TagSequence) // SignedData
	e.Raw(mustDER(func(b *cryptobyte.Builder) { b.AddASN1Int64(core.version) }))
	e.Raw(mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(digestAlgorithmDER(core.hash)) })
	}))
	e.Begin(ber.ClassUniversal, ber.TagSequence) // EncapsulatedContentInfo
	e.Raw(mustDER(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) }))
	if err := e.Begin(ber.ClassContext, 0); err != nil {
		return nil, err
	}
	sw, err := e.StringWriter(ber.ClassUniversal, ber.TagOctetString, signedSegmentSize)
	if err != nil {
		return nil, err
	}
	return &opaqueSigner{core: core, e: e, sw: sw, h: core.hash.New()}, nil
}

type opaqueSigner struct {
	core   *signerCore
	e      *ber.Encoder
	sw     io.WriteCloser
	h      hash.Hash
	err    error
	closed bool
}

func (o *opaqueSigner) Write(p []byte) (int, error) {
	if o.closed {
		return 0, errors.New("cms: write after Close")
	}
	if o.err != nil {
		return 0, o.err
	}
	o.h.Write(p)
	n, err := o.sw.Write(p)
	if err != nil {
		o.err = err
	}
	return n, err
}

// Close signs and finishes the message. It calls the Signer once; later
// calls return the first call's result.
func (o *opaqueSigner) Close() error {
	if o.closed {
		return o.err
	}
	o.closed = true
	if o.err != nil {
		return o.err
	}
	o.err = o.finish()
	return o.err
}

func (o *opaqueSigner) finish() error {
	if err := o.sw.Close(); err != nil {
		return err
	}
	o.e.End() // [0] eContent
	o.e.End() // EncapsulatedContentInfo
	si, err := o.core.signerInfo(o.h.Sum(nil))
	if err != nil {
		return err
	}
	o.e.Raw(certificatesField(o.core.certs()))
	o.e.Raw(mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(si) })
	}))
	o.e.End() // SignedData
	o.e.End() // [0]
	return o.e.End()
}
