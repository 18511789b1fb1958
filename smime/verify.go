package smime

import (
	"bytes"
	"context"
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

// signerBase returns a signer's result with the fields taken from the
// SignerInfo and, when it is in the message, the signer's certificate.
func signerBase(si *cms.SignerInfo, sd *cms.SignedData) SignerResult {
	res := SignerResult{
		Hash:                    hashName(si.Hash),
		Algorithm:               si.SignatureAlgorithm,
		SigningTime:             si.SigningTime,
		Capabilities:            si.Capabilities,
		EncryptionKeyPreference: si.EncryptionKeyPreference,
	}
	if cert := si.FindCertificate(sd.Certificates); cert != nil {
		identify(&res, cert)
	}
	return res
}

// evalSigner decides one signer's outcome. canon holds the content's
// digests; raw, when not nil, the digests of the bytes as received where
// they differ from the canonical form (detached signatures only). ctx is
// passed to the FetchIssuers and CheckRevocation hooks.
func (o *opener) evalSigner(ctx context.Context, si *cms.SignerInfo, sd *cms.SignedData, canon, raw map[crypto.Hash][]byte) SignerResult {
	res := signerBase(si, sd)
	cert := res.Certificate
	if cert == nil {
		res.Outcome = OutcomeBad
		res.Reason = "the signer's certificate is not included in the message, so the signature cannot be checked"
		return res
	}

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
		note = "Note: the signature matched the signed part only as received (with bare LF line breaks), not in canonical CRLF form."
	}

	// weak-algorithm.
	if w := si.Weakness(cert); w != "" {
		res.Outcome = OutcomeWeak
		res.Reason = fullStop(addSentence(fmt.Sprintf("the signature by %s is intact but uses a weak algorithm (%s), which anyone could forge", certName(cert), w), note))
		return res
	}

	// A time-stamp token that verifies gives a trusted signing time; one
	// that does not is only mentioned.
	tsNote := ""
	if si.TimeStampToken != nil {
		ts, err := cms.VerifyTimeStamp(si.TimeStampToken, si.Signature, cms.TimeStampOptions{
			Roots:         o.opts.Roots,
			Intermediates: o.opts.Intermediates,
			Certificates:  sd.Certificates,
			Now:           o.opts.Now,
		})
		if err != nil {
			tsNote = fmt.Sprintf("The signature carries a time-stamp that does not verify, so its signing time is not proven (%v).", err)
		} else if why := o.stampRevoked(ctx, ts); why != "" {
			tsNote = fmt.Sprintf("The signature carries a time-stamp by %s, but %s, so its signing time is not proven.", certName(ts.Authority), why)
		} else {
			res.TimeStamp = ts
			res.TrustedTime = ts.Time
			res.TimeStampAuthority = certName(ts.Authority)
		}
	}

	chains := o.newChainBuilder(ctx, cert, sd.Certificates)
	now := o.judge(chains, cert, o.opts.Now)
	var atSigning *judgement
	if !res.TrustedTime.IsZero() {
		j := o.judge(chains, cert, res.TrustedTime)
		atSigning = &j
	}

	// Revocation, for a signer whose chain verified, at the trusted time
	// or now.
	var chain []*x509.Certificate
	switch {
	case atSigning != nil && atSigning.eligible():
		chain = atSigning.chain
	case now.eligible():
		chain = now.chain
	}
	res.Chain = chain
	if chain != nil && o.opts.CheckRevocation != nil {
		r := o.opts.CheckRevocation(ctx, chain)
		if r.Status == "" {
			r.Status = RevocationNotChecked
		}
		res.Revocation = &r
	}

	v := verdict{res: &res, cert: cert, rev: res.Revocation}
	if atSigning == nil {
		res.Outcome = v.final(now, time.Time{})
		res.Reason = v.reasonNow(now, si.SigningTime)
	} else {
		res.Outcome = v.final(*atSigning, res.TrustedTime)
		nowOutcome := v.final(now, time.Time{})
		if res.Outcome == OutcomeRevoked {
			// A revocation that voids the signature voids it for good,
			// whatever else (expiry) holds now.
			nowOutcome = OutcomeRevoked
		}
		if nowOutcome != res.Outcome {
			res.OutcomeNow = nowOutcome
		}
		res.Reason = v.reasonStamped(*atSigning, now, nowOutcome)
	}
	res.Reason = fullStop(addSentence(addSentence(res.Reason, note), tsNote))
	return res
}

