package daemon

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/daemon/directory"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/smime"
	"github.com/smimed/smimed/smime/cms"
)

// certInfo describes a certificate for clients, with its PEM.
func certInfo(c *x509.Certificate) ipc.Certificate {
	emails := certbook.Emails(c)
	if emails == nil {
		emails = []string{}
	}
	return ipc.Certificate{
		SHA256:    certbook.Fingerprint(c),
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Emails:    emails,
		NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:  c.NotAfter.UTC().Format(time.RFC3339),
		PEM:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})),
	}
}

func certInfos(certs []*x509.Certificate) []ipc.Certificate {
	out := make([]ipc.Certificate, 0, len(certs))
	for _, c := range certs {
		out = append(out, certInfo(c))
	}
	return out
}

// recipientLookup is the answer for one address: the usable entries, best
// first, or the reason there is none.
type recipientLookup struct {
	entries []certbook.Entry
	reason  string
}

// lookup finds the certificates to encrypt to for addr: the address book
// first, then the user's own identities (mail to oneself, or to another of
// one's addresses).
func (s *Service) lookup(ctx context.Context, addr string, ids []keystore.Identity, now time.Time) (recipientLookup, error) {
	entries, err := s.book.Find(ctx, addr)
	if err != nil {
		if !isCorruptOnly(err) {
			return recipientLookup{}, err
		}
		s.logger.Warn("address book: unreadable files skipped", "err", err)
	}
	ok, reason := certbook.Select(entries, addr, now)
	ok, revReason := s.notRevoked(ctx, ok, ids, now)
	if len(ok) > 0 {
		return recipientLookup{entries: ok}, nil
	}
	if revReason != "" {
		reason = revReason
	}
	var own []certbook.Entry
	for _, id := range ids {
		own = append(own, certbook.Entry{Certificate: id.Certificate, Capabilities: capabilities(id)})
	}
	mine, ownReason := certbook.Select(own, addr, now)
	mine, ownRevReason := s.notRevoked(ctx, mine, ids, now)
	if len(mine) > 0 {
		return recipientLookup{entries: mine}, nil
	}
	if ownRevReason != "" {
		ownReason = ownRevReason
	}
	if reason == certbook.ReasonNoneFound {
		reason = ownReason
	}
	if s.dir != nil {
		found, dirReason := s.lookupDirectory(ctx, addr, ids, now)
		if len(found) > 0 {
			return recipientLookup{entries: found}, nil
		}
		if reason == certbook.ReasonNoneFound && dirReason != "" {
			reason = dirReason
		}
	}
	return recipientLookup{reason: reason}, nil
}

// checkOwnRecipient refuses to encrypt the sent copy to the user's own
// certificate when it is revoked (or of unknown status under hard-fail).
func (s *Service) checkOwnRecipient(ctx context.Context, self *x509.Certificate, ids []keystore.Identity, now time.Time) error {
	r := s.certRevocation(ctx, self, certbook.ScopeEncryption, nil, ids, now)
	if !r.Fails {
		return nil
	}
	if r.Status == smime.RevocationRevoked {
		return noIdentity("your own certificate %s, which the sent copy is encrypted to, cannot be used: %s", subjectName(self), r.Detail)
	}
	return noIdentity("your own certificate %s, which the sent copy is encrypted to, cannot be used: its revocation status could not be checked and the policy requires it (%s)", subjectName(self), r.Detail)
}

// Reasons a directory lookup adds to certbook's.
const (
	reasonUntrusted            = "untrusted"
	reasonDirectoryUnreachable = "directory-unreachable"
	// reasonDirectoryAuthFailed: the directory refused the bind (wrong
	// password, or none stored in the key store for its bindname).
	reasonDirectoryAuthFailed = "directory-auth-failed"
)

