// Package prompt is the contract between the parts of smimed that need the
// user's authorisation for a private-key operation (keystore/, tokens/) and
// the programs that ask for it (pinentry, or a prompt agent registered by a
// client).
//
// A caller builds a [Request] that says what is being done, with which key and
// for which message, and hands it to a [Prompter]. The answer, a PIN or
// passphrase, comes back as a [Secret]: a byte slice that is wiped after use
// and that prints as "[redacted]" wherever it is formatted or logged.
//
// A wrong PIN is never retried automatically: every [Prompter.Ask] is one user
// action, and the next attempt is a new Request carrying the previous
// failure in [Request.Error] and the tries left in [Request.TriesLeft].
//
// This package depends on nothing else in the module.
package prompt

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// Kind is what a prompt asks of the user.
type Kind int

const (
	// PIN asks for a smart card or token PIN.
	PIN Kind = iota + 1
	// Passphrase asks for the passphrase of a software key, a key store or a
	// file being imported.
	Passphrase
	// Confirm asks the user to allow an operation; no secret is entered.
	Confirm
	// Notice shows a message and takes no input, e.g. "enter the PIN on the
	// reader's PIN pad". It stays on screen until the user dismisses it or
	// the caller's context ends (see [ShowNotice]).
	Notice
)

// String returns the kind's lower-case name ("pin", "passphrase", "confirm",
// "notice"), or "kind(N)" for a value outside the defined kinds.
func (k Kind) String() string {
	switch k {
	case PIN:
		return "pin"
	case Passphrase:
		return "passphrase"
	case Confirm:
		return "confirm"
	case Notice:
		return "notice"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool { return k >= PIN && k <= Notice }

// Operations named in [Request.Operation].
const (
	OpSign    = "sign"
	OpDecrypt = "decrypt"
	OpUnlock  = "unlock"
	OpImport  = "import"
)

// TriesUnknown is the [Request.TriesLeft] value for "the token did not say";
// it shows nothing, like 0.
const TriesUnknown = -1

// Request describes one prompt: what the user is asked for and why.
//
// Every text field may come from outside (a certificate subject, a message
// subject chosen by a stranger): [Request.Description] strips control and
// formatting characters from them and shortens long values, so no field can
// rewrite the rest of the prompt.
type Request struct {
	// Kind is what is asked: PIN, Passphrase, Confirm or Notice.
	Kind Kind
	// Operation is what the key is about to do: OpSign, OpDecrypt, OpUnlock
	// or OpImport.
	Operation string
	// KeyLabel names the key: the certificate subject or the key's name.
	KeyLabel string
	// TokenLabel names the smart card or token; empty for software keys.
	TokenLabel string
	// Subject is the subject of the message being signed or decrypted, when
	// the caller gave it.
	Subject string
	// Counterpart is the other party's address (the recipient when signing,
	// the sender when decrypting), when the caller gave it.
	Counterpart string
	// TriesLeft is how many PIN tries the token has left, shown when
	// positive ("2 tries left", and a warning on the final try). Zero and
	// TriesUnknown (-1) show nothing, so the zero Request is safe for
	// software keys; a token whose PIN is locked is not prompted for at all
	// (tokens/ reports PinLocked instead).
	TriesLeft int
	// Error says why the previous attempt failed ("Wrong PIN"); shown in the
	// prompt. It is never a reason to retry automatically: a new Request is a
	// new user action.
	Error string
	// Title overrides the window title; empty means a title from Kind.
	Title string
}

// Limits, in runes, for the caller-supplied fields shown in a description.
const (
	maxSubject     = 80
	maxAddress     = 100
	maxKeyLabel    = 120
	maxTokenLabel  = 64
	maxTitle       = 64
	maxError       = 120
	maxOperation   = 32
	ellipsis       = "..."
	finalTryPrefix = "FINAL try"
)

// Description returns the text a prompt shows the user: what is being done
// (signing, decrypting, ...), for which message (subject and counterpart,
// when given), with which key and token, and how many PIN tries are left.
// For example:
//
//	Enter the PIN to sign a message.
//
//	Message: "Quarterly report" to bob@example.com
//	Key: CN=Alice Example
//	Token: Alice's PIV card
//
//	2 tries left.
//
// On the last try the final line reads "FINAL try: a wrong PIN locks the
// card." [Request.Error] is not part of the description; prompt programs
// show it separately (pinentry's SETERROR).
func (r Request) Description() string {
	var b strings.Builder
	b.WriteString(r.actionLine())

	var details []string
	if m := r.messageLine(); m != "" {
		details = append(details, m)
	}
	if k := clean(r.KeyLabel, maxKeyLabel); k != "" {
		details = append(details, "Key: "+k)
	}
	if t := clean(r.TokenLabel, maxTokenLabel); t != "" {
		details = append(details, "Token: "+t)
	}
	if len(details) > 0 {
		b.WriteString("\n\n")
		b.WriteString(strings.Join(details, "\n"))
	}
	if t := r.triesLine(); t != "" {
		b.WriteString("\n\n")
		b.WriteString(t)
	}
	return b.String()
}

// WindowTitle returns the title for the prompt's window: Title when set
// (cleaned like the description's fields), else one naming smimed and what
// is asked.
func (r Request) WindowTitle() string {
	if t := clean(r.Title, maxTitle); t != "" {
		return t
	}
	switch r.Kind {
	case PIN:
		return "smimed: PIN"
	case Passphrase:
		return "smimed: passphrase"
	case Confirm:
		return "smimed: confirm"
	case Notice:
		return "smimed: PIN pad"
	}
	return "smimed"
}

// ErrorText returns [Request.Error] cleaned for display (control characters
// removed, shortened), or "" when there is none.
func (r Request) ErrorText() string { return clean(r.Error, maxError) }

// purpose is the infinitive phrase for the operation: "sign a message".
func (r Request) purpose() string {
	switch r.Operation {
	case OpSign:
		return "sign a message"
	case OpDecrypt:
		return "decrypt a message"
	case OpUnlock:
		return "unlock your keys"
	case OpImport:
		return "import a key"
	case "":
		return "use your key"
	}
	return clean(r.Operation, maxOperation) + " with your key"
}

// gerund is the -ing phrase for Confirm: "signing a message".
func (r Request) gerund() string {
	switch r.Operation {
	case OpSign:
		return "signing a message"
	case OpDecrypt:
		return "decrypting a message"
	case OpUnlock:
		return "unlocking your keys"
	case OpImport:
		return "importing a key"
	case "":
		return "using your key"
	}
	return "using your key to " + clean(r.Operation, maxOperation)
}

func (r Request) actionLine() string {
	switch r.Kind {
	case PIN:
		return "Enter the PIN to " + r.purpose() + "."
	case Passphrase:
		return "Enter the passphrase to " + r.purpose() + "."
	case Confirm:
		return "Allow " + r.gerund() + "?"
	case Notice:
		return "Enter the PIN on the reader's PIN pad to " + r.purpose() + "."
	}
	return "Authorise smimed to " + r.purpose() + "."
}

func (r Request) messageLine() string {
	subject := clean(r.Subject, maxSubject)
	other := clean(r.Counterpart, maxAddress)
	if subject == "" && other == "" {
		return ""
	}
	var b strings.Builder
	b.WriteString("Message")
	if subject != "" {
		b.WriteString(": ")
		b.WriteString(`"`)
		b.WriteString(subject)
		b.WriteString(`"`)
	}
	if other != "" {
		switch r.Operation {
		case OpSign:
			b.WriteString(" to ")
		case OpDecrypt:
			b.WriteString(" from ")
		default:
			b.WriteString(" with ")
		}
		b.WriteString(other)
	}
	return b.String()
}

func (r Request) triesLine() string {
	if r.Kind == Confirm || r.TriesLeft <= 0 {
		return ""
	}
	secret, locks := "PIN", "the card"
	if r.Kind == Passphrase {
		secret = "passphrase"
	}
	if r.TokenLabel == "" && r.Kind == Passphrase {
		locks = "the key"
	}
	if r.TriesLeft == 1 {
		return finalTryPrefix + ": a wrong " + secret + " locks " + locks + "."
	}
	return strconv.Itoa(r.TriesLeft) + " tries left."
}

// clean makes an untrusted value safe to show on one line: invalid UTF-8 is
// replaced, white space (tabs, line breaks) becomes single spaces, other
// control and format characters (bidirectional overrides, zero-width
// characters) are dropped, and values longer than max runes are cut and end
// in "...".
func clean(s string, max int) string {
	var out []rune
	pendingSpace, cut := false, false
	for _, c := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case unicode.IsSpace(c):
			pendingSpace = true
			continue
		case unicode.IsControl(c) || unicode.Is(unicode.Cf, c):
			continue
		}
		if pendingSpace && len(out) > 0 {
			out = append(out, ' ')
		}
		pendingSpace = false
		out = append(out, c)
		if len(out) > max {
			cut = true
			break
		}
	}
	if cut {
		return strings.TrimRight(string(out[:max]), " ") + ellipsis
	}
	return string(out)
}