// judgement is a signer's outcome at one time, before revocation.
type judgement struct {
	outcome string
	// reason explains outcome; for good it only says who signed.
	reason string
	// chain is the verified chain (good and email-mismatch only).
	chain []*x509.Certificate
	// leafOutOfValidity says that outcome is expired because the signer's
	// own certificate is not valid at that time.
	leafOutOfValidity bool
}

// eligible reports whether the chain verified, so that revocation is
// worth checking.
func (j judgement) eligible() bool {
	return j.outcome == OutcomeGood || j.outcome == OutcomeEmailMismatch
}

// judge decides expired, untrusted, email-mismatch or good for the intact
// signature of cert at the given time.
func (o *opener) judge(chains *chainBuilder, cert *x509.Certificate, at time.Time) judgement {
	if at.Before(cert.NotBefore) {
		return judgement{outcome: OutcomeExpired, leafOutOfValidity: true,
			reason: fmt.Sprintf("the certificate of %s is not valid before %s", certName(cert), cert.NotBefore.UTC().Format(dateFormat))}
	}
	if at.After(cert.NotAfter) {
		return judgement{outcome: OutcomeExpired, leafOutOfValidity: true,
			reason: fmt.Sprintf("the certificate of %s expired on %s", certName(cert), cert.NotAfter.UTC().Format(dateFormat))}
	}
	chain, outcome, why := o.trustProblem(chains, cert, at)
	if outcome != "" {
		return judgement{outcome: outcome, reason: why}
	}
	if addr := addressOf(o.from); addr != "" {
		match := false
		for _, e := range certEmails(cert) {
			if strings.EqualFold(e, addr) {
				match = true
				break
			}
		}
		if !match {
			j := judgement{outcome: OutcomeEmailMismatch, chain: chain}
			if names := certEmails(cert); len(names) == 0 {
				j.reason = fmt.Sprintf("the message is from %s but the signer's certificate (%s) names no e-mail address", addr, cert.Subject.String())
			} else {
				j.reason = fmt.Sprintf("the message is from %s but was signed with the certificate of %s", addr, strings.Join(names, ", "))
			}
			return j
		}
	}
	return judgement{outcome: OutcomeGood, chain: chain,
		reason: fmt.Sprintf("signed by %s with a certificate issued by %s", certName(cert), issuerName(cert))}
}

// benignRevocationReasons are the CRL reasons that say nothing against
// signatures made before the revocation: the key was not compromised, the
// certificate was merely retired. A revocation for keyCompromise,
// cACompromise, aACompromise, certificateHold, unspecified or no reason
// voids earlier signatures too, time-stamped or not: the key may have been
// in other hands before anyone noticed.
var benignRevocationReasons = []string{"superseded", "affiliationChanged", "cessationOfOperation", "privilegeWithdrawn"}

// stampRevoked checks the revocation of the TSA's chain with the
// CheckRevocation hook and says why the token can no longer prove its
// time, or returns "" when it can. A TSA certificate revoked after the
// token for a benign reason leaves the token valid (RFC 3161, section 4);
// one revoked before it, or for key compromise or no stated reason, does
// not. An unknown status voids the token only when the policy treats it
// as a failure (hard-fail).
func (o *opener) stampRevoked(ctx context.Context, ts *cms.TimeStamp) string {
	if o.opts.CheckRevocation == nil || len(ts.Chain) == 0 {
		return ""
	}
	r := o.opts.CheckRevocation(ctx, ts.Chain)
	switch {
	case r.Status == RevocationRevoked && !sparedBy(&r, ts.Time):
		return "the time-stamping authority's certificate " + revocationWords(&r)
	case r.Status == RevocationUnknown && r.Fails:
		return "the revocation status of the time-stamping authority's certificate could not be checked: " + r.Detail
	}
	return ""
}

