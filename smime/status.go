package smime

import (
	"crypto/x509"
	"time"

	"github.com/smimed/smimed/smime/cms"
)

// Signature outcomes, per signer and in Status.Signature, from worst to
// best. A signer gets the first that applies.
const (
	// OutcomeBad: the content was changed after signing, the signature
	// value is wrong, the signer's certificate is not in the message, or
	// the detached part and an embedded content differ.
	OutcomeBad = "bad"
	// OutcomeWeak: the signature is intact but uses MD5, SHA-1 or an RSA
	// key shorter than 2048 bits; never shown as good.
	OutcomeWeak = "weak-algorithm"
	// OutcomeExpired: the signer's certificate is not valid now (expired
	// or not yet valid).
	OutcomeExpired = "expired"
	// OutcomeUntrusted: no chain to a trust anchor, or the certificate is
	// not meant for signing mail (key usage, extended key usage).
	OutcomeUntrusted = "untrusted"
	// OutcomeRevoked: OpenOptions.CheckRevocation found the signer's
	// certificate (or a certificate of its chain) revoked. A signature
	// time-stamped before a revocation for a benign reason (superseded,
	// affiliationChanged, cessationOfOperation, privilegeWithdrawn) keeps
	// the outcome it had when it was made, and SignerResult.OutcomeNow says
	// "revoked".
	OutcomeRevoked = "revoked"
	// OutcomeEmailMismatch: a good signature whose certificate does not
	// name the message's From address.
	OutcomeEmailMismatch = "email-mismatch"
	// OutcomeGood: intact, trusted, valid, and from the sender.
	OutcomeGood = "good"
	// OutcomeNone: the message is not signed (Status.Signature only).
	OutcomeNone = "none"
)

// Decryption results in Status.Decryption.
const (
	DecryptionOK    = "ok"
	DecryptionNoKey = "no-key"
	DecryptionFail  = "failed"
	DecryptionNone  = "none"
)

// Layer types and forms in Layer.
const (
	LayerSigned        = "signed"
	LayerEnveloped     = "enveloped"
	LayerAuthEnveloped = "auth-enveloped"
	LayerCertsOnly     = "certs-only"

	FormDetached = "detached"
	FormOpaque   = "opaque"
)

// Status reports what Open found, in the JSON shape of DESIGN.md's status
// object. More fields may be added; these keep their meaning.
type Status struct {
	// Encrypted is true when any layer was enveloped or auth-enveloped.
	Encrypted bool `json:"encrypted"`
	// Signed is true when any layer was signed.
	Signed bool `json:"signed"`
	// Signature summarises the innermost signed layer: its first good
	// signer, else its first signer's outcome; "none" when unsigned.
	Signature string `json:"signature"`
	// Signer is the signer the summary is about.
	Signer *SignerIdentity `json:"signer,omitempty"`
	// Revocation is the revocation status ("good", "revoked", "unknown")
	// of the signer the summary is about, "not-checked" when it was not
	// checked (no OpenOptions.CheckRevocation, or a signer whose outcome
	// was already expired, untrusted, bad or weak).
	Revocation string `json:"revocation"`
	// Decryption is "ok", "no-key", "failed" or "none" (not encrypted);
	// with several enveloped layers, the first that was not "ok".
	Decryption string `json:"decryption"`
	// Layers lists every S/MIME layer from the outside in.
	Layers []Layer `json:"layers"`
	// Error is the reason processing stopped, when Open returned an error.
	Error string `json:"error"`
	// Certificates holds every certificate seen in the message (certs-only
	// layers, certificates of signed layers), for the address book.
	Certificates []*x509.Certificate `json:"-"`
}

// SignerIdentity names a signer.
type SignerIdentity struct {
	// Email is the first e-mail address in the certificate
	// (subjectAltName rfc822Name, else the subject's emailAddress).
	Email string `json:"email"`
	// Subject is the certificate's subject name (RFC 2253 form).
	Subject string `json:"subject"`
	// SHA256 is the hex SHA-256 fingerprint of the certificate's DER.
	SHA256 string `json:"sha256"`
}