// Prompter asks the user for a PIN, a passphrase or a confirmation, or shows a
// notice.
//
// Ask returns the secret for PIN and Passphrase requests and a nil Secret
// for Confirm and Notice. The caller owns the returned Secret and must
// [Secret.Wipe] it as soon as the operation that needed it is done.
//
// Errors wrap [ErrCancelled] when the user cancelled or declined,
// [ErrNoPrompter] when no prompt can be shown, and [ErrTimeout] when ctx's
// deadline passed; when ctx is cancelled the error wraps
// [context.Canceled]. For a Notice, the end of ctx is the normal way to
// dismiss it and Ask returns nil.
//
// Implementations must be safe for concurrent use; wrap them in
// [Serialized] to show one prompt at a time.
type Prompter interface {
	Ask(ctx context.Context, r Request) (*Secret, error)
}

// PrompterFunc adapts a function to the [Prompter] interface (handy for
// tests and for policy wrappers).
type PrompterFunc func(ctx context.Context, r Request) (*Secret, error)

// Ask calls f(ctx, r).
func (f PrompterFunc) Ask(ctx context.Context, r Request) (*Secret, error) { return f(ctx, r) }

// Error is the type of this package's sentinel errors. They are constants;
// compare them with [errors.Is], as they usually come wrapped with context.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

