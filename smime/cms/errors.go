package cms

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns about a message wraps
// exactly one of them, so callers can classify it with errors.Is and still
// show the wrapped reason to a person.
var (
	// ErrMalformed: the encoding is not valid CMS (bad DER/BER, wrong
	// structure, missing mandatory field, trailing garbage, over a limit).
	ErrMalformed = errors.New("cms: malformed message")
	// ErrUnsupported: a well-formed message uses an algorithm or a form this
	// package does not implement.
	ErrUnsupported = errors.New("cms: unsupported algorithm or form")
	// ErrNoRecipient: no RecipientInfo is addressed to the key offered.
	ErrNoRecipient = errors.New("cms: message is not encrypted to this key")
	// ErrDecryption: the key matched but the content could not be decrypted
	// (wrong key, bad padding, failed authentication tag).
	ErrDecryption = errors.New("cms: decryption failed")
	// ErrDigestMismatch: the content's digest differs from the signed
	// messageDigest attribute (the content was changed).
	ErrDigestMismatch = errors.New("cms: message digest does not match the content")
	// ErrSignature: the signature value does not verify with the signer's
	// public key.
	ErrSignature = errors.New("cms: signature does not verify")
	// ErrImprintMismatch: a time-stamp token's messageImprint is not the
	// hash of the signature value it is attached to (it time-stamps
	// something else).
	ErrImprintMismatch = errors.New("cms: time-stamp token covers other data")
	// ErrTimeStampUntrusted: a time-stamp token verifies, but its signer is
	// not a trusted time-stamping authority at the token's time (no chain
	// to the roots, no id-kp-timeStamping extended key usage, a
	// certificate the token does not name, a time in the future).
	ErrTimeStampUntrusted = errors.New("cms: time-stamping authority not trusted")
	// ErrWeakAlgorithm: a time-stamp token uses MD5 or SHA-1 (imprint or
	// signature) or an RSA key under 2048 bits. Unlike a weak message
	// signature, which Weakness reports, a weak time-stamp is refused.
	ErrWeakAlgorithm = errors.New("cms: weak algorithm refused")
)

// malformed wraps ErrMalformed with the structure and reason.
func malformed(structure, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, structure, fmt.Sprintf(format, args...))
}

// unsupported wraps ErrUnsupported with what was not supported.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
}
