package smime

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"

	"github.com/smimed/smimed/smime/cms"
)

// Recipient is one recipient of an encrypted message.
type Recipient struct {
	// Certificate is the recipient's encryption certificate (RSA or EC).
	Certificate *x509.Certificate
	// Capabilities are the SMIMECapabilities seen in mail the recipient
	// signed (SignerResult.Capabilities); nil when unknown.
	Capabilities []cms.Capability
}

// EncryptOptions describe the recipients and algorithms of an encrypted
// message.
type EncryptOptions struct {
	// Recipients receive the content key. Encrypt refuses an empty list.
	// SignAndEncrypt and EncryptAndSign add the signer themselves (so the
	// sent copy can be read again); a caller of plain Encrypt includes the
	// sender.
	Recipients []Recipient
	// Cipher is the content cipher; 0 lets Encrypt choose (see README.md):
	// AES-256-GCM only when every recipient advertises it or AllowModern
	// is set, AES-256-CBC otherwise.
	Cipher cms.ContentCipher
	// AllowModern is machine policy: use AES-GCM and RSAES-OAEP even for
	// recipients who did not advertise them.
	AllowModern bool
	// Rand is the randomness for keys, IVs and padding; crypto/rand when
	// nil.
	Rand io.Reader
}

// Algorithm identifiers looked for in SMIMECapabilities.
var (
	oidAES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES128GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	oidAES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	oidAES192CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidDES3CBC   = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidRSAOAEP   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}

	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
)

// contentCiphers are the content-encryption capabilities; a capability
// list naming none of them says nothing about ciphers.
var contentCiphers = []asn1.ObjectIdentifier{oidAES128CBC, oidAES192CBC, oidAES256CBC, oidAES128GCM, oidAES256GCM, oidDES3CBC}

// hasCap reports whether caps names alg.
func hasCap(caps []cms.Capability, alg asn1.ObjectIdentifier) bool {
	for _, c := range caps {
		if c.Algorithm.Equal(alg) {
			return true
		}
	}
	return false
}

// knowsCiphers reports whether caps names any content cipher.
func knowsCiphers(caps []cms.Capability) bool {
	for _, a := range contentCiphers {
		if hasCap(caps, a) {
			return true
		}
	}
	return false
}

// chooseCipher picks the content cipher for recipients (see README.md).
func chooseCipher(rs []Recipient, allowModern bool) cms.ContentCipher {
	all := func(alg asn1.ObjectIdentifier) bool {
		for _, r := range rs {
			if !hasCap(r.Capabilities, alg) {
				return false
			}
		}
		return true
	}
	switch {
	case allowModern || all(oidAES256GCM):
		return cms.AES256GCM
	case all(oidAES128GCM):
		return cms.AES128GCM
	}
	// AES-256-CBC is assumed for recipients whose cipher capabilities are
	// unknown (every current client reads it). Fall back to AES-128-CBC,
	// which RFC 8551 makes mandatory, only when a recipient's list is known
	// and leaves AES-256-CBC out while naming AES-128-CBC.
	for _, r := range rs {
		if knowsCiphers(r.Capabilities) && !hasCap(r.Capabilities, oidAES256CBC) && hasCap(r.Capabilities, oidAES128CBC) {
			return cms.AES128CBC
		}
	}
	return cms.AES256CBC
}

// oaepHash returns the OAEP hash a recipient advertised, or 0 when the
// recipient did not advertise RSAES-OAEP. Parameters absent means SHA-256
// (what smimed itself announces); an empty RSAES-OAEP-params means the
// RFC 4055 defaults, SHA-1.
func oaepHash(caps []cms.Capability) crypto.Hash {
	for _, c := range caps {
		if !c.Algorithm.Equal(oidRSAOAEP) {
			continue
		}
		if c.Parameters == nil {
			return crypto.SHA256
		}
		var p struct {
			Hash pkix.AlgorithmIdentifier `asn1:"optional,explicit,tag:0"`
			MGF  asn1.RawValue            `asn1:"optional,explicit,tag:1"`
			Src  asn1.RawValue            `asn1:"optional,explicit,tag:2"`
		}
		if rest, err := asn1.Unmarshal(c.Parameters, &p); err != nil || len(rest) > 0 {
			continue
		}
		switch {
		case p.Hash.Algorithm == nil, p.Hash.Algorithm.Equal(oidSHA1):
			return crypto.SHA1
		case p.Hash.Algorithm.Equal(oidSHA224):
			return crypto.SHA224
		case p.Hash.Algorithm.Equal(oidSHA256):
			return crypto.SHA256
		case p.Hash.Algorithm.Equal(oidSHA384):
			return crypto.SHA384
		case p.Hash.Algorithm.Equal(oidSHA512):
			return crypto.SHA512
		}
	}
	return 0
}