// revocationWords says when and why a certificate was revoked.
func revocationWords(r *Revocation) string {
	w := "was revoked"
	if !r.RevokedAt.IsZero() {
		w += " on " + r.RevokedAt.UTC().Format(dateFormat)
	}
	if r.Reason != "" {
		w += " (" + r.Reason + ")"
	}
	return w
}

// sparedBy reports whether revocation r came after something done at the
// trusted time signed, for a reason that leaves it valid.
func sparedBy(r *Revocation, signed time.Time) bool {
	if signed.IsZero() || r.RevokedAt.IsZero() || !signed.Before(r.RevokedAt) {
		return false
	}
	for _, reason := range benignRevocationReasons {
		if strings.EqualFold(r.Reason, reason) {
			return true
		}
	}
	return false
}

// verdict applies a signer's revocation result to its judgements and
// words the reason.
type verdict struct {
	res  *SignerResult
	cert *x509.Certificate
	rev  *Revocation
}

// final is the outcome of judgement j once revocation is taken into
// account; signed is the trusted signing time j was judged at, zero for a
// judgement at the present.
func (v verdict) final(j judgement, signed time.Time) string {
	if !j.eligible() || v.rev == nil {
		return j.outcome
	}
	switch v.rev.Status {
	case RevocationRevoked:
		if sparedBy(v.rev, signed) {
			return j.outcome
		}
		return OutcomeRevoked
	case RevocationUnknown:
		if v.rev.Fails {
			return OutcomeUntrusted
		}
	}
	return j.outcome
}

// revokedText says when and why the certificate was revoked.
func (v verdict) revokedText() string {
	return fmt.Sprintf("the certificate of %s %s", certName(v.cert), revocationWords(v.rev))
}

// unknownText says that revocation could not be checked.
func (v verdict) unknownText() string {
	s := fmt.Sprintf("the revocation status of %s could not be checked", certName(v.cert))
	if v.rev.Detail != "" {
		s += ": " + v.rev.Detail
	}
	return s
}

// describe words outcome, the final outcome of judgement j.
func (v verdict) describe(j judgement, outcome string) string {
	switch {
	case outcome == j.outcome:
		return j.reason
	case outcome == OutcomeRevoked:
		return v.revokedText()
	case outcome == OutcomeUntrusted && v.rev != nil && v.rev.Status == RevocationUnknown:
		return v.unknownText()
	}
	return j.reason
}

// revocationNote is the sentence about revocation added to a reason whose
// outcome revocation did not change.
func (v verdict) revocationNote(outcome string) string {
	if v.rev == nil || outcome == OutcomeRevoked || outcome == OutcomeUntrusted {
		return ""
	}
	switch v.rev.Status {
	case RevocationGood:
		if v.rev.Detail != "" {
			return fmt.Sprintf("The certificate has not been revoked (%s).", v.rev.Detail)
		}
		return "The certificate has not been revoked."
	case RevocationUnknown:
		if v.rev.Detail != "" {
			return fmt.Sprintf("Its revocation status is unknown: %s.", v.rev.Detail)
		}
		return "Its revocation status is unknown."
	}
	return ""
}

// reasonNow words the reason of a signer without a trusted time: judged
// at the present, with the sender's claimed signing time as a note.
func (v verdict) reasonNow(now judgement, claimed time.Time) string {
	outcome := v.res.Outcome
	r := v.describe(now, outcome)
	switch {
	case outcome == OutcomeGood:
		r += ", valid until " + v.cert.NotAfter.UTC().Format(dateFormat)
		if !claimed.IsZero() {
			r += ", at " + claimed.UTC().Format(dateFormat) + " (as the sender's clock says)"
		}
	case outcome == OutcomeExpired && now.leafOutOfValidity:
		r += signingTimeNote(claimed, v.cert)
	}
	return addSentence(r, v.revocationNote(outcome))
}

