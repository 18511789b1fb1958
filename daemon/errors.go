package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/smime"
	"github.com/smimed/smimed/smime/cms"
)

// tooLargeError is the error of a request whose data exceeds
// limits.max_message_bytes.
type tooLargeError struct{ max int64 }

// Error gives the limit.
func (e *tooLargeError) Error() string {
	return fmt.Sprintf("the message is larger than the limit of %d bytes (limits.max_message_bytes)", e.max)
}

func (s *Service) tooLarge() error { return &tooLargeError{max: s.cfg.Limits.MaxMessageBytes} }

// mapError turns an error from the engine, the key store, the prompter or
// the daemon itself into the *ipc.Error a client sees; nil stays nil.
//
//	*ipc.Error                                   itself
//	over limits.max_message_bytes                TooLarge
//	prompt.ErrCancelled, prompt.ErrTimeout,
//	  context.Canceled, DeadlineExceeded         Cancelled
//	keystore.ErrWrongPassphrase                  PinIncorrect ("wrong passphrase")
//	a prompt agent's failure                     KeystoreLocked ("your prompt agent ...")
//	keystore.ErrLocked, ErrUnavailable,
//	  prompt.ErrNoPrompter                       KeystoreLocked
//	smime.ErrNoKey, keystore.ErrNotFound,
//	  ErrInvalidID                               NoIdentity
//	smime.ErrBadMessage, ErrDecryptionFailed,
//	  ErrTooDeep, keystore import refusals,
//	  cms.ErrMalformed                           BadMessage
//	smime.ErrUnsupported, cms.ErrUnsupported,
//	  keystore.ErrUnsupportedKey                 Unsupported
//	tokens.ErrPinIncorrect                       PinIncorrect (no retry)
//	tokens.ErrPinLocked                          PinLocked (says to use the PUK or ask IT support)
//	tokens.ErrTokenRemoved                       TokenRemoved
//	tokens.ErrUnsupported                        Unsupported (names the mechanism)
//	tokens.ErrNotFound                           NoIdentity
//	tokens.ErrModuleFailed, ErrModuleNotFound,
//	  ErrTokenFailed                             Internal, with a message naming the module's failure
//	anything else                                Internal (generic message)
//
// The cause stays in ipc.Error.Err for the daemon's log; transports send
// only the name and the message.
func (s *Service) mapError(err error) error {
	if err == nil {
		return nil
	}
	var ie *ipc.Error
	if errors.As(err, &ie) {
		return ie
	}
	var tl *tooLargeError
	var ae *agentError
	mk := func(name ipc.ErrorName, msg string) error { return &ipc.Error{Name: name, Message: msg, Err: err} }
	switch {
	case errors.As(err, &tl):
		return mk(ipc.TooLarge, tl.Error())
	case errors.Is(err, prompt.ErrCancelled):
		return mk(ipc.Cancelled, "the prompt was cancelled")
	case errors.Is(err, prompt.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return mk(ipc.Cancelled, "the prompt was not answered in time")
	case errors.Is(err, context.Canceled):
		return mk(ipc.Cancelled, "the request was cancelled")
	}
	if name, msg, ok := tokenError(err); ok {
		return mk(name, msg)
	}
	switch {
	case errors.Is(err, keystore.ErrWrongPassphrase):
		return mk(ipc.PinIncorrect, "wrong passphrase (it is not retried; try the operation again)")
	case errors.As(err, &ae):
		return mk(ipc.KeystoreLocked, "your prompt agent could not show the prompt: "+ae.err.Error())
	case errors.Is(err, prompt.ErrNoPrompter):
		return mk(ipc.KeystoreLocked, "no passphrase prompt can be shown (no pinentry program, or no display): "+plain(err))
	case errors.Is(err, keystore.ErrLocked):
		return mk(ipc.KeystoreLocked, "the key store is locked and could not be unlocked")
	case errors.Is(err, keystore.ErrUnavailable):
		return mk(ipc.KeystoreLocked, "the key store is not available")
	case errors.Is(err, smime.ErrNoKey):
		return mk(ipc.NoIdentity, "none of your identities can decrypt this message")
	case errors.Is(err, keystore.ErrNotFound), errors.Is(err, keystore.ErrInvalidID):
		return mk(ipc.NoIdentity, plain(err))
	case errors.Is(err, smime.ErrUnsupported), errors.Is(err, cms.ErrUnsupported), errors.Is(err, keystore.ErrUnsupportedKey):
		return mk(ipc.Unsupported, plain(err))
	case errors.Is(err, smime.ErrBadMessage), errors.Is(err, smime.ErrDecryptionFailed),
		errors.Is(err, smime.ErrTooDeep), errors.Is(err, smime.ErrNotSMIME), errors.Is(err, cms.ErrMalformed):
		return mk(ipc.BadMessage, plain(err))
	case errors.Is(err, keystore.ErrBadInput), errors.Is(err, keystore.ErrKeyMismatch),
		errors.Is(err, keystore.ErrPassphraseMismatch), errors.Is(err, keystore.ErrEmptyPassphrase),
		errors.Is(err, keystore.ErrExists):
		return mk(ipc.BadMessage, plain(err))
	}
	return mk(ipc.Internal, "internal error; the daemon's log has the details")
}

// plain strips the package prefixes ("smime: ", "keystore: ") from an
// error's text.
func plain(err error) string {
	msg := err.Error()
	for _, p := range []string{"smime: ", "keystore: ", "prompt: ", "cms: ", "tokens: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}

// fail maps err for the client and logs it: Internal errors with their
// cause at error level, others at info.
func (s *Service) fail(ctx context.Context, op string, err error) error {
	mapped := s.mapError(err)
	if mapped == nil {
		return nil
	}
	caller, _ := ipc.CallerFrom(ctx)
	name := ipc.NameOf(mapped)
	attrs := []any{"op", op, "error", string(name), "caller_pid", caller.PID}
	if name == ipc.Internal {
		s.logger.Error("request failed", append(attrs, "cause", err)...)
	} else {
		s.logger.Info("request failed", append(attrs, "reason", mapped.(*ipc.Error).Message)...)
	}
	return mapped
}

// noIdentity is a NoIdentity error with a reason.
func noIdentity(format string, args ...any) error {
	return &ipc.Error{Name: ipc.NoIdentity, Message: fmt.Sprintf(format, args...)}
}

// badInput is a BadMessage error about data given to a certificate method.
func badInput(format string, args ...any) error {
	return &ipc.Error{Name: ipc.BadMessage, Message: fmt.Sprintf(format, args...)}
}

// isCorruptOnly reports whether err consists of certbook.CorruptErrors.
func isCorruptOnly(err error) bool {
	return err != nil && errors.Is(err, certbook.ErrCorrupt)
}
