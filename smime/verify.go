package smime

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smimed/smimed/smime/cms"
)

// oidEmailAddress is PKCS #9 emailAddress, found in old certificates'
// subject names.
var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// certEmails returns the certificate's e-mail addresses: rfc822Name
// subjectAltNames, then emailAddress attributes of the subject.
func certEmails(c *x509.Certificate) []string {
	out := append([]string(nil), c.EmailAddresses...)
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidEmailAddress) {
			if s, ok := n.Value.(string); ok && s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// identify fills the signer's identity fields from cert.
func identify(res *SignerResult, c *x509.Certificate) {
	res.Certificate = c
	if e := certEmails(c); len(e) > 0 {
		res.Email = e[0]
	}
	res.Subject = c.Subject.String()
	sum := sha256.Sum256(c.Raw)
	res.SHA256 = hex.EncodeToString(sum[:])
}

// hashName names a digest algorithm for people.
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
		return "unknown"
	}
	return h.String()
}

// certName is a short name for a certificate in a reason: its e-mail
// address or common name, else its subject.
func certName(c *x509.Certificate) string {
	if e := certEmails(c); len(e) > 0 {
		return e[0]
	}
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

const dateFormat = "2006-01-02 15:04 MST"

// evalSigner decides one signer's outcome. canon holds the content's
// digests; raw, when not nil, the digests of the bytes as received where
// they differ from the canonical form (detached signatures only).
func (o *opener) evalSigner(si *cms.SignerInfo, sd *cms.SignedData, canon, raw map[crypto.Hash][]byte) SignerResult {
	res := SignerResult{
		Hash:                    hashName(si.Hash),
		Algorithm:               si.SignatureAlgorithm,
		SigningTime:             si.SigningTime,
		Capabilities:            si.Capabilities,
		EncryptionKeyPreference: si.EncryptionKeyPreference,
	}
	cert := si.FindCertificate(sd.Certificates)
	if cert == nil {
		res.Outcome = OutcomeBad
		res.Reason = "the signer's certificate is not included in the message, so the signature cannot be checked"
		return res
	}
	identify(&res, cert)

	// bad: the signature itself.
	err := si.Verify(cert, sd.ContentType, canon)
	rawOnly := false
	if errors.Is(err, cms.ErrDigestMismatch) && raw != nil {
		if si.Verify(cert, sd.ContentType, raw) == nil {
			err, rawOnly = nil, true
		}
	}
	if err != nil {
		res.Outcome = OutcomeBad
		switch {
		case errors.Is(err, cms.ErrDigestMismatch):
			res.Reason = "the message was changed after it was signed (its digest does not match the signed one)"
		case errors.Is(err, cms.ErrSignature):
			res.Reason = fmt.Sprintf("the signature value does not verify with the certificate of %s", certName(cert))
		case errors.Is(err, cms.ErrUnsupported):
			res.Reason = fmt.Sprintf("the signature cannot be checked: %v", err)
		default:
			res.Reason = fmt.Sprintf("the signature is malformed: %v", err)
		}
		return res
	}
	note := ""
	if rawOnly {
		note = " Note: the signature matched the signed part only as received (with bare LF line breaks), not in canonical CRLF form."
	}

	// weak-algorithm.
	if w := si.Weakness(cert); w != "" {
		res.Outcome = OutcomeWeak
		res.Reason = fmt.Sprintf("the signature by %s is intact but uses a weak algorithm (%s), which anyone could forge.%s", certName(cert), w, note)
		return res
	}

	// expired.
	now := o.opts.Now
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		res.Outcome = OutcomeExpired
		if now.Before(cert.NotBefore) {
			res.Reason = fmt.Sprintf("the certificate of %s is not valid before %s", certName(cert), cert.NotBefore.UTC().Format(dateFormat))
		} else {
			res.Reason = fmt.Sprintf("the certificate of %s expired on %s", certName(cert), cert.NotAfter.UTC().Format(dateFormat))
		}
		res.Reason += signingTimeNote(si.SigningTime, cert) + note
		return res
	}

	// untrusted (or a chain certificate out of its validity: expired).
	if outcome, why := o.trustProblem(cert, sd.Certificates); outcome != "" {
		res.Outcome, res.Reason = outcome, why+note
		return res
	}

	// email-mismatch.
	if addr := addressOf(o.from); addr != "" {
		match := false
		for _, e := range certEmails(cert) {
			if strings.EqualFold(e, addr) {
				match = true
				break
			}
		}
		if !match {
			res.Outcome = OutcomeEmailMismatch
			names := certEmails(cert)
			if len(names) == 0 {
				res.Reason = fmt.Sprintf("the message is from %s but the signer's certificate (%s) names no e-mail address", addr, res.Subject)
			} else {
				res.Reason = fmt.Sprintf("the message is from %s but was signed with the certificate of %s", addr, strings.Join(names, ", "))
			}
			res.Reason += note
			return res
		}
	}

	res.Outcome = OutcomeGood
	res.Reason = fmt.Sprintf("signed by %s with a certificate issued by %s, valid until %s", certName(cert), issuerName(cert), cert.NotAfter.UTC().Format(dateFormat))
	if !si.SigningTime.IsZero() {
		res.Reason += ", at " + si.SigningTime.UTC().Format(dateFormat) + " (as the sender's clock says)"
	}
	res.Reason += "." + note
	return res
}