// reasonStamped words the reason of a signer with a trusted time: the
// outcome judged when it was signed, and what differs now.
func (v verdict) reasonStamped(atSigning, now judgement, nowOutcome string) string {
	outcome := v.res.Outcome
	stamp := fmt.Sprintf("%s (time-stamped by %s)", v.res.TrustedTime.UTC().Format(dateFormat), v.res.TimeStampAuthority)
	main := v.describe(atSigning, outcome)
	var r string
	switch {
	case outcome == OutcomeGood && nowOutcome == OutcomeGood:
		r = main + ", valid until " + v.cert.NotAfter.UTC().Format(dateFormat) + ", at " + stamp
	case outcome == OutcomeGood:
		r = "valid when signed at " + stamp + ": " + main
	case outcome == OutcomeRevoked:
		r = main + v.revokedVersusSigning()
	default:
		r = main + "; signed at " + stamp
	}
	if nowOutcome != outcome {
		switch {
		case nowOutcome == OutcomeExpired && now.leafOutOfValidity && v.res.TrustedTime.Before(v.cert.NotAfter):
			r += "; the certificate has since expired on " + v.cert.NotAfter.UTC().Format(dateFormat)
		case nowOutcome == OutcomeRevoked && sparedBy(v.rev, v.res.TrustedTime):
			r += "; " + v.revokedText() + ", after it was signed, for a reason that does not put earlier signatures in doubt"
		default:
			r += "; judged now: " + v.describe(now, nowOutcome)
		}
	}
	if v.rev != nil && v.rev.Status == RevocationRevoked && outcome != OutcomeRevoked && nowOutcome != OutcomeRevoked {
		// Revoked after signing, but something else (expiry) is what
		// the present judgement shows: say it anyway.
		r = addSentence(r, fullStop(upperFirst(v.revokedText())+", after it was signed, for a reason that does not put earlier signatures in doubt"))
	}
	return addSentence(r, v.revocationNote(outcome))
}

// upperFirst capitalises the first letter of a sentence.
func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// revokedVersusSigning explains why a time-stamp before the revocation
// does not save a revoked signer.
func (v verdict) revokedVersusSigning() string {
	t := v.res.TrustedTime
	switch {
	case v.rev.RevokedAt.IsZero():
		return fmt.Sprintf("; the revocation date is not known, so the time-stamp (%s) cannot show that the signature came first", t.UTC().Format(dateFormat))
	case !t.Before(v.rev.RevokedAt):
		return fmt.Sprintf(", before it was used to sign at %s (time-stamped by %s)", t.UTC().Format(dateFormat), v.res.TimeStampAuthority)
	}
	why := "a revocation without a stated reason"
	if v.rev.Reason != "" && !strings.EqualFold(v.rev.Reason, "unspecified") {
		why = "a revocation for " + v.rev.Reason
	}
	return fmt.Sprintf("; the signature was time-stamped earlier, at %s, but %s puts earlier signatures in doubt too", t.UTC().Format(dateFormat), why)
}

// fullStop ends r with a full stop.
func fullStop(r string) string {
	if r == "" || strings.HasSuffix(r, ".") {
		return r
	}
	return r + "."
}

