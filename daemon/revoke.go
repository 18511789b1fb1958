package daemon

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/revocation"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/smime"
)

// Reasons a recipient's certificate is refused for revocation, beside
// certbook's.
const (
	reasonRevoked           = "revoked"
	reasonRevocationUnknown = "revocation-unknown"
)

// newRevocationChecker builds the checker the configuration asks for, with
// its CRL cache under cacheDir.
func newRevocationChecker(cfg config.Revocation, cacheDir string) (*revocation.Checker, error) {
	p, err := revocation.ParsePolicy(cfg.Policy)
	if err != nil {
		return nil, err
	}
	c := &revocation.Checker{Policy: p, Timeout: cfg.Timeout}
	if cacheDir != "" {
		c.CacheDir = filepath.Join(cacheDir, "crl")
	}
	return c, nil
}

// chainRevocation checks a chain (leaf first, ending with the trust anchor
// or at the last issuer known): the leaf always, an intermediate CA when it
// names an OCSP responder or a CRL (many issuing CAs' own status is only in
// their root's CRL, and a CA certificate without pointers cannot be asked
// about). The anchor itself is never checked. The first revoked
// certificate decides; otherwise any unknown makes the chain unknown.
func (s *Service) chainRevocation(ctx context.Context, chain []*x509.Certificate) smime.Revocation {
	if s.revoker.Policy == revocation.Off {
		return smime.Revocation{Status: smime.RevocationNotChecked, Detail: "revocation checking is off"}
	}
	if len(chain) == 0 {
		return s.unknownRevocation("no certificate")
	}
	if len(chain) == 1 {
		if bytes.Equal(chain[0].RawIssuer, chain[0].RawSubject) {
			return smime.Revocation{Status: smime.RevocationNotChecked, Detail: "the certificate is itself a trust anchor"}
		}
		return s.unknownRevocation(fmt.Sprintf("the issuer of %s was not found, so its revocation status cannot be checked", subjectName(chain[0])))
	}
	var unknown []string
	leafSource := ""
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		if i > 0 && len(c.OCSPServer) == 0 && len(c.CRLDistributionPoints) == 0 {
			continue
		}
		r := s.revoker.Check(ctx, c, issuer)
		switch r.Status {
		case revocation.Revoked:
			who := "the certificate"
			if i > 0 {
				who = "its issuing CA " + subjectName(c)
			}
			return smime.Revocation{Status: smime.RevocationRevoked, RevokedAt: r.RevokedAt, Reason: r.Reason, Fails: true,
				Detail: fmt.Sprintf("%s was revoked on %s%s (%s)", who, r.RevokedAt.UTC().Format(time.RFC3339), reasonSuffix(r.Reason), r.Source)}
		case revocation.Unknown:
			unknown = append(unknown, fmt.Sprintf("%s: %s", subjectName(c), r.Detail))
		case revocation.Good:
			if i == 0 {
				leafSource = r.Source
			}
		}
	}
	if len(unknown) > 0 {
		return s.unknownRevocation(strings.Join(unknown, "; "))
	}
	return smime.Revocation{Status: smime.RevocationGood, Detail: leafSource}
}

