package tokens

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens/internal/wire"
)

// Signer returns a handle that signs with the identity's private key on
// its token. It does not prompt; each call to its Sign method is one
// operation that
//
//   - checks the token is present, its PIN not locked and the mechanism
//     supported (failing before any prompt),
//   - asks for the PIN through the Prompter (Kind PIN; a PIN-pad reader
//     gets a Notice instead, a token without login a Confirm),
//   - opens a session, logs in (CKU_USER), C_SignInit, logs in again with
//     CKU_CONTEXT_SPECIFIC when the key has CKA_ALWAYS_AUTHENTICATE, signs,
//     logs out and closes the session,
//   - zeroes the PIN on both sides of the worker pipe.
//
// ctx is kept by the handle and bounds its prompts and calls
// (crypto.Signer has no context of its own). req describes the operation
// for the prompt (Operation, Subject, Counterpart, Error): Kind, TokenLabel
// and TriesLeft are set here, Operation defaults to "sign" and KeyLabel to
// the identity's label; when req.Error is empty and the previous login on
// this token failed, the prompt says so.
//
// RSA keys sign PKCS #1 v1.5 (CKM_RSA_PKCS with the DigestInfo built
// here, for SHA-1, SHA-224, SHA-256, SHA-384 and SHA-512, or raw when the
// hash is 0) and PSS (*rsa.PSSOptions, CKM_RSA_PKCS_PSS; salt as long as
// the hash unless a length is given). EC keys sign with CKM_ECDSA over the
// digest and return an ASN.1 DER signature.
func (m *Manager) Signer(ctx context.Context, id Identity, req prompt.Request) (crypto.Signer, error) {
	h, err := m.newHandle(ctx, id, req, prompt.OpSign)
	if err != nil {
		return nil, err
	}
	return &signer{h}, nil
}

// Decrypter returns a handle for the identity's private key to open
// messages, one operation (and one prompt) per call, like Signer.
//
// For an RSA key the handle's Decrypt takes nil or
// *rsa.PKCS1v15DecryptOptions (CKM_RSA_PKCS) or *rsa.OAEPOptions
// (CKM_RSA_PKCS_OAEP; MGF1 with the OAEP hash unless MGFHash says
// otherwise). Bad padding gives an error wrapping rsa.ErrDecryption. A
// token that refuses the OAEP hash (SoftHSM implements only SHA-1) gives
// ErrUnsupported naming it, e.g. "RSA-OAEP with SHA-256", before the PIN
// is asked when the token shows the public key.
//
// For an EC key the handle also has ECDH(remote *ecdh.PublicKey)
// ([]byte, error) (smime/cms.KeyAgreer): CKM_ECDH1_DERIVE into a
// session-only secret whose value is read and the object destroyed. Its
// Decrypt fails with ErrUnsupported.
func (m *Manager) Decrypter(ctx context.Context, id Identity, req prompt.Request) (crypto.Decrypter, error) {
	h, err := m.newHandle(ctx, id, req, prompt.OpDecrypt)
	if err != nil {
		return nil, err
	}
	if id.KeyType == "ec" {
		return &ecKey{h}, nil
	}
	return &rsaDecrypter{h}, nil
}

func (m *Manager) newHandle(ctx context.Context, id Identity, req prompt.Request, op string) (*handle, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	if id.Certificate == nil || len(id.KeyID) == 0 {
		return nil, fmt.Errorf("%w: incomplete identity", ErrNotFound)
	}
	md, ok := m.byPath[id.Token.Module]
	if !ok {
		return nil, fmt.Errorf("%w: module %s is not configured", ErrNotFound, id.Token.Module)
	}
	if kt, ok := certKeyType(id.Certificate); !ok || kt != id.KeyType {
		return nil, fmt.Errorf("%w: key type %T", ErrUnsupported, id.Certificate.PublicKey)
	}
	if req.Operation == "" {
		req.Operation = op
	}
	return &handle{m: m, md: md, ctx: ctx, id: id, req: req}, nil
}

// handle is what Signer and Decrypter return, before the key type's
// methods.
type handle struct {
	m   *Manager
	md  *module
	ctx context.Context
	id  Identity
	req prompt.Request
}

// Public returns the certificate's public key.
func (h *handle) Public() crypto.PublicKey { return h.id.Certificate.PublicKey }

type signer struct{ *handle }

