package daemon

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/daemon/audit"
	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/revocation"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/smime"
	"github.com/smimed/smimed/smime/cms"
)

// Sign reads a message from in and writes it signed to out. The identity is
// req.Identity when given, else the best one for req.From (or, without it,
// the message's From header field): an address in the certificate
// (case-insensitive), valid now, key usage allowing signatures, newest
// NotAfter first. The passphrase is asked once, for the one signature.
// On error, what was written to out must be discarded.
func (s *Service) Sign(ctx context.Context, req ipc.SignRequest, in io.Reader, out io.Writer) error {
	msg := newInput(in, s.cfg.Limits.MaxMessageBytes)
	hdr, err := msg.header()
	if err != nil {
		return s.fail(ctx, "sign", s.inputError(msg, err))
	}
	from := address(or(req.From, hdr.from))
	ident, err := s.signingIdentity(ctx, from, req.Identity)
	if err == nil {
		err = s.checkOwnCertificate(ctx, ident, "sign")
	}
	if err != nil {
		return s.fail(ctx, "sign", err)
	}
	var ids []keystore.Identity
	if !canDecrypt(ident.Certificate) {
		ids, _ = s.identities(ctx) // for another certificate to name as the encryption key
	}
	preq := s.promptRequest(ident, prompt.Request{Operation: prompt.OpSign,
		Subject: or(req.Subject, hdr.subject), Counterpart: or(req.Counterpart, strings.Join(hdr.to, ", "))})
	err = func() error {
		signer, err := s.signer(ctx, ident, preq)
		if err != nil {
			return err
		}
		return smime.Sign(ctx, out, msg.reader(), s.signOptions(ident, signer, req.Opaque, ids))
	}()
	err = s.inputError(msg, err)
	msg.drain(ctx)
	s.noteOutcome(ident.ID, err)
	s.record(ctx, audit.OpSign, &ident, msg, err)
	if err != nil {
		return s.fail(ctx, "sign", err)
	}
	s.logger.Info("signed", "identity", ident.ID, "bytes", msg.n)
	return nil
}

func (s *Service) signOptions(ident keystore.Identity, signer crypto.Signer, opaque bool, ids []keystore.Identity) smime.SignOptions {
	enc := encryptionCertificate(ids, ident)
	chain := ident.Chain
	if enc != nil {
		// The certificate the preference names travels with the
		// signature, so that correspondents can learn it.
		chain = append(slices.Clip(chain), enc)
	}
	return smime.SignOptions{
		Signer:                signer,
		Certificate:           ident.Certificate,
		Chain:                 chain,
		Hash:                  s.cfg.Crypto.DefaultHash,
		Opaque:                opaque,
		EncryptionCertificate: enc,
		Capabilities:          capabilities(ident),
	}
}

// inputError puts the size limit first: once the input went over it, that
// is the error, whatever the engine made of the cut stream.
func (s *Service) inputError(msg *input, err error) error {
	if msg.tooLarge {
		return &tooLargeError{max: msg.max}
	}
	return err
}