// Layer is one S/MIME layer.
type Layer struct {
	// Type is "signed", "enveloped", "auth-enveloped" or "certs-only";
	// "compressed" or "unknown" for a pkcs7-mime layer that could not be
	// processed.
	Type string `json:"type"`
	// Form is "detached" (multipart/signed) or "opaque"
	// (application/pkcs7-mime) for signed layers.
	Form string `json:"form,omitempty"`
	// Cipher names the content cipher of an encrypted layer
	// ("aes256-cbc", ...).
	Cipher string `json:"cipher,omitempty"`
	// Signers has one result per SignerInfo of a signed layer.
	Signers []SignerResult `json:"signers,omitempty"`
	// Error says why the layer could not be processed, if it could not.
	Error string `json:"error,omitempty"`
}

// SignerResult is the outcome for one signer of a signed layer.
type SignerResult struct {
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// Reason explains the outcome to a person.
	Reason string `json:"reason"`
	// Email, Subject and SHA256 identify the signer's certificate (empty
	// when it was not found).
	Email   string `json:"email"`
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
	// SigningTime is the signed signingTime attribute, zero when absent.
	SigningTime time.Time `json:"signing_time,omitzero"`
	// Hash is the digest algorithm ("SHA-256"); Algorithm the signature
	// algorithm ("RSA-PSS", "ECDSA", ...).
	Hash      string `json:"hash"`
	Algorithm string `json:"algorithm"`
	// Capabilities is the signer's SMIMECapabilities attribute, nil when
	// absent: what to use when encrypting to them (Recipient.Capabilities).
	Capabilities []cms.Capability `json:"-"`
	// EncryptionKeyPreference is the signer's SMIMEEncryptionKeyPreference
	// attribute, nil when absent.
	EncryptionKeyPreference *cms.KeyPreference `json:"-"`
	// Certificate is the signer's certificate, nil when not found.
	Certificate *x509.Certificate `json:"-"`
	// Chain is the verified chain, leaf first and trust anchor last, when
	// the outcome is good or email-mismatch (or the signature was judged
	// at its trusted time with a chain that verified then); nil otherwise.
	Chain []*x509.Certificate `json:"-"`
	// TrustedTime is the time a verified RFC 3161 time-stamp token (from a
	// TSA chaining to OpenOptions.Roots) proves the signature existed at;
	// zero without one. Outcome is then judged at this time. The
	// signingTime attribute is never a trusted time.
	TrustedTime time.Time `json:"trusted_time,omitzero"`
	// TimeStampAuthority names the TSA that vouches for TrustedTime.
	TimeStampAuthority string `json:"tsa,omitempty"`
	// TimeStamp is the verified time-stamp token, nil without one.
	TimeStamp *cms.TimeStamp `json:"-"`
	// OutcomeNow is the outcome judged at the present time (OpenOptions.Now),
	// set only when a trusted time exists and the two differ: e.g. "good"
	// when signed, "expired" now.
	OutcomeNow string `json:"outcome_now,omitempty"`
	// Revocation is what OpenOptions.CheckRevocation found for the
	// signer's chain; nil when it was not called.
	Revocation *Revocation `json:"revocation,omitempty"`
}

// Revocation statuses, in Revocation.Status and Status.Revocation.
const (
	// RevocationGood: a source (OCSP responder, CRL) said the chain is
	// not revoked.
	RevocationGood = "good"
	// RevocationRevoked: a certificate of the chain is revoked.
	RevocationRevoked = "revoked"
	// RevocationUnknown: no source could answer; Revocation.Detail says
	// why.
	RevocationUnknown = "unknown"
	// RevocationNotChecked: revocation was not checked.
	RevocationNotChecked = "not-checked"
)

// Revocation is what a revocation check found for a signer's certificate
// chain.
type Revocation struct {
	// Status is "good", "revoked", "unknown" or "not-checked" (the
	// Revocation constants); an empty Status counts as "not-checked".
	Status string `json:"status"`
	// RevokedAt is when the certificate was revoked (status revoked).
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// Reason is the RFC 5280 CRLReason name ("keyCompromise",
	// "superseded", ...) of a revocation; empty when none was given.
	Reason string `json:"reason,omitempty"`
	// Detail says why the status is unknown, or which source answered.
	Detail string `json:"detail,omitempty"`
	// Fails says that the caller's policy treats this result as a
	// failure: a revoked certificate always fails; an unknown status makes
	// the signer untrusted only when Fails is set (hard-fail).
	Fails bool `json:"-"`
}
