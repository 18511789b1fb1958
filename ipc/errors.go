package ipc

import (
	"context"
	"errors"
	"fmt"
)

// ErrorName is a typed error of the contract; on D-Bus it travels as
// "org.smimed.Error.<Name>".
type ErrorName string

// The error names of DESIGN.md.
const (
	Cancelled              ErrorName = "Cancelled"
	PinIncorrect           ErrorName = "PinIncorrect"
	PinLocked              ErrorName = "PinLocked"
	TokenRemoved           ErrorName = "TokenRemoved"
	NoIdentity             ErrorName = "NoIdentity"
	NoRecipientCertificate ErrorName = "NoRecipientCertificate"
	BadMessage             ErrorName = "BadMessage"
	TooLarge               ErrorName = "TooLarge"
	NotAuthorized          ErrorName = "NotAuthorized"
	KeystoreLocked         ErrorName = "KeystoreLocked"
	Unsupported            ErrorName = "Unsupported"
	Internal               ErrorName = "Internal"
)

// AllErrorNames lists every name, for introspection docs and tests.
func AllErrorNames() []ErrorName {
	return []ErrorName{Cancelled, PinIncorrect, PinLocked, TokenRemoved, NoIdentity,
		NoRecipientCertificate, BadMessage, TooLarge, NotAuthorized, KeystoreLocked,
		Unsupported, Internal}
}

// Error is an error with a contract name and a message for people.
type Error struct {
	Name    ErrorName
	Message string
	Err     error // the cause, kept on the daemon side only
}

// Errorf makes an *Error with a formatted message; a %w verb keeps the cause.
func Errorf(name ErrorName, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Name: name, Message: err.Error(), Err: errors.Unwrap(err)}
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Name, e.Message) }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, &Error{Name: X}) match by name.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Name == e.Name && t.Message == ""
}

// NameOf returns the contract name of err: its *Error's name, Cancelled for
// context cancellation, Internal otherwise.
func NameOf(err error) ErrorName {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Name
	case errors.Is(err, context.Canceled):
		return Cancelled
	}
	return Internal
}
