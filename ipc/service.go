// Package ipc is the contract between smimed and its clients: the service
// every transport serves (D-Bus on Linux, a per-user named pipe on Windows),
// the plain types it exchanges, and the typed errors a client can tell apart.
//
// The transports live in subpackages (ipc/dbus); the daemon implements
// Service; smimectl and smimed-host call a Service through a client.
// Package ipc depends on nothing else in this module.
package ipc

import (
	"context"
	"io"
)

// Service is what smimed offers. Every method runs on behalf of the caller
// in ctx (see CallerFrom); a transport has already checked that the caller is
// the daemon's own user before calling it. Large payloads are streams: the
// transport passes file descriptors, never whole messages in memory.
type Service interface {
	// Status reports the daemon's state for `smimectl status`.
	Status(ctx context.Context) (DaemonStatus, error)
	// Identities lists the user's own identities that can sign or decrypt.
	Identities(ctx context.Context) ([]Identity, error)
	// Tokens lists PKCS#11 tokens that are present.
	Tokens(ctx context.Context) ([]Token, error)
	// ImportPKCS12 imports a PKCS#12 file; password nil means ask the user.
	// The key's new passphrase is always asked through the prompter.
	ImportPKCS12(ctx context.Context, data, password []byte) (Identity, error)

	// TrustAdd adds trust anchors (PEM or DER certificates).
	TrustAdd(ctx context.Context, certs []byte) ([]Certificate, error)
	// TrustList lists the user's trust anchors.
	TrustList(ctx context.Context) ([]Certificate, error)
	// TrustRemove removes the anchor with the given SHA-256 fingerprint
	// (hex) or the anchors in the given PEM/DER data.
	TrustRemove(ctx context.Context, certs []byte) ([]Certificate, error)

	// CertsAdd adds recipients' certificates (PEM, DER, or a certs-only or
	// signed S/MIME message) to the address book.
	CertsAdd(ctx context.Context, data []byte) ([]Certificate, error)
	// CertsList lists the address book.
	CertsList(ctx context.Context) ([]Certificate, error)
	// CertsFind returns the usable certificates for one address, with the
	// reason when there is none.
	CertsFind(ctx context.Context, email string) (CertLookup, error)

	// Sign reads a message from in and writes it signed to out.
	Sign(ctx context.Context, req SignRequest, in io.Reader, out io.Writer) error
	// Encrypt reads a message from in and writes it encrypted (and signed
	// first when req.Sign) to out.
	Encrypt(ctx context.Context, req EncryptRequest, in io.Reader, out io.Writer) error
	// Decrypt opens every S/MIME layer, decrypting and verifying, and writes
	// the innermost protected entity to out.
	Decrypt(ctx context.Context, req OpenRequest, in io.Reader, out io.Writer) (MessageStatus, error)
	// Verify checks signatures without decrypting and writes the signed
	// content to out.
	Verify(ctx context.Context, req OpenRequest, in io.Reader, out io.Writer) (MessageStatus, error)
}

// Caller identifies who made a request.
type Caller struct {
	UID  uint32
	PID  uint32
	Exe  string // executable path, when known
	Name string // transport address, e.g. the D-Bus unique name
}

type callerKey struct{}

// WithCaller returns a context carrying the caller.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller carried by ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// SignRequest says who signs and how.
type SignRequest struct {
	From     string `json:"from"`               // signer's address; picks the identity
	Identity string `json:"identity,omitempty"` // explicit identity ID, overrides From
	Opaque   bool   `json:"opaque,omitempty"`   // application/pkcs7-mime instead of multipart/signed
	// Subject and Counterpart describe the message in the PIN prompt.
	Subject     string `json:"subject,omitempty"`
	Counterpart string `json:"counterpart,omitempty"`
}

// EncryptRequest lists the recipients; the sender is always added.
type EncryptRequest struct {
	To      []string `json:"to"`
	Sign    bool     `json:"sign,omitempty"`
	From    string   `json:"from,omitempty"`
	Subject string   `json:"subject,omitempty"`
}

// OpenRequest carries what a mail UI knows about a message being read.
type OpenRequest struct {
	From    string `json:"from,omitempty"` // overrides the From header for the signer check
	Subject string `json:"subject,omitempty"`
}

// MessageStatus is the status JSON of DESIGN.md.
type MessageStatus struct {
	Encrypted  bool          `json:"encrypted"`
	Signed     bool          `json:"signed"`
	Signature  string        `json:"signature"`
	Signer     SignerSummary `json:"signer"`
	Revocation string        `json:"revocation"`
	Decryption string        `json:"decryption"`
	Layers     []Layer       `json:"layers"`
	Error      string        `json:"error"`
}

