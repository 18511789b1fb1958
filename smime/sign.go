package smime

import (
	"bufio"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/smimed/smimed/smime/cms"
)

// SignOptions describe one signer and the form of the signed message.
type SignOptions struct {
	// Signer is the private-key handle; Sign is called exactly once per
	// message.
	Signer crypto.Signer
	// Certificate is the signer's certificate, included in the message.
	Certificate *x509.Certificate
	// Chain holds the intermediate certificates to include after it.
	Chain []*x509.Certificate
	// Hash is the digest: crypto.SHA256 (default when 0), SHA384 or SHA512.
	Hash crypto.Hash
	// PSS selects RSASSA-PSS instead of PKCS #1 v1.5 for RSA keys.
	PSS bool
	// Opaque produces application/pkcs7-mime; smime-type=signed-data, which
	// only S/MIME-capable clients can display, instead of the default
	// multipart/signed (detached signature) that everyone can read.
	Opaque bool
	// Capabilities are advertised in the SMIMECapabilities signed
	// attribute, best first; cms.DefaultCapabilities() when nil.
	Capabilities []cms.Capability
	// EncryptionCertificate is named in the SMIMEEncryptionKeyPreference
	// attribute: the certificate others should encrypt to. Certificate
	// when nil.
	EncryptionCertificate *x509.Certificate
	// Rand is the randomness for PSS and ECDSA signatures; crypto/rand when
	// nil. MIME boundaries always come from crypto/rand.
	Rand io.Reader
	// TimeStamp, when not nil, is called with the signature value once it
	// is made, with the context of the Sign call; it returns an RFC 3161
	// time-stamp token over that value (the DER ContentInfo a TSA answers
	// with, e.g. `openssl ts -reply -token_out`), which is added to the
	// signer as the unsigned attribute id-aa-signatureTimeStampToken.
	// Readers then judge the signature at the time the TSA attests
	// (SignerResult.TrustedTime). An error, or a token that does not cover
	// the signature value, fails Sign.
	TimeStamp func(ctx context.Context, signature []byte) (token []byte, err error)
}

// cmsOptions checks o and turns it into the cms package's options, with the
// two S/MIME signed attributes added; ctx goes to the TimeStamp hook.
func (o *SignOptions) cmsOptions(ctx context.Context) (cms.SignOptions, error) {
	if o.Signer == nil {
		return cms.SignOptions{}, errors.New("smime: SignOptions.Signer is nil")
	}
	if o.Certificate == nil {
		return cms.SignOptions{}, errors.New("smime: SignOptions.Certificate is nil")
	}
	h := o.Hash
	if h == 0 {
		h = crypto.SHA256
	}
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512:
	default:
		return cms.SignOptions{}, errorf(ErrUnsupported, "signing with %v (use SHA-256, SHA-384 or SHA-512)", h)
	}
	caps := o.Capabilities
	if caps == nil {
		caps = cms.DefaultCapabilities()
	}
	capAttr, err := cms.CapabilitiesAttribute(caps)
	if err != nil {
		return cms.SignOptions{}, fmt.Errorf("smime: capabilities: %w", err)
	}
	encCert := o.EncryptionCertificate
	if encCert == nil {
		encCert = o.Certificate
	}
	prefAttr, err := cms.EncryptionKeyPreferenceAttribute(encCert)
	if err != nil {
		return cms.SignOptions{}, fmt.Errorf("smime: encryption key preference: %w", err)
	}
	co := cms.SignOptions{
		Signer:      o.Signer,
		Certificate: o.Certificate,
		Chain:       o.Chain,
		Hash:        h,
		PSS:         o.PSS,
		Attributes:  []cms.Attribute{capAttr, prefAttr},
		Rand:        o.Rand,
	}
	if stamp := o.TimeStamp; stamp != nil {
		co.TimeStamp = func(sig []byte) ([]byte, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return stamp(ctx, sig)
		}
	}
	return co, nil
}

// Sign signs the RFC 5322 message (or bare MIME entity) read from msg and
// writes the signed message to dst.
//
// The Content-* fields and MIME-Version move into the signed entity; every
// other field (From, To, Subject, Date, Message-ID, ...) stays on the
// outside unchanged, followed by MIME-Version: 1.0 and the new
// Content-Type. A message without Content-Type is text/plain;
// charset=us-ascii. Inside the signed entity every line ends in CRLF and
// every leaf has a 7-bit transfer encoding (see README.md for the rules).
//
// Memory use does not depend on the message's size. On error, discard what
// was written to dst.
func Sign(ctx context.Context, dst io.Writer, msg io.Reader, opts SignOptions) error {
	co, err := opts.cmsOptions(ctx)
	if err != nil {
		return err
	}
	return wrapMessage(ctx, dst, msg, 0, func(w io.Writer, content contentFunc) error {
		return signEntity(w, content, &opts, co)
	})
}

// contentFunc writes a complete MIME entity (header, blank line, body).
type contentFunc func(w io.Writer) error