// Encrypt reads a message from in and writes it encrypted to out, signed
// first when req.Sign. Every address in req.To needs a usable certificate
// in the address book (or among the user's own identities), else the
// request fails with NoRecipientCertificate naming each address and why,
// before anything is read or prompted. The sender's own certificate is
// always added so that the sent copy can be read: the identity for req.From,
// else for the message's From header field, else the user's only identity
// that can decrypt. The content cipher follows the recipients'
// capabilities learnt from their signed mail, and crypto.allow_modern.
func (s *Service) Encrypt(ctx context.Context, req ipc.EncryptRequest, in io.Reader, out io.Writer) error {
	op := "encrypt"
	if req.Sign {
		op = "sign-encrypt"
	}
	now := time.Now()
	ids, err := s.identities(ctx)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	var recips []smime.Recipient
	seen := map[string]bool{}
	addRecip := func(c *x509.Certificate, caps []cms.Capability) {
		fp := certbook.Fingerprint(c)
		if !seen[fp] {
			seen[fp] = true
			recips = append(recips, smime.Recipient{Certificate: c, Capabilities: caps})
		}
	}
	var missing []string
	for _, addr := range req.To {
		addr = address(addr)
		if addr == "" {
			continue
		}
		look, err := s.lookup(ctx, addr, ids, now)
		if err != nil {
			return s.fail(ctx, op, err)
		}
		if len(look.entries) == 0 {
			missing = append(missing, fmt.Sprintf("%s (%s)", addr, look.reason))
			continue
		}
		addRecip(look.entries[0].Certificate, look.entries[0].Capabilities)
	}
	if len(missing) > 0 {
		return s.fail(ctx, op, &ipc.Error{Name: ipc.NoRecipientCertificate,
			Message: "no usable certificate for " + strings.Join(missing, ", ")})
	}

	msg := newInput(in, s.cfg.Limits.MaxMessageBytes)
	hdr, err := msg.header()
	if err != nil {
		return s.fail(ctx, op, s.inputError(msg, err))
	}
	from := address(or(req.From, hdr.from))
	self, err := s.senderCertificate(ids, from, now)
	if err == nil {
		err = s.checkOwnRecipient(ctx, self, ids, now)
	}
	if err != nil {
		return s.fail(ctx, op, err)
	}
	addRecip(self, ownCapabilities(ids, self))
	eopts := smime.EncryptOptions{Recipients: recips, AllowModern: s.cfg.Crypto.AllowModern}

	if !req.Sign {
		err := s.inputError(msg, smime.Encrypt(ctx, out, msg.reader(), eopts))
		if err != nil {
			return s.fail(ctx, op, err)
		}
		s.logger.Info("encrypted", "recipients", len(recips), "bytes", msg.n)
		return nil
	}

	ident, err := s.signingIdentity(ctx, from, "")
	if err == nil {
		err = s.checkOwnCertificate(ctx, ident, "sign")
	}
	if err != nil {
		return s.fail(ctx, op, err)
	}
	preq := s.promptRequest(ident, prompt.Request{Operation: prompt.OpSign, Subject: or(req.Subject, hdr.subject),
		Counterpart: strings.Join(req.To, ", ")})
	err = func() error {
		signer, err := s.signer(ctx, ident, preq)
		if err != nil {
			return err
		}
		return smime.SignAndEncrypt(ctx, out, msg.reader(), s.signOptions(ident, signer, false, ids), eopts)
	}()
	err = s.inputError(msg, err)
	msg.drain(ctx)
	s.noteOutcome(ident.ID, err)
	s.record(ctx, audit.OpSignEncrypt, &ident, msg, err)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	s.logger.Info("signed and encrypted", "identity", ident.ID, "recipients", len(recips), "bytes", msg.n)
	return nil
}

// senderCertificate is the user's own certificate added to every encrypted
// message.
func (s *Service) senderCertificate(ids []keystore.Identity, from string, now time.Time) (*x509.Certificate, error) {
	if from != "" {
		ok, err := usable(ids, from, "decrypt the sent copy", canDecrypt, now)
		if err != nil {
			return nil, err
		}
		return ok[0].Certificate, nil
	}
	var dec []keystore.Identity
	for _, id := range ids {
		if certbook.ValidAt(id.Certificate, now) && canDecrypt(id.Certificate) {
			dec = append(dec, id)
		}
	}
	if len(dec) == 1 {
		return dec[0].Certificate, nil
	}
	return nil, noIdentity("no From address to choose your own certificate by, for the sent copy (the message has no From header field, and you have %d identities that can decrypt)", len(dec))
}

// Decrypt opens every S/MIME layer, decrypting with the identity a
// RecipientInfo names (its passphrase is asked then, once per private-key
// operation, and the use is audited) and verifying signatures against the
// user's trust anchors (and the system's, per trust.system_roots). Signers'
// certificates are added to the address book (see learn). It writes the
// innermost protected entity to out; on error, discard what out received.
func (s *Service) Decrypt(ctx context.Context, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	return s.open(ctx, "decrypt", req, in, out, true)
}

// Verify checks signatures without decrypting (an encrypted message fails
// with NoIdentity) and writes the signed content to out. Signers'
// certificates are added to the address book (see learn).
func (s *Service) Verify(ctx context.Context, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	return s.open(ctx, "verify", req, in, out, false)
}