// Sign makes one signature (one PIN prompt).
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	hash := crypto.Hash(0)
	if opts != nil {
		hash = opts.HashFunc()
	}
	if hash != 0 && len(digest) != hash.Size() {
		return nil, fmt.Errorf("tokens: sign: digest is %d bytes, %v needs %d", len(digest), hash, hash.Size())
	}
	var op operation
	op.op = wire.OpSign
	switch s.id.KeyType {
	case "rsa":
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			ckh, mgf, err := hashMechanisms(hash)
			if err != nil {
				return nil, err
			}
			salt := pss.SaltLength
			if salt == rsa.PSSSaltLengthAuto || salt == rsa.PSSSaltLengthEqualsHash {
				salt = hash.Size()
			}
			if salt < 0 {
				return nil, fmt.Errorf("tokens: sign: PSS salt length %d", pss.SaltLength)
			}
			op.mech = &wire.Mechanism{Type: wire.CKM_RSA_PKCS_PSS, Hash: ckh, MGF: mgf, SaltLen: uint(salt)}
			op.what = "RSA-PSS with " + hash.String()
			op.data = digest
		} else {
			prefix, err := digestInfoPrefix(hash)
			if err != nil {
				return nil, err
			}
			op.mech = &wire.Mechanism{Type: wire.CKM_RSA_PKCS}
			op.what = "RSA PKCS #1 v1.5 signatures"
			op.data = append(prefix, digest...)
		}
	case "ec":
		op.mech = &wire.Mechanism{Type: wire.CKM_ECDSA}
		op.what = "ECDSA"
		op.data = digest
	}
	res, _, err := s.run(op)
	if err != nil {
		return nil, err
	}
	if s.id.KeyType == "ec" {
		return ecdsaDER(res)
	}
	return res, nil
}

type rsaDecrypter struct{ *handle }

// Decrypt performs one RSA decryption (one PIN prompt).
func (d *rsaDecrypter) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	pub := d.id.Certificate.PublicKey.(*rsa.PublicKey)
	if len(msg) > pub.Size() {
		return nil, fmt.Errorf("tokens: decrypt: ciphertext of %d bytes for a %d-byte key: %w", len(msg), pub.Size(), rsa.ErrDecryption)
	}
	op := operation{op: wire.OpDecrypt, data: msg}
	sessionKeyLen := 0
	switch o := opts.(type) {
	case nil:
		op.mech, op.what = &wire.Mechanism{Type: wire.CKM_RSA_PKCS}, "RSA PKCS #1 v1.5 decryption"
	//lint:ignore SA1019 S/MIME peers (Thunderbird, Outlook) still send PKCS #1 v1.5 key transport; cards must open it.
	case *rsa.PKCS1v15DecryptOptions:
		op.mech, op.what = &wire.Mechanism{Type: wire.CKM_RSA_PKCS}, "RSA PKCS #1 v1.5 decryption"
		sessionKeyLen = o.SessionKeyLen
	case *rsa.OAEPOptions:
		mgfHash := o.MGFHash
		if mgfHash == 0 {
			mgfHash = o.Hash
		}
		ckh, _, err := hashMechanisms(o.Hash)
		if err != nil {
			return nil, err
		}
		_, mgf, err := hashMechanisms(mgfHash)
		if err != nil {
			return nil, err
		}
		op.mech = &wire.Mechanism{Type: wire.CKM_RSA_PKCS_OAEP, Hash: ckh, MGF: mgf, Label: o.Label}
		op.what = "RSA-OAEP with " + o.Hash.String()
		if mgfHash != o.Hash {
			op.what += " and MGF1 with " + mgfHash.String()
		}
	default:
		return nil, fmt.Errorf("%w: decryption options %T", ErrUnsupported, opts)
	}
	_, pt, err := d.run(op)
	if err != nil && sessionKeyLen > 0 && errors.Is(err, rsa.ErrDecryption) {
		// crypto/rsa's contract for SessionKeyLen: a random key instead
		// of an error, so that the caller fails later in the same way.
		key := make([]byte, sessionKeyLen)
		_, _ = rand.Read(key)
		return key, nil
	}
	return pt, err
}

type ecKey struct{ *handle }

// Decrypt fails: EC keys open messages by key agreement (ECDH).
func (k *ecKey) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) {
	return nil, fmt.Errorf("%w: an EC key cannot decrypt; use ECDH", ErrUnsupported)
}