// wrapMessage reads msg, writes its outer header fields and MIME-Version to
// dst, and lets wrap write the protected entity, passing it a contentFunc
// that writes the normalised inner entity.
func wrapMessage(ctx context.Context, dst io.Writer, msg io.Reader, maxHeader int, wrap func(w io.Writer, content contentFunc) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if !catchPanics {
				panic(p)
			}
			err = badf("internal error while reading the message: %v", p)
		}
	}()
	br := bufio.NewReaderSize(ctxReader{ctx, msg}, bufSize)
	outer, inner, err := splitMessage(br, maxHeader)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(ctxWriter{ctx, dst}, 64<<10)
	if err := writeFields(bw, outer); err != nil {
		return err
	}
	if _, err := bw.WriteString("MIME-Version: 1.0\r\n"); err != nil {
		return err
	}
	n := &normalizer{maxHeader: maxHeader}
	content := func(w io.Writer) error { return n.entity(w, inner, br, 0) }
	if err := wrap(bw, content); err != nil {
		return classify(err)
	}
	return bw.Flush()
}

// signEntity writes a signed MIME entity (its Content-* header fields, a
// blank line and the body) around the entity content writes.
func signEntity(w io.Writer, content contentFunc, o *SignOptions, co cms.SignOptions) error {
	if o.Opaque {
		return signOpaque(w, content, co)
	}
	return signDetached(w, content, co)
}

// signDetached writes multipart/signed (RFC 8551 section 3.5.3): the
// content part, hashed exactly as written, then the signature part.
func signDetached(w io.Writer, content contentFunc, co cms.SignOptions) error {
	signer, err := cms.NewDetachedSigner(co)
	if err != nil {
		return err
	}
	boundary, err := newBoundary()
	if err != nil {
		return err
	}
	ew := &errWriter{w: w}
	ew.printf("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=%s;\r\n"+
		"\tboundary=\"%s\"\r\n\r\n", cms.Micalg(co.Hash), boundary)
	ew.printf("This is an S/MIME signed message\r\n--%s\r\n", boundary)
	if ew.err != nil {
		return ew.err
	}
	// The hash runs in its own goroutine, overlapping the MIME work.
	hw := newAsyncWriter(signer)
	defer hw.Close()
	if err := content(io.MultiWriter(ew, hw)); err != nil {
		return err
	}
	if err := hw.Close(); err != nil {
		return err
	}
	sig, err := signer.Sign()
	if err != nil {
		return err
	}
	ew.printf("\r\n--%s\r\n", boundary)
	ew.printf("Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n" +
		"Content-Description: S/MIME Cryptographic Signature\r\n\r\n")
	b64 := newBase64Writer(ew)
	if _, err := b64.Write(sig); err != nil {
		return err
	}
	if err := b64.Close(); err != nil {
		return err
	}
	ew.printf("\r\n--%s--\r\n", boundary)
	return ew.err
}

// signOpaque writes application/pkcs7-mime; smime-type=signed-data with the
// entity inside the SignedData.
func signOpaque(w io.Writer, content contentFunc, co cms.SignOptions) error {
	ew := &errWriter{w: w}
	ew.printf("Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"smime.p7m\"\r\n" +
		"Content-Description: S/MIME Cryptographic Signed Data\r\n\r\n")
	if ew.err != nil {
		return ew.err
	}
	return pkcs7Body(ew, content, func(w io.Writer) (io.WriteCloser, error) {
		return cms.NewOpaqueSigner(w, co)
	})
}

// pkcs7Body writes a base64 body holding the CMS object that newCMS writes
// around the entity content produces: three pipelined stages (MIME work,
// CMS, base64), each fed 64 KiB at a time.
func pkcs7Body(w io.Writer, content contentFunc, newCMS func(io.Writer) (io.WriteCloser, error)) error {
	b64 := newBase64Writer(w)
	// The base64 stage runs in its own goroutine, overlapping the cipher
	// or the hash.
	out := newAsyncWriter(b64)
	defer out.Close()
	c, err := newCMS(out)
	if err != nil {
		return err
	}
	// The cipher or hash runs in its own goroutine too, overlapping the
	// MIME work that produces the content.
	in := newAsyncWriter(c)
	defer in.Close()
	if err := content(in); err != nil {
		return err
	}
	if err := in.Close(); err != nil {
		return err
	}
	if err := c.Close(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return b64.Close()
}

// newBoundary returns a multipart boundary with 128 random bits. Its
// characters cannot start a base64 or quoted-printable line that could be
// mistaken for it ("=_" never occurs in either).
func newBoundary() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return "", fmt.Errorf("smime: boundary: %w", err)
	}
	return "----=_smimed_" + hex.EncodeToString(b[:]), nil
}

// CertsOnly writes an application/pkcs7-mime; smime-type=certs-only message
// (RFC 8551 section 3.6) carrying certs, for sending one's certificate and
// chain to someone.
func CertsOnly(dst io.Writer, certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errors.New("smime: CertsOnly needs at least one certificate")
	}
	der, err := cms.MarshalCertsOnly(certs)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(dst)
	ew := &errWriter{w: bw}
	ew.printf("MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=certs-only; name=\"smime.p7c\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"smime.p7c\"\r\n\r\n")
	b64 := newBase64Writer(ew)
	if _, err := b64.Write(der); err != nil {
		return err
	}
	if err := b64.Close(); err != nil {
		return err
	}
	if ew.err != nil {
		return ew.err
	}
	return bw.Flush()
}