func (s *Service) open(ctx context.Context, op string, req ipc.OpenRequest, in io.Reader, out io.Writer, decrypt bool) (ipc.MessageStatus, error) {
	roots, err := s.anchors(ctx, certbook.ScopeSigning)
	if err != nil {
		return messageStatus(nil), s.fail(ctx, op, err)
	}
	msg := newInput(in, s.cfg.Limits.MaxMessageBytes)
	known := s.issuerPool(ctx)
	opts := smime.OpenOptions{Roots: roots, Intermediates: known, From: req.From, SpoolDir: s.spoolDir}
	if s.revoker.Policy != revocation.Off {
		opts.CheckRevocation = s.chainRevocation
	}
	if s.cfg.Trust.FetchIssuers == config.FetchAlways {
		// Off by default: fetching a URL named by a certificate in the
		// message would tell its owner when the mail was read.
		opts.FetchIssuers = s.fetchIssuers
	}
	var hdr msgHeader
	if decrypt { // for the prompt text
		if hdr, err = msg.header(); err != nil {
			return messageStatus(nil), s.fail(ctx, op, s.inputError(msg, err))
		}
	}

	var mu sync.Mutex
	var used []keystore.Identity
	if decrypt {
		opts.FindKey = func(kctx context.Context, ris []cms.RecipientInfo) (*smime.DecryptionKey, error) {
			ids, err := s.identities(kctx)
			if err != nil {
				return nil, err
			}
			for _, ri := range ris {
				for _, id := range ids {
					if !ri.Matches(id.Certificate) {
						continue
					}
					preq := s.promptRequest(id, prompt.Request{Operation: prompt.OpDecrypt,
						Subject: or(req.Subject, hdr.subject), Counterpart: or(req.From, hdr.from)})
					h, err := s.decrypter(kctx, id, preq)
					if err != nil {
						return nil, err
					}
					mu.Lock()
					used = append(used, id)
					mu.Unlock()
					return &smime.DecryptionKey{Certificate: id.Certificate, PrivateKey: h}, nil
				}
			}
			return nil, smime.ErrNoKey
		}
	}

	var st *smime.Status
	if decrypt {
		st, err = smime.Open(ctx, out, msg.reader(), opts)
	} else {
		st, err = smime.Verify(ctx, out, msg.reader(), opts)
	}
	err = s.inputError(msg, err)
	msg.drain(ctx)
	mu.Lock()
	for _, id := range used {
		s.noteOutcome(id.ID, err)
		s.record(ctx, audit.OpDecrypt, &id, msg, err)
	}
	mu.Unlock()
	s.learn(ctx, st, roots, known)

	status := messageStatus(st)
	if errors.Is(err, smime.ErrNotSMIME) {
		// Not an error for a mail UI: the message is simply unprotected,
		// and nothing was written to out.
		status.Error = "the message is not S/MIME protected"
		return status, nil
	}
	if decrypt && errors.Is(err, smime.ErrDecryptionFailed) {
		// Processed but not decryptable (wrong key, failed integrity
		// check): an outcome the UI shows, not a failed request. Nothing
		// of the content is valid; the client discards what out received.
		s.logger.Debug("opened", "op", op, "decryption", "failed", "reason", err.Error(), "bytes", msg.n)
		status.Encrypted, status.Decryption = true, smime.DecryptionFail
		status.Error = "the message could not be decrypted: it was damaged or changed in transit, or is not for this key"
		return status, nil
	}
	if err != nil {
		if !decrypt && errors.Is(err, smime.ErrNoKey) {
			err = &ipc.Error{Name: ipc.NoIdentity, Message: "the message is encrypted; Verify does not decrypt (use Decrypt)", Err: err}
		}
		mapped := s.fail(ctx, op, err)
		if status.Error == "" {
			status.Error = mapped.(*ipc.Error).Message
		}
		return status, mapped
	}
	s.logger.Debug("opened", "op", op, "signature", status.Signature, "decryption", status.Decryption, "bytes", msg.n)
	return status, nil
}

