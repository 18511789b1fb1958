package tokens

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/smimed/smimed/tokens/internal/wire"
)

// Identity is a certificate on a token together with the private key that
// has the same CKA_ID on the same token.
type Identity struct {
	// ID is the lower-case hex SHA-256 of the certificate, the same value
	// keystore/ uses and the status JSON shows as signer.sha256.
	ID string
	// Label is "CN <email>" from the certificate's subject.
	Label string
	// Certificate is the identity's certificate.
	Certificate *x509.Certificate
	// Chain holds the certificates on the same token that issued it, up
	// to but not including a self-signed root.
	Chain []*x509.Certificate
	// Token is the token holding the key.
	Token Token
	// KeyID is the CKA_ID shared by the certificate and the key.
	KeyID []byte
	// KeyLabel is the certificate object's CKA_LABEL (or the key's).
	KeyLabel string
	// KeyType is "rsa" or "ec".
	KeyType string
	// KeyVisible is true when the private key object is visible without
	// login. Many tokens (SoftHSM among them) hide private keys until the
	// PIN is given; the identity then rests on a public key object with
	// the same CKA_ID, or, on such a token, on the certificate alone, and
	// the key is looked up when it is used.
	KeyVisible bool
	// AlwaysAuthenticate is the key's CKA_ALWAYS_AUTHENTICATE as far as it
	// can be read without login (false when the key is hidden). Every
	// operation reads it again after login and logs in with
	// CKU_CONTEXT_SPECIFIC when it is set.
	AlwaysAuthenticate bool
	// CanSign and CanDecrypt say what the key may do: CKA_SIGN and
	// CKA_DECRYPT (CKA_DERIVE for EC keys) when the key is visible, the
	// certificate's key usage otherwise.
	CanSign, CanDecrypt bool
}

// keyType returns the CKK_ value for the identity's key.
func (id Identity) keyType() uint {
	if id.KeyType == "ec" {
		return wire.CKK_EC
	}
	return wire.CKK_RSA
}

// Identities lists the identities on every token present. Like Tokens it
// returns what it found together with an error joining the failures of
// single modules or tokens.
func (m *Manager) Identities(ctx context.Context) ([]Identity, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	return eachModule(m.modules, func(md *module) ([]Identity, error) { return md.identities(ctx) })
}

// Identity returns the identity with the given ID (see Identity.ID), from
// a fresh listing. ErrNotFound when no token present has it.
func (m *Manager) Identity(ctx context.Context, id string) (Identity, error) {
	ids, err := m.Identities(ctx)
	for _, ident := range ids {
		if ident.ID == id {
			return ident, nil
		}
	}
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %s (and some modules failed: %w)", ErrNotFound, id, err)
	}
	return Identity{}, fmt.Errorf("%w: %s", ErrNotFound, id)
}

func (md *module) identities(ctx context.Context) ([]Identity, error) {
	toks, err := md.tokens(ctx)
	if err != nil {
		return nil, err
	}
	var out []Identity
	var errs []error
	for _, t := range toks {
		ref := t.ref
		resp, _, err := md.call(ctx, wire.Request{Op: wire.OpObjects, Token: &ref}, nil, md.m.o.CallTimeout)
		if err != nil {
			errs = append(errs, md.moduleErr(err))
			break // the worker is gone or ctx ended
		}
		if resp.Err != nil {
			if resp.Err.Kind != wire.KindTokenRemoved {
				errs = append(errs, md.moduleErr(opError(t.Label, resp.Err)))
			}
			continue
		}
		if resp.Objects == nil {
			continue
		}
		out = append(out, md.m.buildIdentities(t, resp.Objects)...)
	}
	return out, errors.Join(errs...)
}