// ECDH performs one key agreement with remote on the token (one PIN
// prompt) and returns the shared secret (the x-coordinate, as crypto/ecdh
// does).
func (k *ecKey) ECDH(remote *ecdh.PublicKey) ([]byte, error) {
	if remote == nil {
		return nil, errors.New("tokens: ECDH: no remote key")
	}
	pub, err := k.id.Certificate.PublicKey.(*ecdsa.PublicKey).ECDH()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	if pub.Curve() != remote.Curve() {
		return nil, errors.New("tokens: ECDH: the remote key is on another curve")
	}
	size := (k.id.Certificate.PublicKey.(*ecdsa.PublicKey).Curve.Params().BitSize + 7) / 8
	_, z, err := k.run(operation{
		op:       wire.OpDerive,
		mech:     &wire.Mechanism{Type: wire.CKM_ECDH1_DERIVE},
		what:     "ECDH key agreement",
		data:     remote.Bytes(),
		valueLen: size,
	})
	return z, err
}

// operation is one private-key operation for run.
type operation struct {
	op       string
	mech     *wire.Mechanism
	what     string // for ErrUnsupported: "RSA-OAEP with SHA-256"
	data     []byte
	valueLen int
}

// run performs op on the handle's token: prepare (no prompt), prompt,
// operate. It returns the public result (a signature) or the secret one
// (plaintext, shared secret).
func (h *handle) run(op operation) (result, secret []byte, err error) {
	m, ctx, tok := h.m, h.ctx, h.id.Token
	if m.isClosed() {
		return nil, nil, ErrClosed
	}
	unlock, err := m.lockToken(ctx, tok.ID)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()

	ref := tok.ref
	base := wire.Request{Token: &ref, KeyID: h.id.KeyID, KeyType: h.id.keyType(), Mechanism: op.mech}
	prep := base
	prep.Op = wire.OpPrepare
	resp, _, err := h.md.call(ctx, prep, nil, m.o.CallTimeout)
	if err != nil {
		return nil, nil, h.md.moduleErr(err)
	}
	if resp.Err != nil {
		return nil, nil, h.opErr(op, resp.Err)
	}
	flags := uint(0)
	if resp.Token != nil {
		flags = resp.Token.Flags
	}
	if flags&wire.CKF_USER_PIN_LOCKED != 0 {
		m.dropPIN(tok.ID)
		return nil, nil, pinLockedError(tok.Label)
	}
	if m.o.Prompter == nil {
		return nil, nil, fmt.Errorf("tokens: token %q: %w", tok.Label, prompt.ErrNoPrompter)
	}

	req := base
	req.Op, req.Data, req.ValueLen = op.op, op.data, op.valueLen
	timeout := m.o.CallTimeout
	var pin *prompt.Secret
	defer func() { pin.Wipe() }()
	switch {
	case flags&wire.CKF_LOGIN_REQUIRED == 0:
		req.Login = wire.LoginNone
		s, err := m.o.Prompter.Ask(ctx, h.promptRequest(prompt.Confirm, flags))
		s.Wipe()
		if err != nil {
			return nil, nil, fmt.Errorf("tokens: token %q: %w", tok.Label, err)
		}
	case flags&wire.CKF_PROTECTED_AUTHENTICATION_PATH != 0:
		req.Login = wire.LoginPINPad
		timeout = m.o.PINPadTimeout
		dismiss := prompt.ShowNotice(ctx, m.o.Prompter, h.promptRequest(prompt.Notice, flags))
		defer func() {
			if err := dismiss(); err != nil {
				m.log.Debug("tokens: PIN-pad notice", "token", tok.Label, "err", err)
			}
		}()
	default:
		req.Login = wire.LoginPIN
		pin = m.cachedPIN(tok.ID)
		if pin == nil {
			pin, err = m.o.Prompter.Ask(ctx, h.promptRequest(prompt.PIN, flags))
			if err != nil {
				return nil, nil, fmt.Errorf("tokens: token %q: %w", tok.Label, err)
			}
			if pin.Len() == 0 {
				return nil, nil, fmt.Errorf("%w: empty PIN for token %q", ErrPinIncorrect, tok.Label)
			}
		}
	}

	start := time.Now()
	resp, secret, err = h.md.call(ctx, req, pin.Bytes(), timeout)
	if err != nil {
		return nil, nil, h.md.moduleErr(err)
	}
	if resp.Err != nil {
		clear(secret)
		switch resp.Err.Kind {
		case wire.KindPinIncorrect:
			m.setLastFailed(tok.ID, true)
			m.dropPIN(tok.ID)
		case wire.KindPinLocked:
			m.dropPIN(tok.ID)
		}
		m.log.Debug("tokens: operation failed", "op", op.op, "token", tok.Label, "identity", h.id.ID, "err", resp.Err)
		return nil, nil, h.opErr(op, resp.Err)
	}
	m.setLastFailed(tok.ID, false)
	if req.Login == wire.LoginPIN && m.o.CachePIN > 0 {
		m.cachePIN(tok.ID, pin)
	}
	m.log.Debug("tokens: operation done", "op", op.op, "token", tok.Label, "identity", h.id.ID, "took", time.Since(start))
	return resp.Result, secret, nil
}