// cmsOptions checks o and chooses the algorithms.
func (o *EncryptOptions) cmsOptions() (cms.EncryptOptions, error) {
	if len(o.Recipients) == 0 {
		return cms.EncryptOptions{}, errors.New("smime: no recipients (the sender must be one of them)")
	}
	eo := cms.EncryptOptions{Cipher: o.Cipher, Rand: o.Rand}
	if eo.Cipher == 0 {
		eo.Cipher = chooseCipher(o.Recipients, o.AllowModern)
	}
	for i, r := range o.Recipients {
		if r.Certificate == nil {
			return cms.EncryptOptions{}, fmt.Errorf("smime: recipient %d has no certificate", i)
		}
		cr := cms.Recipient{Certificate: r.Certificate, Padding: cms.PKCS1v15, KDFHash: crypto.SHA256}
		if _, ok := r.Certificate.PublicKey.(*rsa.PublicKey); ok {
			if h := oaepHash(r.Capabilities); h != 0 {
				cr.Padding, cr.OAEPHash = cms.OAEP, h
			} else if o.AllowModern {
				cr.Padding, cr.OAEPHash = cms.OAEP, crypto.SHA256
			}
		}
		eo.Recipients = append(eo.Recipients, cr)
	}
	return eo, nil
}

// Encrypt encrypts the RFC 5322 message (or bare MIME entity) read from msg
// to every recipient and writes the encrypted message to dst:
// application/pkcs7-mime with smime-type=enveloped-data (CBC) or
// authEnveloped-data (GCM). Header fields move as in Sign: From, To,
// Subject and the like stay outside, readable.
func Encrypt(ctx context.Context, dst io.Writer, msg io.Reader, opts EncryptOptions) error {
	eo, err := opts.cmsOptions()
	if err != nil {
		return err
	}
	return wrapMessage(ctx, dst, msg, 0, func(w io.Writer, content contentFunc) error {
		return encryptEntity(w, content, eo)
	})
}

// SignAndEncrypt signs, then encrypts the signed entity (the usual order:
// the signature is hidden inside, RFC 8551 section 3.7).
func SignAndEncrypt(ctx context.Context, dst io.Writer, msg io.Reader, s SignOptions, e EncryptOptions) error {
	e = withSender(e, &s)
	co, err := s.cmsOptions(ctx)
	if err != nil {
		return err
	}
	eo, err := e.cmsOptions()
	if err != nil {
		return err
	}
	return wrapMessage(ctx, dst, msg, 0, func(w io.Writer, content contentFunc) error {
		return encryptEntity(w, func(w io.Writer) error { return signEntity(w, content, &s, co) }, eo)
	})
}

// EncryptAndSign encrypts, then signs the encrypted entity (the reverse
// order, used by gateways that sign what they relay).
func EncryptAndSign(ctx context.Context, dst io.Writer, msg io.Reader, s SignOptions, e EncryptOptions) error {
	e = withSender(e, &s)
	co, err := s.cmsOptions(ctx)
	if err != nil {
		return err
	}
	eo, err := e.cmsOptions()
	if err != nil {
		return err
	}
	return wrapMessage(ctx, dst, msg, 0, func(w io.Writer, content contentFunc) error {
		return signEntity(w, func(w io.Writer) error { return encryptEntity(w, content, eo) }, &s, co)
	})
}

// withSender returns e with the signer among the recipients, so the sender
// can read the sent copy: the certificate named for encryption
// (EncryptionCertificate, else the signing certificate) is added, with the
// capabilities the signer advertises, unless it is already a recipient or
// its key usage does not allow encryption.
func withSender(e EncryptOptions, s *SignOptions) EncryptOptions {
	cert := s.EncryptionCertificate
	if cert == nil {
		cert = s.Certificate
	}
	if cert == nil || !canEncryptTo(cert) {
		return e
	}
	for _, r := range e.Recipients {
		if r.Certificate != nil && r.Certificate.Equal(cert) {
			return e
		}
	}
	caps := s.Capabilities
	if caps == nil {
		caps = cms.DefaultCapabilities()
	}
	e.Recipients = append(append([]Recipient(nil), e.Recipients...), Recipient{Certificate: cert, Capabilities: caps})
	return e
}

// canEncryptTo reports whether cert's key usage allows a content key to be
// sent to it: keyEncipherment for RSA, keyAgreement for EC, or no key usage
// extension at all.
func canEncryptTo(cert *x509.Certificate) bool {
	if cert.KeyUsage == 0 {
		return true
	}
	switch cert.PublicKeyAlgorithm {
	case x509.RSA:
		return cert.KeyUsage&x509.KeyUsageKeyEncipherment != 0
	case x509.ECDSA:
		return cert.KeyUsage&x509.KeyUsageKeyAgreement != 0
	}
	return false
}

// encryptEntity writes an application/pkcs7-mime entity holding the
// EnvelopedData or AuthEnvelopedData of the entity content writes.
func encryptEntity(w io.Writer, content contentFunc, eo cms.EncryptOptions) error {
	smimeType := "enveloped-data"
	if eo.Cipher.Authenticated() {
		smimeType = "authEnveloped-data"
	}
	ew := &errWriter{w: w}
	ew.printf("Content-Type: application/pkcs7-mime; smime-type=%s; name=\"smime.p7m\"\r\n"+
		"Content-Transfer-Encoding: base64\r\n"+
		"Content-Disposition: attachment; filename=\"smime.p7m\"\r\n"+
		"Content-Description: S/MIME Encrypted Message\r\n\r\n", smimeType)
	if ew.err != nil {
		return ew.err
	}
	return pkcs7Body(ew, content, func(w io.Writer) (io.WriteCloser, error) {
		return cms.NewEncrypter(w, eo)
	})
}
