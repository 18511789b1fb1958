//go:build cgo && unix

package worker

import (
	"errors"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/smimed/smimed/tokens/internal/wire"
)

// isCode reports whether err is the PKCS#11 return code code.
func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// classify turns a failed PKCS#11 call into a wire error whose Kind the
// daemon maps to its typed errors.
func classify(fn string, err error) *wire.Error {
	var code pkcs11.Error
	if !errors.As(err, &code) {
		return &wire.Error{Kind: wire.KindOther, Func: fn, Message: err.Error()}
	}
	msg := strings.TrimPrefix(code.Error(), "pkcs11: ")
	if i := strings.Index(msg, ": "); i >= 0 {
		msg = msg[i+2:] // drop the hex code, Error prints it
	}
	return &wire.Error{Kind: kindOf(fn, uint(code)), Func: fn, Code: uint(code), Message: msg}
}

// kindOf maps a return code from function fn to an error kind.
func kindOf(fn string, code uint) string {
	switch code {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_LEN_RANGE, pkcs11.CKR_PIN_INVALID:
		return wire.KindPinIncorrect
	case pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_PIN_EXPIRED:
		return wire.KindPinLocked
	case pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SLOT_ID_INVALID:
		return wire.KindTokenRemoved
	case pkcs11.CKR_MECHANISM_INVALID, pkcs11.CKR_MECHANISM_PARAM_INVALID,
		pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED, pkcs11.CKR_KEY_TYPE_INCONSISTENT,
		pkcs11.CKR_KEY_SIZE_RANGE, pkcs11.CKR_FUNCTION_NOT_SUPPORTED:
		return wire.KindUnsupported
	case pkcs11.CKR_ARGUMENTS_BAD:
		// SoftHSM refuses OAEP parameters it does not implement (any hash
		// but SHA-1) with CKR_ARGUMENTS_BAD from the Init call.
		if strings.HasSuffix(fn, "Init") {
			return wire.KindUnsupported
		}
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_GENERAL_ERROR:
		// SoftHSM reports bad RSA padding as CKR_GENERAL_ERROR. After a
		// successful C_DecryptInit and login, a failed C_Decrypt is taken
		// for bad padding whatever the code: smime/cms then fails the
		// message the same way for every cause, which is also what keeps
		// the token from being a padding oracle.
		if fn == "C_Decrypt" {
			return wire.KindBadPadding
		}
	case pkcs11.CKR_FUNCTION_CANCELED:
		return wire.KindCancelled
	}
	return wire.KindOther
}
