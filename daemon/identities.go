package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/tokens"
)

// identityInfo describes an identity for clients.
func identityInfo(id keystore.Identity) ipc.Identity {
	c := id.Certificate
	emails := certbook.Emails(c)
	if emails == nil {
		emails = []string{}
	}
	return ipc.Identity{
		ID:         id.ID,
		Label:      id.Label,
		Emails:     emails,
		Subject:    c.Subject.String(),
		Issuer:     c.Issuer.String(),
		NotAfter:   c.NotAfter.UTC().Format(time.RFC3339),
		SHA256:     certbook.Fingerprint(c),
		Source:     id.Backend,
		KeyType:    keyType(c),
		CanSign:    certbook.CanSign(c),
		CanDecrypt: canDecrypt(c),
	}
}

// canDecrypt reports whether messages can be encrypted to the certificate
// (and so decrypted with its key).
func canDecrypt(c *x509.Certificate) bool { return certbook.CanEncrypt(c) }

// keyType names a certificate's key: "rsa2048", "p256", ...
func keyType(c *x509.Certificate) string {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "p" + strings.TrimPrefix(k.Curve.Params().Name, "P-")
	}
	return "unknown"
}

// usable picks, among the identities, those that name email, are valid now
// and whose key usage allows the operation (can), newest NotAfter first.
// When none is left, the error is a NoIdentity error saying why.
func usable(ids []keystore.Identity, email, doing string, can func(*x509.Certificate) bool, now time.Time) ([]keystore.Identity, error) {
	var named, valid, ok []keystore.Identity
	for _, id := range ids {
		if !certbook.HasEmail(id.Certificate, email) {
			continue
		}
		named = append(named, id)
		if !certbook.ValidAt(id.Certificate, now) {
			continue
		}
		valid = append(valid, id)
		if can(id.Certificate) {
			ok = append(ok, id)
		}
	}
	switch {
	case len(named) == 0:
		return nil, noIdentity("you have no identity for %s to %s with", email, doing)
	case len(valid) == 0:
		latest := slices.MaxFunc(named, func(a, b keystore.Identity) int {
			return a.Certificate.NotAfter.Compare(b.Certificate.NotAfter)
		})
		if now.Before(latest.Certificate.NotBefore) {
			return nil, noIdentity("your certificate for %s is not valid before %s", email, latest.Certificate.NotBefore.UTC().Format(time.RFC3339))
		}
		return nil, noIdentity("your certificate for %s expired on %s", email, latest.Certificate.NotAfter.UTC().Format(time.RFC3339))
	case len(ok) == 0:
		return nil, noIdentity("the key usage of your certificate for %s does not allow it to %s", email, doing)
	}
	slices.SortStableFunc(ok, func(a, b keystore.Identity) int {
		return b.Certificate.NotAfter.Compare(a.Certificate.NotAfter)
	})
	return ok, nil
}

// signingIdentity chooses the identity that signs: the explicit ID when
// given, else the best identity for the from address (see usable), else the
// only identity that can sign.
func (s *Service) signingIdentity(ctx context.Context, from, explicitID string) (keystore.Identity, error) {
	now := time.Now()
	if explicitID != "" {
		id, err := s.store.Identity(ctx, strings.ToLower(explicitID))
		if errors.Is(err, keystore.ErrNotFound) && s.tokens != nil {
			// Not in the key store: perhaps on a token.
			t, terr := s.tokens.Identity(ctx, strings.ToLower(explicitID))
			if terr == nil {
				id, err = fromToken(t), nil
			} else if !errors.Is(terr, tokens.ErrNotFound) {
				err = terr
			}
		}
		if err != nil {
			return keystore.Identity{}, err
		}
		switch {
		case !certbook.ValidAt(id.Certificate, now):
			return keystore.Identity{}, noIdentity("the certificate of identity %s is not valid now (valid %s to %s)", id.ID,
				id.Certificate.NotBefore.UTC().Format(time.RFC3339), id.Certificate.NotAfter.UTC().Format(time.RFC3339))
		case !certbook.CanSign(id.Certificate):
			return keystore.Identity{}, noIdentity("the key usage of identity %s does not allow signing", id.ID)
		}
		return id, nil
	}
	ids, err := s.identities(ctx)
	if err != nil {
		return keystore.Identity{}, err
	}
	if from == "" {
		var signers []keystore.Identity
		for _, id := range ids {
			if certbook.ValidAt(id.Certificate, now) && certbook.CanSign(id.Certificate) {
				signers = append(signers, id)
			}
		}
		if len(signers) == 1 {
			return signers[0], nil
		}
		return keystore.Identity{}, noIdentity("no From address to choose the signing identity by (the message has no From header field, and you have %d identities that can sign)", len(signers))
	}
	ok, err := usable(ids, from, "sign", certbook.CanSign, now)
	if err != nil {
		return keystore.Identity{}, err
	}
	return ok[0], nil
}

// encryptionCertificate returns the certificate others should encrypt to
// for the signer: its own when it can receive encrypted mail, else the
// newest of the user's identities for the same address that can. nil means
// the signing certificate (the engine's default).
func encryptionCertificate(ids []keystore.Identity, signer keystore.Identity) *x509.Certificate {
	if canDecrypt(signer.Certificate) {
		return nil
	}
	for _, email := range certbook.Emails(signer.Certificate) {
		if ok, err := usable(ids, email, "decrypt", canDecrypt, time.Now()); err == nil {
			return ok[0].Certificate
		}
	}
	return nil
}
