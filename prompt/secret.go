package prompt

import (
	"fmt"
	"log/slog"
	"runtime"
)

// redacted is what a Secret prints as, whatever the verb or the logger.
const redacted = "[redacted]"

// Secret holds a PIN or passphrase as bytes, never as a string, so that it can
// be wiped. Use [Secret.Bytes] for the one operation that needs it, then
// [Secret.Wipe].
//
// A Secret cannot leak through formatting or logging: fmt's verbs (%v, %+v,
// %#v, %s, %q, %x, ...), log/slog and encoding/json all print "[redacted]".
// The methods that do so have value receivers so that a Secret value, not
// only a *Secret, is covered.
//
// The zero value and a nil *Secret are empty secrets. A Secret is not safe
// for concurrent use: it belongs to the one operation that asked for it.
type Secret struct {
	b []byte
}

// NewSecret returns a Secret holding a copy of b. The caller keeps b and
// should wipe it (clear(b)) once the Secret is made.
func NewSecret(b []byte) *Secret {
	s := &Secret{b: make([]byte, len(b))}
	copy(s.b, b)
	// Defence in depth for a Secret its owner forgot to wipe: clear the bytes
	// once the Secret itself is unreachable.
	runtime.AddCleanup(s, func(b []byte) { clear(b) }, s.b)
	return s
}

// Bytes returns the secret's bytes, not a copy: do not keep, modify or convert
// them to a string; they are zeroed by Wipe. Nil for an empty or wiped
// Secret.
func (s *Secret) Bytes() []byte {
	if s == nil || len(s.b) == 0 {
		return nil
	}
	return s.b
}

// Len returns the secret's length in bytes (0 once wiped).
func (s *Secret) Len() int {
	if s == nil {
		return 0
	}
	return len(s.b)
}

// Wipe zeroes the secret's bytes and empties it. It is safe to call on a nil
// Secret and more than once.
func (s *Secret) Wipe() {
	if s == nil {
		return
	}
	clear(s.b)
	s.b = nil
}

// String returns "[redacted]".
func (Secret) String() string { return redacted }

// GoString returns "[redacted]", for %#v.
func (Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every verb and flag.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue makes log/slog print "[redacted]".
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON encodes the Secret as the JSON string "[redacted]".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[redacted]", for encoders that use text marshalling.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

var (
	_ fmt.Stringer   = Secret{}
	_ fmt.GoStringer = Secret{}
	_ fmt.Formatter  = Secret{}
	_ slog.LogValuer = Secret{}
)