// learn adds to the address book what a message proves: the certificate of
// every signer whose signature is good (or good but from another address,
// email-mismatch) with its capabilities, the certificate its
// SMIMEEncryptionKeyPreference names (when it is in the message, shares an
// address with the signer and chains to the trust anchors), and, for a
// certs-only message, every end-entity certificate with an address that
// chains to the trust anchors. Untrusted certificates are never added
// automatically: the user adds them with CertsAdd.
func (s *Service) learn(ctx context.Context, st *smime.Status, roots, known *x509.CertPool) {
	if st == nil {
		return
	}
	now := time.Now()
	var inter *x509.CertPool // built only when a certificate needs a chain check
	trusted := func(c *x509.Certificate) bool {
		if inter == nil {
			inter = known.Clone()
			for _, mc := range st.Certificates {
				inter.AddCert(mc)
			}
		}
		chains, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
		if err == nil {
			s.learnIssuers(ctx, st.Certificates, chains[0])
		}
		return err == nil
	}
	var adds []certbook.Entry
	certsOnly := false
	for _, l := range st.Layers {
		if l.Type == smime.LayerCertsOnly {
			certsOnly = true
		}
		for _, sr := range l.Signers {
			if sr.Certificate == nil || (sr.Outcome != smime.OutcomeGood && sr.Outcome != smime.OutcomeEmailMismatch) {
				continue
			}
			when := sr.SigningTime
			if when.IsZero() || when.After(now) {
				when = now
			}
			e := certbook.Entry{Certificate: sr.Certificate, Source: certbook.SourceMessage}
			if sr.Capabilities != nil {
				e.Capabilities, e.CapabilitiesSeen = sr.Capabilities, when
			}
			if sr.EncryptionKeyPreference != nil && sr.EncryptionKeyPreference.Matches(sr.Certificate) {
				e.PreferredAt = when
			}
			adds = append(adds, e)
			s.learnIssuers(ctx, st.Certificates, sr.Chain) // the engine verified it
			if p := sr.EncryptionKeyPreference; p != nil && !p.Matches(sr.Certificate) {
				for _, c := range st.Certificates {
					if p.Matches(c) && sharesEmail(c, sr.Certificate) && trusted(c) {
						adds = append(adds, certbook.Entry{Certificate: c, Source: certbook.SourceMessage,
							Capabilities: sr.Capabilities, CapabilitiesSeen: when, PreferredAt: when})
					}
				}
			}
		}
	}
	if certsOnly {
		for _, c := range st.Certificates {
			if !c.IsCA && len(certbook.Emails(c)) > 0 && trusted(c) {
				adds = append(adds, certbook.Entry{Certificate: c, Source: certbook.SourceMessage})
			}
		}
	}
	changed := false
	for _, e := range adds {
		ch, err := s.book.Add(ctx, e)
		if err != nil {
			s.logger.Warn("address book: cannot add a certificate", "sha256", e.Fingerprint(), "err", err)
			continue
		}
		if ch {
			s.logger.Info("address book: certificate learnt from a message", "sha256", e.Fingerprint(), "emails", certbook.Emails(e.Certificate))
		}
		changed = changed || ch
	}
	if changed {
		s.certificatesChanged()
	}
}

func sharesEmail(a, b *x509.Certificate) bool {
	for _, e := range certbook.Emails(a) {
		if slices.Contains(certbook.Emails(b), e) {
			return true
		}
	}
	return false
}

// messageStatus converts the engine's status to the contract's; nil gives
// the status of a message nothing could be learnt about.
func messageStatus(st *smime.Status) ipc.MessageStatus {
	ms := ipc.MessageStatus{
		Signature:  smime.OutcomeNone,
		Revocation: "not-checked",
		Decryption: smime.DecryptionNone,
		Layers:     []ipc.Layer{},
	}
	if st == nil {
		return ms
	}
	ms.Encrypted, ms.Signed, ms.Error = st.Encrypted, st.Signed, st.Error
	if st.Signature != "" {
		ms.Signature = st.Signature
	}
	if st.Revocation != "" {
		ms.Revocation = st.Revocation
	}
	if st.Decryption != "" {
		ms.Decryption = st.Decryption
	}
	if st.Signer != nil {
		ms.Signer = ipc.SignerSummary{Email: st.Signer.Email, Subject: st.Signer.Subject, SHA256: st.Signer.SHA256}
	}
	for _, l := range st.Layers {
		il := ipc.Layer{Type: l.Type, Form: l.Form, Cipher: l.Cipher, Error: l.Error}
		for _, sr := range l.Signers {
			r := ipc.SignerResult{Outcome: sr.Outcome, OutcomeNow: sr.OutcomeNow, Reason: sr.Reason, Email: sr.Email,
				Subject: sr.Subject, SHA256: sr.SHA256, Hash: sr.Hash, Algorithm: sr.Algorithm, TimeStampAuthority: sr.TimeStampAuthority}
			if !sr.SigningTime.IsZero() {
				r.SigningTime = sr.SigningTime.UTC().Format(time.RFC3339)
			}
			if !sr.TrustedTime.IsZero() {
				r.TrustedTime = sr.TrustedTime.UTC().Format(time.RFC3339)
			}
			if rv := sr.Revocation; rv != nil {
				r.Revocation = &ipc.RevocationResult{Status: rv.Status, Reason: rv.Reason, Detail: rv.Detail}
				if !rv.RevokedAt.IsZero() {
					r.Revocation.RevokedAt = rv.RevokedAt.UTC().Format(time.RFC3339)
				}
			}
			il.Signers = append(il.Signers, r)
		}
		ms.Layers = append(ms.Layers, il)
	}
	return ms
}
