package keystore

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"unsafe"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/smimed/smimed/prompt"
)

// ImportOptions configure [Store.ImportPKCS12] and [Store.ImportPEM].
type ImportOptions struct {
	// NewPassphrase is the passphrase that will protect the key in the
	// store (it must not be empty). When nil, the Prompter is asked for it
	// twice, both times with Kind Passphrase and Operation "import", the
	// identity's label as KeyLabel and a Title of "smimed: new passphrase
	// for this key", then "smimed: repeat the new passphrase"; different
	// answers fail with [ErrPassphraseMismatch] (not retried). The store
	// wipes it.
	NewPassphrase *prompt.Secret
}

// Prompt titles used by the import methods.
const (
	titleP12Password = "smimed: password of the PKCS #12 file"
	titleNewPass     = "smimed: new passphrase for this key"
	titleRepeatPass  = "smimed: repeat the new passphrase"
)

// ImportPKCS12 imports the key and certificates of a PKCS #12 (.p12, .pfx)
// file, as written by OpenSSL, NSS (Thunderbird, Firefox), Windows and macOS:
// PBES2 with AES as well as the legacy PBE-SHA1-3DES and PBE-SHA1-RC2
// encryptions. The certificate whose public key matches the private key
// becomes the identity's certificate, whatever its position in the file;
// the other certificates become its chain.
//
// password opens the file; when nil it is asked through the Prompter (Kind
// Passphrase, Operation "import", Title "smimed: password of the PKCS #12
// file"). A wrong password fails with [ErrWrongPassphrase], not retried. The
// key is then stored encrypted under a new passphrase (see [ImportOptions]).
// The store wipes password and opts.NewPassphrase. Importing an identity
// that is already in the store fails with [ErrExists]: remove it first to
// change its passphrase.
func (s *Store) ImportPKCS12(ctx context.Context, data []byte, password *prompt.Secret, opts ImportOptions) (Identity, error) {
	defer password.Wipe()
	defer opts.NewPassphrase.Wipe()
	if err := s.checkOpen(); err != nil {
		return Identity{}, err
	}
	if len(data) == 0 {
		return Identity{}, fmt.Errorf("%w: empty PKCS #12 data", ErrBadInput)
	}
	if password == nil {
		var err error
		password, err = s.prompter.Ask(ctx, prompt.Request{
			Kind: prompt.Passphrase, Operation: prompt.OpImport,
			TriesLeft: prompt.TriesUnknown, Title: titleP12Password,
		})
		defer password.Wipe()
		if err != nil {
			return Identity{}, fmt.Errorf("keystore: PKCS #12 password: %w", err)
		}
	}
	key, leaf, others, err := decodePKCS12(data, password.Bytes())
	password.Wipe()
	if err != nil {
		return Identity{}, err
	}
	defer wipeKey(key)
	return s.importKey(ctx, key, leaf, others, opts)
}

// decodePKCS12 opens a PKCS #12 file. The password is handed to go-pkcs12
// as a string that aliases pw (no copy that could not be wiped); the string
// does not outlive this call.
func decodePKCS12(data, pw []byte) (crypto.PrivateKey, *x509.Certificate, []*x509.Certificate, error) {
	var password string
	if len(pw) > 0 {
		password = unsafe.String(&pw[0], len(pw))
	}
	if isBER(data) {
		// NSS writes BER; go-pkcs12 reads DER (see pkcs12ber.go).
		der, err := derPKCS12(data, pw)
		if errors.Is(err, ErrWrongPassphrase) {
			return nil, nil, nil, fmt.Errorf("%w: PKCS #12 password", ErrWrongPassphrase)
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%w: PKCS #12 (BER): %w", ErrBadInput, err)
		}
		data = der
	}
	key, first, rest, err := pkcs12.DecodeChain(data, password)
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return nil, nil, nil, fmt.Errorf("%w: PKCS #12 password", ErrWrongPassphrase)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: PKCS #12: %w", ErrBadInput, err)
	}
	all := append([]*x509.Certificate{first}, rest...)
	leaf, others, err := pickLeaf(key, all)
	if err != nil {
		wipeKey(key)
		return nil, nil, nil, err
	}
	return key, leaf, others, nil
}

