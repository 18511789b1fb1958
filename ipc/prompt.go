package ipc

import "context"

// PromptAgent shows smimed's prompts on behalf of a client: a mail client
// that has its own window asks the user for the PIN or passphrase there,
// instead of a pinentry window popping up beside it.
//
// A client registers an agent with its transport (on D-Bus,
// RegisterPromptAgent); the transport then puts a PromptAgent into the
// context of every request of that client (see PromptAgentFrom), and the
// daemon asks it instead of pinentry, unless policy forbids prompt agents.
// Requests of other clients never see it.
//
// Ask shows one prompt and returns when the user has answered it:
//   - Kind "pin" or "passphrase": the secret the user entered. The caller
//     owns the returned slice and zeroes it once used; the agent must not
//     keep or reuse it.
//   - Kind "confirm": nil when the user allowed the operation.
//   - Kind "notice": shown until ctx ends (the operation it announces is
//     done); the agent then takes it down and returns nil.
//
// When the user cancels or declines, Ask returns an error matching
// &Error{Name: Cancelled}. When ctx ends before the user answered, the agent
// takes the prompt down and returns ctx.Err(). A wrong secret is never
// retried automatically: each Ask is one user action, and the next one
// carries the failure in PromptRequest.Error.
type PromptAgent interface {
	Ask(ctx context.Context, r PromptRequest) ([]byte, error)
}

// The values of PromptRequest.Kind.
const (
	PromptPIN        = "pin"
	PromptPassphrase = "passphrase"
	PromptConfirm    = "confirm"
	PromptNotice     = "notice"
)

// PromptRequest is one prompt for a PromptAgent: what is asked, and why. On
// D-Bus it travels as a{sv} whose keys are the JSON names below; empty
// fields are left out.
//
// Description, Title and Error are ready to show: the daemon builds them
// the same way for pinentry, with control and formatting characters removed
// and long values shortened. The other text fields are the raw parts they
// were made from (a message subject may come from a stranger): an agent that
// shows them itself must treat them as untrusted text.
type PromptRequest struct {
	// Kind is what is asked: PromptPIN, PromptPassphrase, PromptConfirm or
	// PromptNotice.
	Kind string `json:"kind"`
	// Operation is what the key is about to do: "sign", "decrypt",
	// "unlock" or "import".
	Operation string `json:"operation,omitempty"`
	// KeyLabel names the key: the certificate subject or the key's name.
	KeyLabel string `json:"key_label,omitempty"`
	// TokenLabel names the smart card or token; empty for software keys.
	TokenLabel string `json:"token_label,omitempty"`
	// Subject and Counterpart describe the message, when known.
	Subject     string `json:"subject,omitempty"`
	Counterpart string `json:"counterpart,omitempty"`
	// TriesLeft is how many PIN tries the token has left, to show when
	// positive; 0 and -1 (unknown) show nothing.
	TriesLeft int `json:"tries_left,omitempty"`
	// Error says why the previous attempt failed ("Wrong passphrase, try
	// again"), to show beside the prompt.
	Error string `json:"error,omitempty"`
	// Title is the prompt window's title.
	Title string `json:"title,omitempty"`
	// Description is the prompt's full text: what is being done, for which
	// message, with which key, and the tries left.
	Description string `json:"description,omitempty"`
}

type promptAgentKey struct{}

// WithPromptAgent returns a context carrying a, the prompt agent of the
// request's caller. A nil a returns ctx unchanged.
func WithPromptAgent(ctx context.Context, a PromptAgent) context.Context {
	if a == nil {
		return ctx
	}
	return context.WithValue(ctx, promptAgentKey{}, a)
}

// PromptAgentFrom returns the prompt agent carried by ctx: the one the
// request's caller registered, when it did and the transport allows it.
func PromptAgentFrom(ctx context.Context) (PromptAgent, bool) {
	a, ok := ctx.Value(promptAgentKey{}).(PromptAgent)
	return a, ok && a != nil
}
