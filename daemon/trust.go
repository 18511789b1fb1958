package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/smimed/smimed/daemon/aia"
	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/revocation"
)

// trustSources are the anchors' sources the configuration names.
func (s *Service) trustSources() certbook.TrustSources {
	t := s.cfg.Trust
	return certbook.TrustSources{
		System:            t.SystemRoots,
		User:              t.UserAnchors,
		MachineDir:        t.MachineDir,
		Anchors:           t.Anchors,
		SigningAnchors:    t.SigningAnchors,
		EncryptionAnchors: t.EncryptionAnchors,
	}
}

// anchors is the pool of trust anchors for scope: signatures are verified
// against ScopeSigning, recipients' directory certificates against
// ScopeEncryption. Never nil (nil would mean "the system roots" to the
// engine). Unreadable anchor files are logged and skipped.
func (s *Service) anchors(ctx context.Context, scope certbook.Scope) (*x509.CertPool, error) {
	pool, err := s.book.TrustPool(ctx, s.trustSources(), scope)
	if err != nil {
		if !isCorruptOnly(err) {
			return nil, err
		}
		s.logger.Warn("trust anchors: unreadable files skipped", "err", err)
	}
	return pool, nil
}

// roots is the pool signatures are verified against.
func (s *Service) roots(ctx context.Context) (*x509.CertPool, error) {
	return s.anchors(ctx, certbook.ScopeSigning)
}

// anchorList lists the user's and the machine's anchors of scope (not the
// system's roots), for finding a certificate's issuer by name.
func (s *Service) anchorList(ctx context.Context, scope certbook.Scope) ([]*x509.Certificate, error) {
	anchors, err := s.book.TrustAnchors(ctx, s.trustSources())
	if err != nil && !isCorruptOnly(err) {
		return nil, err
	}
	var out []*x509.Certificate
	for _, a := range anchors {
		if a.Scope&scope != 0 {
			out = append(out, a.Certificate)
		}
	}
	return out, nil
}

// knownIssuers are the intermediate CA certificates learnt from messages
// and fetched before.
func (s *Service) knownIssuers(ctx context.Context) []*x509.Certificate {
	certs, err := s.issuers.List(ctx)
	if err != nil {
		s.logger.Warn("intermediates: cannot be read", "err", err)
	}
	return certs
}

// issuerPool is the pool of knownIssuers, for chain building. It is
// shared: Clone it before adding to it.
func (s *Service) issuerPool(ctx context.Context) *x509.CertPool {
	pool, err := s.issuers.Pool(ctx)
	if err != nil {
		s.logger.Warn("intermediates: cannot be read", "err", err)
	}
	return pool
}

// fetchIssuers fetches cert's issuer from its AIA caIssuers URLs, unless
// trust.fetch_issuers is "never", and keeps what it found. Callers decide
// when fetching is allowed: always while composing or on request; while a
// message is read only with trust.fetch_issuers "always".
func (s *Service) fetchIssuers(ctx context.Context, cert *x509.Certificate) []*x509.Certificate {
	if s.cfg.Trust.FetchIssuers == config.FetchNever || s.aia == nil || len(cert.IssuingCertificateURL) == 0 {
		return nil
	}
	got, err := s.aia.Issuers(ctx, cert)
	if err != nil {
		s.logger.Info("intermediates: AIA fetch failed", "subject", cert.Subject.String(), "err", err)
		return nil
	}
	if _, err := s.issuers.Add(ctx, got); err != nil {
		s.logger.Warn("intermediates: cannot store", "err", err)
	}
	return got
}

// learnIssuers keeps the intermediate CA certificates of a verified chain
// (leaf first, anchor last) that came with the message.
func (s *Service) learnIssuers(ctx context.Context, msgCerts []*x509.Certificate, chain []*x509.Certificate) {
	if len(chain) <= 2 {
		return // no intermediate
	}
	var keep []*x509.Certificate
	for _, c := range chain[1 : len(chain)-1] {
		if c.IsCA && slices.ContainsFunc(msgCerts, c.Equal) {
			keep = append(keep, c)
		}
	}
	if len(keep) == 0 {
		return
	}
	if _, err := s.issuers.Add(ctx, keep); err != nil {
		s.logger.Warn("intermediates: cannot store", "err", err)
	}
}

// openCertServices opens the intermediate store and builds the revocation
// checker and the AIA fetcher, all caching under cacheDir
// ($XDG_CACHE_HOME/smimed when empty).
func openCertServices(cfg *config.Config, cacheDir string) (*certbook.Issuers, *revocation.Checker, *aia.Fetcher, error) {
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("daemon: no cache directory: %w", err)
		}
		cacheDir = filepath.Join(base, "smimed")
	}
	issuers, err := certbook.OpenIssuers(filepath.Join(cacheDir, "issuers"))
	if err != nil {
		return nil, nil, nil, err
	}
	revoker, err := newRevocationChecker(cfg.Revocation, cacheDir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("daemon: %w", err)
	}
	fetcher := &aia.Fetcher{CacheDir: filepath.Join(cacheDir, "aia")}
	return issuers, revoker, fetcher, nil
}
