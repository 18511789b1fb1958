package smime

import (
	"context"
	"errors"
	"fmt"

	"github.com/smimed/smimed/smime/cms"
)

// Sentinel errors. Every error this package returns about a message wraps
// exactly one of them (test with errors.Is); the text after the sentinel's
// own words is a reason a person can read. Errors from the cms package stay
// in the chain, so errors.Is(err, cms.ErrMalformed) works as well.
//
// Signature outcomes are never errors: a bad signature is reported in
// Status. An error means processing could not go on, and the caller must
// discard whatever was written to dst.
var (
	// ErrBadMessage: the MIME structure or the CMS inside it is malformed
	// (no boundary, truncated, missing signature part, invalid base64,
	// undecodable CMS, a header section or line over its limit).
	ErrBadMessage = errors.New("smime: malformed message")
	// ErrUnsupported: a well-formed message uses a form or an algorithm
	// this package does not implement (compressed-data, an unknown
	// cipher).
	ErrUnsupported = errors.New("smime: unsupported message form or algorithm")
	// ErrNoKey: the message is encrypted and no key for any of its
	// recipients was available (or decryption was not asked for).
	ErrNoKey = errors.New("smime: no key to decrypt the message")
	// ErrDecryptionFailed: a key for a recipient was used but the content
	// could not be decrypted (wrong private key, damaged or tampered
	// ciphertext, failed authentication tag).
	ErrDecryptionFailed = errors.New("smime: decryption failed")
	// ErrNotSMIME: the top-level entity is not an S/MIME layer, for example
	// a multipart/mixed that holds an S/MIME part beside plain parts.
	// Nothing is written to dst; the caller must show such a message as
	// unprotected.
	ErrNotSMIME = errors.New("smime: message is not S/MIME protected")
	// ErrTooDeep: more nested S/MIME layers than OpenOptions.MaxLayers, or
	// MIME multiparts nested deeper than this package follows.
	ErrTooDeep = errors.New("smime: too many nested layers")
)

// errorf wraps kind with a reason.
func errorf(kind error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", kind, fmt.Sprintf(format, args...))
}

// badf wraps ErrBadMessage with a reason.
func badf(format string, args ...any) error {
	return errorf(ErrBadMessage, format, args...)
}

// classify maps an error from the cms package (or from reading the
// message) onto this package's sentinels, keeping the original error in the
// chain. Errors that already carry one of our sentinels, context errors and
// errors that are not about the message (a failing dst, a signer's token)
// are returned unchanged.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, own := range []error{ErrBadMessage, ErrUnsupported, ErrNoKey, ErrDecryptionFailed, ErrNotSMIME, ErrTooDeep} {
		if errors.Is(err, own) {
			return err
		}
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, cms.ErrMalformed), errors.Is(err, cms.ErrDigestMismatch), errors.Is(err, cms.ErrSignature):
		return fmt.Errorf("%w: %w", ErrBadMessage, err)
	case errors.Is(err, cms.ErrUnsupported):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	case errors.Is(err, cms.ErrNoRecipient):
		return fmt.Errorf("%w: %w", ErrNoKey, err)
	case errors.Is(err, cms.ErrDecryption):
		return fmt.Errorf("%w: %w", ErrDecryptionFailed, err)
	}
	return err
}