// lookupDirectory asks the LDAP directories for addr's certificates (only
// ever while composing or on request: lookup is not called while a message
// is read, which would tell the sender when it was read). A directory
// certificate is used only when it chains to the trust anchors for
// emailProtection, since plain LDAP can be tampered with on the way; it
// is not added to the address book. Intermediate CAs come from the user's
// own identities' chains (colleagues usually share the organisation's CA),
// the address book's CAs and, unless trust.fetch_issuers is "never", the
// certificate's AIA caIssuers URLs. The anchors are those of scope
// encryption.
func (s *Service) lookupDirectory(ctx context.Context, addr string, ids []keystore.Identity, now time.Time) ([]certbook.Entry, string) {
	certs, err := s.dir.Lookup(ctx, addr)
	if err != nil {
		s.logger.Warn("directory lookup", "address", addr, "err", err)
	}
	if len(certs) == 0 {
		switch {
		case errors.Is(err, directory.ErrBind):
			return nil, reasonDirectoryAuthFailed
		case err != nil:
			return nil, reasonDirectoryUnreachable
		}
		return nil, ""
	}
	var entries []certbook.Entry
	for _, c := range certs {
		if s.chainsForEncryption(ctx, c, ids, now) {
			entries = append(entries, certbook.Entry{Certificate: c})
		}
	}
	if len(entries) == 0 {
		return nil, reasonUntrusted
	}
	ok, reason := certbook.Select(entries, addr, now)
	ok, revReason := s.notRevoked(ctx, ok, ids, now)
	if len(ok) == 0 && revReason != "" {
		reason = revReason
	}
	return ok, reason
}

// chainsForEncryption reports whether c chains, for emailProtection, to
// the anchors of scope encryption.
func (s *Service) chainsForEncryption(ctx context.Context, c *x509.Certificate, ids []keystore.Identity, now time.Time) bool {
	roots, err := s.anchors(ctx, certbook.ScopeEncryption)
	if err != nil {
		return false
	}
	inter := s.issuerPool(ctx).Clone()
	for _, id := range ids {
		for _, ic := range id.Chain {
			inter.AddCert(ic)
		}
	}
	verify := func() error {
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
		return err
	}
	err = verify()
	var ua x509.UnknownAuthorityError
	if err != nil && errors.As(err, &ua) {
		// Fetch the missing CAs (composing: allowed), up to three levels.
		next := c
		for range 3 {
			got := s.fetchIssuers(ctx, next)
			if len(got) == 0 {
				break
			}
			for _, ic := range got {
				inter.AddCert(ic)
			}
			if err = verify(); err == nil || !errors.As(err, &ua) {
				break
			}
			next = got[0]
		}
	}
	return err == nil
}

// TrustAdd adds trust anchors: PEM or DER certificates (several in one
// PEM file), or a PKCS #7 bundle. It returns every certificate of the data,
// now all anchors.
func (s *Service) TrustAdd(ctx context.Context, data []byte) ([]ipc.Certificate, error) {
	if !s.cfg.Trust.UserAnchors {
		return nil, s.fail(ctx, "trust-add", &ipc.Error{Name: ipc.NotAuthorized,
			Message: "the machine policy does not let users add trust anchors (trust.user_anchors is off); ask your IT department"})
	}
	if int64(len(data)) > s.cfg.Limits.MaxMessageBytes {
		return nil, s.fail(ctx, "trust-add", s.tooLarge())
	}
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, s.fail(ctx, "trust-add", err)
	}
	added, err := s.book.AddAnchors(ctx, certs)
	if len(added) > 0 {
		s.logger.Info("trust anchors added", "count", len(added))
		s.certificatesChanged()
	}
	if err != nil {
		return nil, s.fail(ctx, "trust-add", err)
	}
	return certInfos(certs), nil
}

// TrustList lists the trust anchors in effect besides the system's roots:
// the user's own (unless the policy turned them off) and the machine's,
// each with its scope and sources. Unreadable anchor files are logged and
// left out.
func (s *Service) TrustList(ctx context.Context) ([]ipc.Certificate, error) {
	anchors, err := s.book.TrustAnchors(ctx, s.trustSources())
	if err != nil {
		if !isCorruptOnly(err) {
			return nil, s.fail(ctx, "trust-list", err)
		}
		s.logger.Warn("trust anchors: unreadable files skipped", "err", err)
	}
	out := make([]ipc.Certificate, 0, len(anchors))
	for _, a := range anchors {
		ci := certInfo(a.Certificate)
		ci.Scope, ci.Sources = a.Scope.Strings(), a.Sources
		out = append(out, ci)
	}
	return out, nil
}