// ImportPEM imports a PEM private key (PKCS #8 "PRIVATE KEY", PKCS #1 "RSA
// PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"; encrypted PEM keys are refused:
// import them as PKCS #12) and its certificate (certPEM may hold the chain
// too, in any order; keyPEM and certPEM may be the same bytes). A key that
// matches none of the certificates fails with [ErrKeyMismatch]. The key is
// stored encrypted under a new passphrase (see [ImportOptions]). keyPEM is
// not modified: the caller should clear it.
func (s *Store) ImportPEM(ctx context.Context, keyPEM, certPEM []byte, opts ImportOptions) (Identity, error) {
	defer opts.NewPassphrase.Wipe()
	if err := s.checkOpen(); err != nil {
		return Identity{}, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return Identity{}, err
	}
	defer wipeKey(key)
	var certs []*x509.Certificate
	rest := certPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: certificate: %w", ErrBadInput, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return Identity{}, fmt.Errorf("%w: no CERTIFICATE block in the certificate PEM", ErrBadInput)
	}
	leaf, others, err := pickLeaf(key, certs)
	if err != nil {
		return Identity{}, err
	}
	return s.importKey(ctx, key, leaf, others, opts)
}

// parseKeyPEM finds the one private key in data.
func parseKeyPEM(data []byte) (crypto.PrivateKey, error) {
	var key crypto.PrivateKey
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var k crypto.PrivateKey
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if _, enc := b.Headers["DEK-Info"]; enc {
				err = errors.New("encrypted PEM keys are not supported; import a PKCS #12 file")
			} else if b.Type == "RSA PRIVATE KEY" {
				k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
			} else {
				k, err = x509.ParseECPrivateKey(b.Bytes)
			}
		case "ENCRYPTED PRIVATE KEY":
			err = errors.New("encrypted PKCS #8 keys are not supported; import a PKCS #12 file")
		default:
			continue // certificates, EC PARAMETERS
		}
		clear(b.Bytes)
		if err != nil {
			wipeKey(key)
			return nil, fmt.Errorf("%w: %s: %w", ErrBadInput, b.Type, err)
		}
		if key != nil {
			wipeKey(key)
			wipeKey(k)
			return nil, fmt.Errorf("%w: more than one private key in the PEM data", ErrBadInput)
		}
		key = k
	}
	if key == nil {
		return nil, fmt.Errorf("%w: no private key in the PEM data", ErrBadInput)
	}
	return key, nil
}

// pickLeaf returns the certificate matching key and the others, ordered from
// the leaf's issuer upwards where they chain.
func pickLeaf(key crypto.PrivateKey, certs []*x509.Certificate) (*x509.Certificate, []*x509.Certificate, error) {
	if err := checkKeyType(key); err != nil {
		return nil, nil, err
	}
	var leaf *x509.Certificate
	var others []*x509.Certificate
	for _, c := range certs {
		switch {
		case leaf == nil && keyMatches(key, c):
			leaf = c
		default:
			others = append(others, c)
		}
	}
	if leaf == nil {
		return nil, nil, ErrKeyMismatch
	}
	return leaf, orderChain(leaf, others), nil
}

// orderChain puts the issuers of leaf first, nearest first, then whatever
// else came with it; duplicates of the leaf are dropped.
func orderChain(leaf *x509.Certificate, others []*x509.Certificate) []*x509.Certificate {
	used := make([]bool, len(others))
	var out []*x509.Certificate
	cur := leaf
	for {
		if bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			break
		}
		next := -1
		for i, c := range others {
			if !used[i] && issuedBy(cur, c) {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		used[next] = true
		out = append(out, others[next])
		cur = others[next]
	}
	for i, c := range others {
		if !used[i] && !c.Equal(leaf) {
			out = append(out, c)
		}
	}
	return out
}

// issuedBy reports whether c names issuer as its issuer (subject name, and
// key identifier when both carry one).
func issuedBy(c, issuer *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, issuer.RawSubject) {
		return false
	}
	if len(c.AuthorityKeyId) > 0 && len(issuer.SubjectKeyId) > 0 {
		return bytes.Equal(c.AuthorityKeyId, issuer.SubjectKeyId)
	}
	return true
}