func (s *Service) unknownRevocation(detail string) smime.Revocation {
	return smime.Revocation{Status: smime.RevocationUnknown, Detail: detail,
		Fails: s.revoker.Fails(revocation.Result{Status: revocation.Unknown})}
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// subjectName is a short name for a certificate in messages.
func subjectName(c *x509.Certificate) string {
	if e := certbook.Emails(c); len(e) > 0 {
		return e[0]
	}
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

// issuerChain builds cert's chain for a revocation check outside a message
// (recipients' certificates, the user's own): verified to the anchors of
// scope when it can be, with intermediates from extra, the user's
// identities' chains and the address book's CAs (and AIA when composing);
// else the leaf and an issuer found among those certificates by name and
// signature (a certificate the user added by hand need not chain to an
// anchor, but its CA still answers for it); else the leaf alone.
func (s *Service) issuerChain(ctx context.Context, cert *x509.Certificate, scope certbook.Scope, extra []*x509.Certificate, ids []keystore.Identity, now time.Time) []*x509.Certificate {
	candidates := append([]*x509.Certificate(nil), extra...)
	for _, id := range ids {
		candidates = append(candidates, id.Chain...)
	}
	candidates = append(candidates, s.knownIssuers(ctx)...)
	inter := x509.NewCertPool()
	for _, c := range candidates {
		inter.AddCert(c)
	}
	if roots, err := s.anchors(ctx, scope); err == nil {
		chains, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil && len(chains) > 0 {
			return chains[0]
		}
	}
	if anchors, err := s.anchorList(ctx, scope); err == nil {
		candidates = append(candidates, anchors...)
	}
	for _, c := range candidates {
		if bytes.Equal(cert.RawIssuer, c.RawSubject) && cert.CheckSignatureFrom(c) == nil {
			return []*x509.Certificate{cert, c}
		}
	}
	if got := s.fetchIssuers(ctx, cert); len(got) > 0 {
		return []*x509.Certificate{cert, got[0]}
	}
	return []*x509.Certificate{cert}
}

// certRevocation checks one certificate outside a message.
func (s *Service) certRevocation(ctx context.Context, cert *x509.Certificate, scope certbook.Scope, extra []*x509.Certificate, ids []keystore.Identity, now time.Time) smime.Revocation {
	if s.revoker.Policy == revocation.Off {
		return smime.Revocation{Status: smime.RevocationNotChecked, Detail: "revocation checking is off"}
	}
	return s.chainRevocation(ctx, s.issuerChain(ctx, cert, scope, extra, ids, now))
}

// notRevoked keeps the entries whose certificate is not revoked (nor, under
// hard-fail, of unknown status), in order. When none is left it returns the
// reason for the address: revoked, or revocation-unknown.
func (s *Service) notRevoked(ctx context.Context, entries []certbook.Entry, ids []keystore.Identity, now time.Time) ([]certbook.Entry, string) {
	if s.revoker.Policy == revocation.Off || len(entries) == 0 {
		return entries, ""
	}
	var ok []certbook.Entry
	reason := ""
	for _, e := range entries {
		r := s.certRevocation(ctx, e.Certificate, certbook.ScopeEncryption, nil, ids, now)
		if !r.Fails {
			if r.Status == smime.RevocationUnknown {
				s.logger.Info("recipient certificate: revocation status unknown (soft-fail)", "sha256", e.Fingerprint(), "detail", r.Detail)
			}
			ok = append(ok, e)
			continue
		}
		s.logger.Warn("recipient certificate refused", "sha256", e.Fingerprint(), "revocation", r.Status, "detail", r.Detail)
		if r.Status == smime.RevocationRevoked {
			reason = reasonRevoked
		} else if reason == "" {
			reason = reasonRevocationUnknown
		}
	}
	if len(ok) == 0 {
		return nil, reason
	}
	return ok, ""
}

// checkOwnCertificate refuses to sign (or to encrypt the sent copy) with
// one of the user's own certificates that is revoked, or of unknown status
// under hard-fail, saying why.
func (s *Service) checkOwnCertificate(ctx context.Context, ident keystore.Identity, doing string) error {
	if s.revoker.Policy == revocation.Off {
		return nil
	}
	r := s.certRevocation(ctx, ident.Certificate, certbook.ScopeSigning, ident.Chain, nil, time.Now())
	if !r.Fails {
		if r.Status == smime.RevocationUnknown {
			s.logger.Info("own certificate: revocation status unknown (soft-fail)", "identity", ident.ID, "detail", r.Detail)
		}
		return nil
	}
	if r.Status == smime.RevocationRevoked {
		return noIdentity("your certificate %s cannot be used to %s: %s; ask your certificate authority for a new one", subjectName(ident.Certificate), doing, r.Detail)
	}
	return noIdentity("your certificate %s cannot be used to %s: its revocation status could not be checked and the policy requires it (%s)", subjectName(ident.Certificate), doing, r.Detail)
}