const (
	// ErrCancelled: the user cancelled the prompt or declined the
	// confirmation.
	ErrCancelled Error = "prompt: cancelled by the user"
	// ErrNoPrompter: no prompt can be shown (no pinentry program installed,
	// no display or terminal, or policy forbids prompting).
	ErrNoPrompter Error = "prompt: no prompt program available"
	// ErrTimeout: the prompt was not answered in time.
	ErrTimeout Error = "prompt: timed out"
)

// ShowNotice shows a Notice request through p while the caller does
// something else (e.g. waits for a PIN-pad login), and returns the function
// that takes the notice down. dismiss waits until the prompt is gone and
// returns the error that showing it gave, if any (e.g. ErrNoPrompter); the
// end of ctx also takes the notice down.
//
//	dismiss := prompt.ShowNotice(ctx, p, prompt.Request{Kind: prompt.Notice, ...})
//	err := loginOnPinPad()
//	_ = dismiss()
func ShowNotice(ctx context.Context, p Prompter, r Request) (dismiss func() error) {
	if r.Kind != Notice {
		err := fmt.Errorf("prompt: ShowNotice with a %s request", r.Kind)
		return func() error { return err }
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		s, err := p.Ask(ctx, r)
		s.Wipe() // a Notice has no secret; wipe anything a faulty Prompter returned
		done <- err
	}()
	return sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}