// buildIdentities pairs certificates with keys by CKA_ID.
func (m *Manager) buildIdentities(t Token, objs *wire.Objects) []Identity {
	var certs []*x509.Certificate
	var certObjs []wire.Cert
	for _, c := range objs.Certs {
		cert, err := x509.ParseCertificate(c.Value)
		if err != nil {
			m.log.Debug("tokens: unreadable certificate on token", "token", t.Label, "label", c.Label, "err", err)
			continue
		}
		certs = append(certs, cert)
		certObjs = append(certObjs, c)
	}
	privs := map[string]wire.Key{}
	pubs := map[string]wire.Key{}
	for _, k := range objs.Keys {
		if len(k.ID) == 0 {
			continue
		}
		if k.Private {
			privs[string(k.ID)] = k
		} else {
			pubs[string(k.ID)] = k
		}
	}
	var out []Identity
	for i, cert := range certs {
		co := certObjs[i]
		if len(co.ID) == 0 {
			continue
		}
		kt, ok := certKeyType(cert)
		if !ok {
			continue
		}
		priv, hasPriv := privs[string(co.ID)]
		pub, hasPub := pubs[string(co.ID)]
		hidden := t.LoginRequired && !cert.IsCA
		if !hasPriv && !hasPub && !hidden {
			continue
		}
		want := uint(wire.CKK_RSA)
		if kt == "ec" {
			want = wire.CKK_EC
		}
		if (hasPriv && priv.KeyType != want) || (hasPub && pub.KeyType != want) {
			m.log.Debug("tokens: key type does not match the certificate", "token", t.Label, "id", hex.EncodeToString(co.ID))
			continue
		}
		sum := sha256.Sum256(cert.Raw)
		id := Identity{
			ID:          hex.EncodeToString(sum[:]),
			Label:       labelFor(cert),
			Certificate: cert,
			Chain:       chainFor(cert, certs),
			Token:       t,
			KeyID:       bytes.Clone(co.ID),
			KeyLabel:    co.Label,
			KeyType:     kt,
			KeyVisible:  hasPriv,
		}
		if id.KeyLabel == "" && hasPriv {
			id.KeyLabel = priv.Label
		}
		if hasPriv {
			id.AlwaysAuthenticate = priv.AlwaysAuth
			id.CanSign = priv.Sign
			id.CanDecrypt = priv.Decrypt || (kt == "ec" && priv.Derive)
		} else {
			ku := cert.KeyUsage
			id.CanSign = ku == 0 || ku&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) != 0
			if kt == "ec" {
				id.CanDecrypt = ku == 0 || ku&x509.KeyUsageKeyAgreement != 0
			} else {
				id.CanDecrypt = ku == 0 || ku&(x509.KeyUsageKeyEncipherment|x509.KeyUsageDataEncipherment) != 0
			}
		}
		out = append(out, id)
	}
	return out
}

// certKeyType returns "rsa" or "ec" for keys smimed can use.
func certKeyType(c *x509.Certificate) (string, bool) {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return "rsa", true
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return "ec", true
		}
	}
	return "", false
}

// chainFor follows issuers among the token's certificates.
func chainFor(leaf *x509.Certificate, pool []*x509.Certificate) []*x509.Certificate {
	var chain []*x509.Certificate
	cur := leaf
	for range 8 {
		if bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			break
		}
		var next *x509.Certificate
		for _, c := range pool {
			if c != cur && bytes.Equal(c.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil || bytes.Equal(next.RawIssuer, next.RawSubject) {
			break
		}
		chain = append(chain, next)
		cur = next
	}
	return chain
}

// labelFor names a certificate "CN <email>", as keystore/ does.
func labelFor(c *x509.Certificate) string {
	cn := strings.TrimSpace(c.Subject.CommonName)
	email := ""
	if len(c.EmailAddresses) > 0 {
		email = c.EmailAddresses[0]
	}
	switch {
	case cn != "" && email != "" && !strings.EqualFold(cn, email):
		return cn + " <" + email + ">"
	case cn != "":
		return cn
	case email != "":
		return email
	}
	return c.Subject.String()
}