// signingTimeNote says whether the certificate was valid at the claimed
// signing time.
func signingTimeNote(t time.Time, c *x509.Certificate) string {
	if t.IsZero() {
		return "; the message does not say when it was signed."
	}
	if !t.Before(c.NotBefore) && !t.After(c.NotAfter) {
		return fmt.Sprintf("; it was valid at the signing time the sender claims (%s), which cannot be proven.", t.UTC().Format(dateFormat))
	}
	return fmt.Sprintf("; it was not valid at the claimed signing time (%s) either.", t.UTC().Format(dateFormat))
}

// trustProblem checks the certificate's purpose and its chain to the trust
// anchors. It returns "" when all is well, else the outcome (untrusted, or
// expired for a chain certificate out of its validity) and the reason.
func (o *opener) trustProblem(cert *x509.Certificate, msgCerts []*x509.Certificate) (string, string) {
	if cert.KeyUsage != 0 && cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return OutcomeUntrusted, fmt.Sprintf("the certificate of %s may not be used for signatures (its key usage allows neither digitalSignature nor nonRepudiation)", certName(cert))
	}
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		ok := false
		for _, u := range cert.ExtKeyUsage {
			ok = ok || u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny
		}
		if !ok {
			return OutcomeUntrusted, fmt.Sprintf("the certificate of %s is not meant for e-mail (its extended key usage lacks emailProtection)", certName(cert))
		}
	}
	var inter *x509.CertPool
	if o.opts.Intermediates != nil {
		inter = o.opts.Intermediates.Clone()
	} else {
		inter = x509.NewCertPool()
	}
	for _, c := range msgCerts {
		if c != nil && c != cert {
			inter.AddCert(c)
		}
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:         o.opts.Roots,
		Intermediates: inter,
		CurrentTime:   o.opts.Now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	})
	if err == nil {
		return "", ""
	}
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return OutcomeUntrusted, fmt.Sprintf("the certificate of %s (issued by %s) does not lead to a trusted root certificate", certName(cert), issuerName(cert))
	case errors.As(err, &ci):
		who := "a certificate in its chain"
		if ci.Cert != nil {
			who = fmt.Sprintf("the chain certificate %q", certName(ci.Cert))
		}
		switch ci.Reason {
		case x509.Expired:
			return OutcomeExpired, fmt.Sprintf("the certificate of %s is valid, but %s has expired or is not yet valid", certName(cert), who)
		case x509.IncompatibleUsage:
			return OutcomeUntrusted, fmt.Sprintf("the chain of %s's certificate is not valid for e-mail protection", certName(cert))
		}
		return OutcomeUntrusted, fmt.Sprintf("the certificate chain of %s is not valid: %v", certName(cert), err)
	}
	return OutcomeUntrusted, fmt.Sprintf("the certificate chain of %s could not be verified: %v", certName(cert), err)
}