// TrustRemove removes trust anchors named by SHA-256 fingerprints (hex,
// colons and case ignored, several separated by white space) or given as
// PEM/DER certificates. It returns the anchors removed (none when none
// matched).
func (s *Service) TrustRemove(ctx context.Context, data []byte) ([]ipc.Certificate, error) {
	var fps []string
	if f, ok := parseFingerprints(data); ok {
		fps = f
	} else {
		certs, err := parseCertificates(data)
		if err != nil {
			return nil, s.fail(ctx, "trust-remove", err)
		}
		for _, c := range certs {
			fps = append(fps, certbook.Fingerprint(c))
		}
	}
	removed, err := s.book.RemoveAnchors(ctx, fps)
	if len(removed) > 0 {
		s.logger.Info("trust anchors removed", "count", len(removed))
		s.certificatesChanged()
	}
	if err != nil {
		return nil, s.fail(ctx, "trust-remove", err)
	}
	return certInfos(removed), nil
}

// parseFingerprints reads data as SHA-256 fingerprints.
func parseFingerprints(data []byte) ([]string, bool) {
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return nil, false
	}
	var out []string
	for _, f := range fields {
		f = strings.ToLower(strings.ReplaceAll(f, ":", ""))
		if len(f) != 64 {
			return nil, false
		}
		if _, err := hex.DecodeString(f); err != nil {
			return nil, false
		}
		out = append(out, f)
	}
	return out, true
}

// CertsAdd adds recipients' certificates to the address book: PEM or DER
// certificates, a PKCS #7 bundle (.p7c, .p7s), or a signed or certs-only
// S/MIME message. Every end-entity certificate with an e-mail address is
// added (the user asked for it: no trust check); a signed message's intact
// signatures also give their signers' capabilities. It returns the
// certificates added or refreshed.
func (s *Service) CertsAdd(ctx context.Context, data []byte) ([]ipc.Certificate, error) {
	if int64(len(data)) > s.cfg.Limits.MaxMessageBytes {
		return nil, s.fail(ctx, "certs-add", s.tooLarge())
	}
	entries, err := s.entriesFrom(ctx, data)
	if err != nil {
		return nil, s.fail(ctx, "certs-add", err)
	}
	var out []*x509.Certificate
	changed := false
	for _, e := range entries {
		e.Source = certbook.SourceUser
		ch, err := s.book.Add(ctx, e)
		if err != nil {
			return nil, s.fail(ctx, "certs-add", err)
		}
		changed = changed || ch
		out = append(out, e.Certificate)
	}
	if changed {
		s.logger.Info("address book: certificates added", "count", len(out))
		s.certificatesChanged()
	}
	return certInfos(out), nil
}

// entriesFrom reads the address-book entries CertsAdd stores from data.
func (s *Service) entriesFrom(ctx context.Context, data []byte) ([]certbook.Entry, error) {
	var entries []certbook.Entry
	var cas []*x509.Certificate // Issuers.Add keeps only the CAs
	keep := func(c *x509.Certificate) bool { return !c.IsCA && len(certbook.Emails(c)) > 0 }
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && (bytes.HasPrefix(trimmed, []byte("-----BEGIN")) || trimmed[0] == 0x30) {
		certs, err := parseCertificates(data)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if keep(c) {
				entries = append(entries, certbook.Entry{Certificate: c})
			}
		}
		cas = certs
	} else {
		// A MIME message: verify it for the signers' capabilities.
		roots, err := s.roots(ctx)
		if err != nil {
			return nil, err
		}
		st, err := smime.Verify(ctx, io.Discard, bytes.NewReader(data), smime.OpenOptions{Roots: roots, SpoolDir: s.spoolDir})
		if st == nil || len(st.Certificates) == 0 {
			if err == nil {
				err = badInput("the message holds no certificate")
			}
			return nil, err
		}
		caps := map[string]certbook.Entry{}
		for _, l := range st.Layers {
			for _, sr := range l.Signers {
				if sr.Certificate != nil && sr.Outcome != smime.OutcomeBad && sr.Outcome != smime.OutcomeWeak && sr.Capabilities != nil {
					when := sr.SigningTime
					if when.IsZero() || when.After(time.Now()) {
						when = time.Now()
					}
					caps[certbook.Fingerprint(sr.Certificate)] = certbook.Entry{Capabilities: sr.Capabilities, CapabilitiesSeen: when}
				}
			}
		}
		cas = st.Certificates
		for _, c := range st.Certificates {
			if keep(c) {
				e := caps[certbook.Fingerprint(c)]
				e.Certificate = c
				entries = append(entries, e)
			}
		}
	}
	if len(entries) == 0 {
		return nil, badInput("no end-entity certificate with an e-mail address in the data")
	}
	// The CA certificates that came along complete chains later (they are
	// not trust anchors).
	if _, err := s.issuers.Add(ctx, cas); err != nil {
		s.logger.Warn("intermediates: cannot store", "err", err)
	}
	return entries, nil
}