// checkKeyType accepts RSA keys and ECDSA keys on the curves crypto/ecdh
// supports.
func checkKeyType(key crypto.PrivateKey) error {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 1024 {
			return fmt.Errorf("%w: %d-bit RSA", ErrUnsupportedKey, k.N.BitLen())
		}
		return nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("%w: EC curve %s", ErrUnsupportedKey, k.Curve.Params().Name)
	}
	return fmt.Errorf("%w: %T", ErrUnsupportedKey, key)
}

// importKey stores key (already matched to leaf) under a new passphrase.
func (s *Store) importKey(ctx context.Context, key crypto.PrivateKey, leaf *x509.Certificate, chain []*x509.Certificate, opts ImportOptions) (Identity, error) {
	ident := Identity{
		ID:          fingerprintID(leaf),
		Label:       labelFor(leaf),
		Certificate: leaf,
		Chain:       chain,
		Backend:     s.vault.Backend(),
	}
	switch _, err := s.vault.get(ctx, ident.ID, kindCert); {
	case err == nil:
		return Identity{}, fmt.Errorf("%w: %s (%s)", ErrExists, ident.Label, ident.ID)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrCorrupt):
		// new, or a damaged entry that the import repairs
	default:
		return Identity{}, err
	}

	pass := opts.NewPassphrase
	if pass == nil {
		var err error
		pass, err = s.askNewPassphrase(ctx, ident.Label)
		if err != nil {
			return Identity{}, err
		}
	}
	defer pass.Wipe()
	if pass.Len() == 0 {
		return Identity{}, ErrEmptyPassphrase
	}

	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrUnsupportedKey, err)
	}
	var blob []byte
	err = s.withKDF(ctx, func() error {
		var err error
		blob, err = sealKey(der, pass.Bytes(), ident.ID, fingerprintBytes(leaf), s.kdf)
		return err
	})
	clear(der)
	pass.Wipe()
	if err != nil {
		return Identity{}, err
	}

	// Key first, then certificate: an identity becomes visible only once
	// both are stored.
	err = s.vault.put(ctx, item{id: ident.ID, kind: kindKey, label: "smimed key " + ident.Label, data: blob})
	if err != nil {
		return Identity{}, fmt.Errorf("keystore: store key of %s: %w", ident.ID, err)
	}
	err = s.vault.put(ctx, item{id: ident.ID, kind: kindCert, label: "smimed certificate " + ident.Label, data: certPEM(leaf, chain)})
	if err != nil {
		if rerr := s.vault.remove(context.WithoutCancel(ctx), ident.ID, kindKey); rerr != nil {
			s.log.WarnContext(ctx, "keystore: cannot remove the key of a failed import", "id", ident.ID, "err", rerr)
		}
		return Identity{}, fmt.Errorf("keystore: store certificate of %s: %w", ident.ID, err)
	}
	s.log.InfoContext(ctx, "keystore: identity imported", "id", ident.ID, "label", ident.Label)
	return ident, nil
}

// askNewPassphrase asks twice for the passphrase of a new key and returns it
// when both answers agree.
func (s *Store) askNewPassphrase(ctx context.Context, label string) (*prompt.Secret, error) {
	req := prompt.Request{
		Kind: prompt.Passphrase, Operation: prompt.OpImport, KeyLabel: label,
		TriesLeft: prompt.TriesUnknown, Title: titleNewPass,
	}
	first, err := s.prompter.Ask(ctx, req)
	if err != nil {
		first.Wipe()
		return nil, fmt.Errorf("keystore: new passphrase: %w", err)
	}
	if first.Len() == 0 {
		first.Wipe()
		return nil, ErrEmptyPassphrase
	}
	req.Title = titleRepeatPass
	again, err := s.prompter.Ask(ctx, req)
	defer again.Wipe()
	if err != nil {
		first.Wipe()
		return nil, fmt.Errorf("keystore: repeat new passphrase: %w", err)
	}
	if subtle.ConstantTimeCompare(first.Bytes(), again.Bytes()) != 1 {
		first.Wipe()
		return nil, ErrPassphraseMismatch
	}
	return first, nil
}