// opErr maps a worker error for op, naming the mechanism for
// ErrUnsupported.
func (h *handle) opErr(op operation, e *wire.Error) error {
	if e.Kind == wire.KindUnsupported && op.what != "" {
		return fmt.Errorf("%w: %s on token %q (%v)", ErrUnsupported, op.what, h.id.Token.Label, e)
	}
	return opError(h.id.Token.Label, e)
}

// promptRequest completes the caller's request for this token.
func (h *handle) promptRequest(kind prompt.Kind, flags uint) prompt.Request {
	r := h.req
	r.Kind = kind
	if r.KeyLabel == "" {
		r.KeyLabel = h.id.Label
	}
	r.TokenLabel = h.id.Token.Label
	r.TriesLeft = prompt.TriesUnknown
	if flags&wire.CKF_USER_PIN_FINAL_TRY != 0 {
		r.TriesLeft = 1
	}
	if r.Error == "" && kind != prompt.Confirm {
		var parts []string
		if h.m.lastFailedLogin(h.id.Token.ID) {
			parts = append(parts, "Wrong PIN.")
		}
		if flags&wire.CKF_USER_PIN_COUNT_LOW != 0 && flags&wire.CKF_USER_PIN_FINAL_TRY == 0 {
			parts = append(parts, "PIN retry count low: too many wrong PINs lock the card.")
		}
		r.Error = strings.Join(parts, " ")
	}
	return r
}

func (m *Manager) setLastFailed(tokenID string, failed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if failed {
		m.lastFailed[tokenID] = true
	} else {
		delete(m.lastFailed, tokenID)
	}
}

func (m *Manager) lastFailedLogin(tokenID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastFailed[tokenID]
}

// hashMechanisms returns the CKM_ hash and CKG_MGF1_ values for h.
func hashMechanisms(h crypto.Hash) (ckm, mgf uint, err error) {
	switch h {
	case crypto.SHA1:
		return wire.CKM_SHA_1, wire.CKG_MGF1_SHA1, nil
	case crypto.SHA224:
		return wire.CKM_SHA224, wire.CKG_MGF1_SHA224, nil
	case crypto.SHA256:
		return wire.CKM_SHA256, wire.CKG_MGF1_SHA256, nil
	case crypto.SHA384:
		return wire.CKM_SHA384, wire.CKG_MGF1_SHA384, nil
	case crypto.SHA512:
		return wire.CKM_SHA512, wire.CKG_MGF1_SHA512, nil
	}
	return 0, 0, fmt.Errorf("%w: hash %v", ErrUnsupported, h)
}

// digestInfoPrefix returns the DER of DigestInfo up to the digest (RFC
// 8017 §9.2, note 1) for h, or nothing for h = 0 (the caller passes the
// encoded DigestInfo itself).
func digestInfoPrefix(h crypto.Hash) ([]byte, error) {
	var oid asn1.ObjectIdentifier
	switch h {
	case 0:
		return nil, nil
	case crypto.SHA1:
		oid = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	case crypto.SHA224:
		oid = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	case crypto.SHA256:
		oid = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	case crypto.SHA384:
		oid = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	case crypto.SHA512:
		oid = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	default:
		return nil, fmt.Errorf("%w: PKCS #1 v1.5 signature with %v", ErrUnsupported, h)
	}
	type algorithm struct {
		OID    asn1.ObjectIdentifier
		Params asn1.RawValue
	}
	type digestInfo struct {
		Algorithm algorithm
		Digest    []byte
	}
	der, err := asn1.Marshal(digestInfo{
		Algorithm: algorithm{OID: oid, Params: asn1.NullRawValue},
		Digest:    make([]byte, h.Size()),
	})
	if err != nil {
		return nil, err
	}
	return der[:len(der)-h.Size()], nil
}

// ecdsaDER turns CKM_ECDSA's r || s into an ASN.1 ECDSA-Sig-Value.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("%w: ECDSA signature of %d bytes from the token", ErrTokenFailed, len(raw))
	}
	n := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
}
