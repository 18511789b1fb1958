package tokens

import (
	"crypto/rsa"
	"fmt"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens/internal/wire"
)

// Error is the type of this package's sentinel errors. Compare them with
// [errors.Is]: they come wrapped with which token, module or mechanism.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

const (
	// ErrPinIncorrect: the token refused the PIN (CKR_PIN_INCORRECT, or a
	// PIN of the wrong length). Never retried automatically; the next
	// operation's prompt says "Wrong PIN" and the tries left. D-Bus:
	// PinIncorrect.
	ErrPinIncorrect Error = "tokens: wrong PIN"
	// ErrPinLocked: the token's PIN is locked (or expired); no prompt is
	// shown. The message says what to do next. D-Bus: PinLocked.
	ErrPinLocked Error = "tokens: the PIN is locked"
	// ErrTokenRemoved: the token is not there any more (pulled out
	// before or during the operation: CKR_DEVICE_REMOVED,
	// CKR_TOKEN_NOT_PRESENT, CKR_SESSION_HANDLE_INVALID, slot gone).
	// D-Bus: TokenRemoved.
	ErrTokenRemoved Error = "tokens: token removed"
	// ErrModuleFailed: the PKCS#11 module hung (no answer within the
	// timeout), crashed, or could not be loaded. Its worker process was
	// stopped and is started again on the next use. D-Bus: Internal.
	ErrModuleFailed Error = "tokens: PKCS#11 module failed"
	// ErrModuleNotFound: a configured module path does not exist.
	ErrModuleNotFound Error = "tokens: PKCS#11 module not found"
	// ErrUnsupported: the token lacks the mechanism (it is not in
	// C_GetMechanismList), refuses its parameters (SoftHSM's RSA-OAEP with
	// SHA-256), or the key cannot do the operation. The message names the
	// mechanism. D-Bus: Unsupported.
	ErrUnsupported Error = "tokens: not supported by the token"
	// ErrNotFound: no such identity, or its key is gone from the token.
	// D-Bus: NoIdentity.
	ErrNotFound Error = "tokens: no such identity"
	// ErrTokenFailed: the token reported an error that is none of the
	// above (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR, ...). D-Bus: Internal.
	ErrTokenFailed Error = "tokens: token operation failed"
	// ErrClosed: the Manager was closed.
	ErrClosed Error = "tokens: closed"
)

// ModuleError is the failure of one module while listing tokens or
// identities; the other modules' results are still returned.
// errors.Is(err, ErrModuleFailed) or errors.Is(err, ErrModuleNotFound)
// holds, depending on the cause.
type ModuleError struct {
	// Module is the module's name (its p11-kit config name, or its path
	// for modules from smimed's config).
	Module string
	// Path is the module's library path.
	Path string
	// Err is the cause.
	Err error
}

// Error names the module and the cause.
func (e *ModuleError) Error() string {
	return fmt.Sprintf("tokens: module %s (%s): %v", e.Module, e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *ModuleError) Unwrap() error { return e.Err }

// pinLockedError says what to do about a locked PIN.
func pinLockedError(token string) error {
	return fmt.Errorf("%w on token %q: unblock it with the PUK (the card's unblocking code) in the card's management tool, or ask your IT support", ErrPinLocked, token)
}

// opError maps a worker's error for an operation on token to this
// package's errors.
func opError(token string, e *wire.Error) error {
	switch e.Kind {
	case wire.KindPinIncorrect:
		return fmt.Errorf("%w for token %q (%v)", ErrPinIncorrect, token, e)
	case wire.KindPinLocked:
		return fmt.Errorf("%w (%v)", pinLockedError(token), e)
	case wire.KindTokenRemoved:
		return fmt.Errorf("%w: %q (%v)", ErrTokenRemoved, token, e)
	case wire.KindUnsupported:
		return fmt.Errorf("%w: %v", ErrUnsupported, e)
	case wire.KindBadPadding:
		// smime/cms tells bad padding (a wrong key or a forged message)
		// from other failures by rsa.ErrDecryption.
		return fmt.Errorf("tokens: token %q: %v: %w", token, e, rsa.ErrDecryption)
	case wire.KindCancelled:
		return fmt.Errorf("tokens: token %q: PIN entry cancelled on the reader: %w", token, prompt.ErrCancelled)
	case wire.KindKeyNotFound:
		return fmt.Errorf("%w: token %q: %v", ErrNotFound, token, e)
	case wire.KindLoad, wire.KindProtocol:
		return fmt.Errorf("%w: %v", ErrModuleFailed, e)
	}
	return fmt.Errorf("%w: token %q: %v", ErrTokenFailed, token, e)
}