// SignerSummary names the signer whose outcome is reported.
type SignerSummary struct {
	Email   string `json:"email"`
	Subject string `json:"subject"`
	SHA256  string `json:"sha256"`
}

// Layer is one S/MIME layer, outermost first.
type Layer struct {
	Type    string         `json:"type"` // signed | enveloped | auth-enveloped | certs-only
	Form    string         `json:"form,omitempty"`
	Cipher  string         `json:"cipher,omitempty"`
	Signers []SignerResult `json:"signers,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// SignerResult is one signer's outcome with its reason.
type SignerResult struct {
	// Outcome is judged at the trusted signing time when there is one
	// (TrustedTime), else now.
	Outcome string `json:"outcome"`
	// OutcomeNow is the outcome judged now, when it differs from Outcome.
	OutcomeNow  string `json:"outcome_now,omitempty"`
	Reason      string `json:"reason"`
	Email       string `json:"email"`
	Subject     string `json:"subject"`
	SHA256      string `json:"sha256"`
	SigningTime string `json:"signing_time,omitempty"` // as the sender's clock claims (RFC 3339)
	// TrustedTime is the signing time a verified RFC 3161 time-stamp token
	// proves (RFC 3339), and TimeStampAuthority who stamped it.
	TrustedTime        string `json:"trusted_time,omitempty"`
	TimeStampAuthority string `json:"tsa,omitempty"`
	Hash               string `json:"hash,omitempty"`
	Algorithm          string `json:"algorithm,omitempty"`
	// Revocation is the signer's certificate chain's revocation status,
	// when it was checked.
	Revocation *RevocationResult `json:"revocation,omitempty"`
}

// RevocationResult is a revocation check's outcome.
type RevocationResult struct {
	Status    string `json:"status"` // good, revoked, unknown, not-checked
	RevokedAt string `json:"revoked_at,omitempty"`
	Reason    string `json:"reason,omitempty"` // RFC 5280 CRLReason name
	Detail    string `json:"detail,omitempty"` // which source answered, or why unknown
}

// DaemonStatus is `smimectl status`.
type DaemonStatus struct {
	Version    string `json:"version"`
	PID        int    `json:"pid"`
	Keystore   string `json:"keystore"` // backend name, e.g. "secret-service" or "file"
	Identities int    `json:"identities"`
	Tokens     int    `json:"tokens"`
	Config     string `json:"config"` // path of the user config in effect
	Uptime     string `json:"uptime"`
}

// Identity is one of the user's own signing/decryption identities.
type Identity struct {
	ID         string   `json:"id"`
	Label      string   `json:"label"`
	Emails     []string `json:"emails"`
	Subject    string   `json:"subject"`
	Issuer     string   `json:"issuer"`
	NotAfter   string   `json:"not_after"`
	SHA256     string   `json:"sha256"`
	Source     string   `json:"source"` // keystore backend or "token:<label>"
	KeyType    string   `json:"key_type"`
	CanSign    bool     `json:"can_sign"`
	CanDecrypt bool     `json:"can_decrypt"`
}

// Token is a PKCS#11 token.
type Token struct {
	Label        string `json:"label"`
	Manufacturer string `json:"manufacturer"`
	Serial       string `json:"serial"`
	Module       string `json:"module"`
	PINState     string `json:"pin_state"` // ok | count-low | final-try | locked
	PINPad       bool   `json:"pin_pad"`
}

// Certificate describes a stored certificate.
type Certificate struct {
	SHA256    string   `json:"sha256"`
	Subject   string   `json:"subject"`
	Issuer    string   `json:"issuer"`
	Emails    []string `json:"emails"`
	NotBefore string   `json:"not_before"`
	NotAfter  string   `json:"not_after"`
	PEM       string   `json:"pem,omitempty"`
	// Scope and Sources describe a trust anchor (TrustList): what it
	// vouches for ("signing", "encryption") and where it comes from
	// ("user", "policy").
	Scope   []string `json:"scope,omitempty"`
	Sources []string `json:"sources,omitempty"`
}

// CertLookup is the answer for one address.
type CertLookup struct {
	Email        string        `json:"email"`
	Certificates []Certificate `json:"certificates"`
	// Reason says why none is usable: none-found, expired, revoked,
	// revocation-unknown, wrong-key-usage, untrusted, directory-unreachable
	// or directory-auth-failed. Empty when Certificates is not.
	Reason string `json:"reason,omitempty"`
}