// CertsList lists the address book. Unreadable entries are logged and left
// out.
func (s *Service) CertsList(ctx context.Context) ([]ipc.Certificate, error) {
	entries, err := s.book.List(ctx)
	if err != nil {
		if !isCorruptOnly(err) {
			return nil, s.fail(ctx, "certs-list", err)
		}
		s.logger.Warn("address book: unreadable files skipped", "err", err)
	}
	out := make([]ipc.Certificate, 0, len(entries))
	for _, e := range entries {
		out = append(out, certInfo(e.Certificate))
	}
	return out, nil
}

// CertsFind returns the certificates Encrypt would use for email, best
// first, or the reason there is none (none-found, expired,
// wrong-key-usage). The user's own identities count too.
func (s *Service) CertsFind(ctx context.Context, email string) (ipc.CertLookup, error) {
	email = address(email)
	res := ipc.CertLookup{Email: email, Certificates: []ipc.Certificate{}}
	if email == "" {
		res.Reason = certbook.ReasonNoneFound
		return res, nil
	}
	ids, err := s.identities(ctx)
	if err != nil {
		s.logger.Warn("certs find: the key store cannot be listed; own identities left out", "err", err)
		ids = nil
	}
	look, err := s.lookup(ctx, email, ids, time.Now())
	if err != nil {
		return ipc.CertLookup{}, s.fail(ctx, "certs-find", err)
	}
	for _, e := range look.entries {
		res.Certificates = append(res.Certificates, certInfo(e.Certificate))
	}
	res.Reason = look.reason
	return res, nil
}

// parseCertificates reads certificates from PEM (CERTIFICATE and PKCS7
// blocks), DER (one or several concatenated certificates) or a DER/BER CMS
// SignedData (a .p7c or .p7s file).
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, badInput("no certificate in the data (it is empty)")
	}
	var out []*x509.Certificate
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		rest := trimmed
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			switch blk.Type {
			case "CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE":
				c, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					return nil, badInput("a PEM certificate cannot be read: %v", err)
				}
				out = append(out, c)
			case "PKCS7", "CMS":
				certs, err := bundleCertificates(blk.Bytes)
				if err != nil {
					return nil, err
				}
				out = append(out, certs...)
			}
		}
		if len(out) == 0 {
			return nil, badInput("no CERTIFICATE or PKCS7 block in the PEM data")
		}
		return out, nil
	}
	if certs, err := x509.ParseCertificates(trimmed); err == nil && len(certs) > 0 {
		return certs, nil
	}
	return bundleCertificates(trimmed)
}

// bundleCertificates reads the certificates of a CMS SignedData.
func bundleCertificates(der []byte) ([]*x509.Certificate, error) {
	sd, _, err := cms.ParseSignedData(der)
	if err != nil {
		return nil, badInput("neither certificates nor a PKCS #7 bundle: %s", plain(err))
	}
	if len(sd.Certificates) == 0 {
		return nil, badInput("the PKCS #7 data holds no certificate")
	}
	return sd.Certificates, nil
}
