//go:build unix

package dbus

import (
	"errors"

	"github.com/smimed/smimed/ipc"
)

// The names under which smimed is reachable on the session bus.
const (
	// BusName is the well-known name the daemon owns.
	BusName = "org.smimed.Smimed1"
	// ObjectPath is the path of the one object the daemon exports.
	ObjectPath = "/org/smimed/Smimed1"
	// Interface is the D-Bus interface of that object.
	Interface = "org.smimed.Smimed1"
	// ErrorPrefix precedes an ipc.ErrorName in a D-Bus error name.
	ErrorPrefix = "org.smimed.Error."

	// AgentInterface is the interface of a prompt agent: an object a client
	// exports on its own connection and registers with
	// RegisterPromptAgent, so that the prompts of its requests are shown
	// by the client instead of pinentry.
	AgentInterface = "org.smimed.PromptAgent1"
	// AgentObjectPath is where Client.RegisterPromptAgent exports its
	// agent. Other clients may use any path.
	AgentObjectPath = "/org/smimed/PromptAgent1"
)

// Limits of the transport.
const (
	// BytesLimit is the largest payload the byte-array variants (SignBytes,
	// EncryptBytes, DecryptBytes, VerifyBytes) accept. A larger payload is
	// refused with TooLarge; send it through file descriptors instead.
	BytesLimit = 1 << 20
	// DefaultMaxMessageBytes is the default limit of ServerOptions.MaxMessageBytes.
	DefaultMaxMessageBytes = 256 << 20
	// MaxAgentSecretBytes is the longest secret a prompt agent may return;
	// a longer answer fails the prompt.
	MaxAgentSecretBytes = 4096
)

// Standard D-Bus error names used by this package.
const (
	errInvalidArgs    = "org.freedesktop.DBus.Error.InvalidArgs"
	errNoServer       = "org.freedesktop.DBus.Error.NoServer"
	errServiceUnknown = "org.freedesktop.DBus.Error.ServiceUnknown"
	errNameHasNoOwner = "org.freedesktop.DBus.Error.NameHasNoOwner"
	errNoReply        = "org.freedesktop.DBus.Error.NoReply"
	errDisconnected   = "org.freedesktop.DBus.Error.Disconnected"
	errUnknownMethod  = "org.freedesktop.DBus.Error.UnknownMethod"
	errUnknownObject  = "org.freedesktop.DBus.Error.UnknownObject"
	errNoSuchObject   = "org.freedesktop.DBus.Error.NoSuchObject"
	errUnknownIface   = "org.freedesktop.DBus.Error.UnknownInterface"
	errAccessDenied   = "org.freedesktop.DBus.Error.AccessDenied"
)

// ErrUnreachable is wrapped by client errors that mean the daemon could not
// be reached: no session bus, nobody owning BusName, the daemon shutting down
// or leaving the bus without answering. smimectl exits 3 on it.
var ErrUnreachable = errors.New("smimed is not reachable")

// ErrNameTaken is wrapped by the error of (*Server).Run when another
// connection already owns BusName, normally another smimed of the same user.
var ErrNameTaken = errors.New("the D-Bus name " + BusName + " is taken")

// DBusErrorName returns the D-Bus error name of an ipc error name,
// "org.smimed.Error.<Name>".
func DBusErrorName(name ipc.ErrorName) string { return ErrorPrefix + string(name) }

// errorDocs explains each error name in the introspection XML. A test
// checks that every ipc.AllErrorNames entry has one.
func errorDocs() map[ipc.ErrorName]string {
	return map[ipc.ErrorName]string{
		ipc.Cancelled:              "the user cancelled a prompt, or the caller left the bus",
		ipc.PinIncorrect:           "the PIN or passphrase was wrong; it is never retried automatically",
		ipc.PinLocked:              "the token's PIN is locked",
		ipc.TokenRemoved:           "the token was removed during the operation",
		ipc.NoIdentity:             "no identity of the user matches the request",
		ipc.NoRecipientCertificate: "no usable certificate for a recipient",
		ipc.BadMessage:             "the input is not a message or certificate the daemon can read",
		ipc.TooLarge:               "the payload exceeds the configured limit, or BytesLimit for a *Bytes method",
		ipc.NotAuthorized:          "the caller is not the daemon's user, or policy forbids the request (e.g. RegisterPromptAgent when prompt.allow_agents is off)",
		ipc.KeystoreLocked:         "the keystore is locked and no unlock prompt could be shown",
		ipc.Unsupported:            "the request needs something this daemon or policy does not offer",
		ipc.Internal:               "a bug or an unexpected failure; details are in the daemon's log",
	}
}