// addSentence appends sentence s to reason r, ending r with a full stop
// first.
func addSentence(r, s string) string {
	if s == "" {
		return r
	}
	if r != "" && !strings.HasSuffix(r, ".") {
		r += "."
	}
	if r == "" {
		return s
	}
	return r + " " + s
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

// maxIssuerFetches bounds the FetchIssuers calls for one signer: the
// signer's certificate, then three more levels.
const maxIssuerFetches = 4

// chainBuilder verifies one signer's certificate, at any time, with the
// message's certificates, OpenOptions.Intermediates and what FetchIssuers
// returned; what was fetched is kept for the next verification.
type chainBuilder struct {
	ctx   context.Context
	fetch func(context.Context, *x509.Certificate) []*x509.Certificate
	roots *x509.CertPool
	inter *x509.CertPool
	leaf  *x509.Certificate
	have  map[string]bool // SHA-256 of certificates in inter, and the leaf
	asked map[string]bool // certificates FetchIssuers was called for
	// fetched are the certificates FetchIssuers returned, newest last.
	fetched []*x509.Certificate
	calls   int
}

func certKey(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return string(sum[:])
}

func (o *opener) newChainBuilder(ctx context.Context, leaf *x509.Certificate, msgCerts []*x509.Certificate) *chainBuilder {
	b := &chainBuilder{ctx: ctx, fetch: o.opts.FetchIssuers, roots: o.opts.Roots, leaf: leaf,
		have: map[string]bool{certKey(leaf): true}, asked: map[string]bool{}}
	if o.opts.Intermediates != nil {
		b.inter = o.opts.Intermediates.Clone()
	} else {
		b.inter = x509.NewCertPool()
	}
	for _, c := range msgCerts {
		if c != nil && !b.have[certKey(c)] {
			b.have[certKey(c)] = true
			b.inter.AddCert(c)
		}
	}
	return b
}

// verify builds and verifies the leaf's chain at the given time for
// e-mail protection, fetching missing issuers when allowed.
func (b *chainBuilder) verify(at time.Time) ([]*x509.Certificate, error) {
	for {
		chains, err := b.leaf.Verify(x509.VerifyOptions{
			Roots:         b.roots,
			Intermediates: b.inter,
			CurrentTime:   at,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		})
		if err == nil {
			return chains[0], nil
		}
		var ua x509.UnknownAuthorityError
		if b.fetch == nil || !errors.As(err, &ua) || b.calls >= maxIssuerFetches || b.ctx.Err() != nil {
			return nil, err
		}
		target := b.nextTarget(ua.Cert)
		if target == nil {
			return nil, err
		}
		b.asked[certKey(target)] = true
		b.calls++
		added := 0
		for _, c := range b.fetch(b.ctx, target) {
			if c != nil && !b.have[certKey(c)] {
				b.have[certKey(c)] = true
				b.inter.AddCert(c)
				b.fetched = append(b.fetched, c)
				added++
			}
		}
		if added == 0 {
			return nil, err
		}
	}
}

// nextTarget picks the certificate whose issuer to fetch: the one x509
// could not find an issuer for, else the leaf, else the newest fetched
// certificate, skipping those already asked about and self-signed ones
// (whose issuer is themselves).
func (b *chainBuilder) nextTarget(stuck *x509.Certificate) *x509.Certificate {
	candidates := []*x509.Certificate{stuck, b.leaf}
	for i := len(b.fetched) - 1; i >= 0; i-- {
		candidates = append(candidates, b.fetched[i])
	}
	for _, c := range candidates {
		if c == nil || b.asked[certKey(c)] {
			continue
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			continue
		}
		return c
	}
	return nil
}

// trustProblem checks the certificate's purpose and its chain to the trust
// anchors at the given time. It returns the verified chain when all is
// well, else the outcome (untrusted, or expired for a chain certificate
// out of its validity) and the reason.
func (o *opener) trustProblem(chains *chainBuilder, cert *x509.Certificate, at time.Time) ([]*x509.Certificate, string, string) {
	if cert.KeyUsage != 0 && cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, OutcomeUntrusted, fmt.Sprintf("the certificate of %s may not be used for signatures (its key usage allows neither digitalSignature nor nonRepudiation)", certName(cert))
	}
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		ok := false
		for _, u := range cert.ExtKeyUsage {
			ok = ok || u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny
		}
		if !ok {
			return nil, OutcomeUntrusted, fmt.Sprintf("the certificate of %s is not meant for e-mail (its extended key usage lacks emailProtection)", certName(cert))
		}
	}
	chain, err := chains.verify(at)
	if err == nil {
		return chain, "", ""
	}
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return nil, OutcomeUntrusted, fmt.Sprintf("the certificate of %s (issued by %s) does not lead to a trusted root certificate", certName(cert), issuerName(cert))
	case errors.As(err, &ci):
		who := "a certificate in its chain"
		if ci.Cert != nil {
			who = fmt.Sprintf("the chain certificate %q", certName(ci.Cert))
		}
		switch ci.Reason {
		case x509.Expired:
			return nil, OutcomeExpired, fmt.Sprintf("the certificate of %s is valid, but %s has expired or is not yet valid", certName(cert), who)
		case x509.IncompatibleUsage:
			return nil, OutcomeUntrusted, fmt.Sprintf("the chain of %s's certificate is not valid for e-mail protection", certName(cert))
		}
		return nil, OutcomeUntrusted, fmt.Sprintf("the certificate chain of %s is not valid: %v", certName(cert), err)
	}
	return nil, OutcomeUntrusted, fmt.Sprintf("the certificate chain of %s could not be verified: %v", certName(cert), err)
}
