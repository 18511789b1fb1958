package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/prompt/pinentry"
)

// NewPrompter returns the daemon's one prompter, wrapped in
// prompt.Serialized so that prompts appear one at a time, in arrival order,
// whoever shows them:
//
//   - the caller's prompt agent, when the request's context carries one
//     (ipc.PromptAgentFrom: the client registered it with the transport)
//     and allowAgents (prompt.allow_agents);
//   - else the pinentry program (program from prompt.program, else
//     SMIMED_PINENTRY in env, else the first installed of pinentry-gnome3,
//     -qt, -gtk2, -curses, -tty, pinentry).
//
// When no pinentry can be found the daemon still starts (verifying and
// encrypting need no prompt, and prompt agents still work): every other
// prompt then fails with prompt.ErrNoPrompter, which clients see as
// KeystoreLocked.
func NewPrompter(program string, env []string, allowAgents bool, logger *slog.Logger) prompt.Prompter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var fallback prompt.Prompter
	c, err := pinentry.New(pinentry.Options{Program: program, Env: env, Logger: logger})
	if err != nil {
		logger.Warn("prompt: no pinentry; private-key operations will fail until one is installed or configured (prompt.program)", "err", err)
		fallback = prompt.PrompterFunc(func(context.Context, prompt.Request) (*prompt.Secret, error) {
			return nil, fmt.Errorf("daemon: %w", err)
		})
	} else {
		logger.Info("prompt: using pinentry", "program", c.Program(), "allow_agents", allowAgents)
		fallback = c
	}
	return prompt.Serialized(&router{pinentry: fallback, allowAgents: allowAgents, log: logger})
}

// router sends each prompt to the caller's prompt agent or to pinentry.
type router struct {
	pinentry    prompt.Prompter
	allowAgents bool
	log         *slog.Logger
}

func (r *router) Ask(ctx context.Context, req prompt.Request) (*prompt.Secret, error) {
	if a, ok := ipc.PromptAgentFrom(ctx); ok {
		if r.allowAgents {
			return r.askAgent(ctx, a, req)
		}
		r.log.Debug("prompt: the caller has a prompt agent but prompt.allow_agents is off; using pinentry")
	}
	return r.pinentry.Ask(ctx, req)
}

// askAgent shows req through the caller's prompt agent. Its answer is
// copied into a prompt.Secret and the agent's buffer zeroed.
func (r *router) askAgent(ctx context.Context, a ipc.PromptAgent, req prompt.Request) (*prompt.Secret, error) {
	caller, _ := ipc.CallerFrom(ctx)
	r.log.Info("prompt: asking the caller's prompt agent", "caller", caller.Name, "caller_pid", caller.PID,
		"caller_exe", caller.Exe, "kind", req.Kind.String(), "operation", req.Operation)
	b, err := a.Ask(ctx, agentRequest(req))
	defer clear(b)
	switch {
	case ctx.Err() != nil:
		if req.Kind == prompt.Notice {
			return nil, nil // the normal way to take a notice down
		}
		return nil, prompt.ContextError(ctx, "waiting for the prompt agent")
	case errors.Is(err, &ipc.Error{Name: ipc.Cancelled}):
		return nil, fmt.Errorf("%w (in the caller's prompt agent)", prompt.ErrCancelled)
	case err != nil:
		return nil, &agentError{err: err}
	}
	if req.Kind == prompt.PIN || req.Kind == prompt.Passphrase {
		return prompt.NewSecret(b), nil
	}
	return nil, nil
}

// agentRequest is what a prompt agent is shown: the request's fields, and
// the texts pinentry would show, made the same way.
func agentRequest(r prompt.Request) ipc.PromptRequest {
	return ipc.PromptRequest{
		Kind:        r.Kind.String(),
		Operation:   r.Operation,
		KeyLabel:    r.KeyLabel,
		TokenLabel:  r.TokenLabel,
		Subject:     r.Subject,
		Counterpart: r.Counterpart,
		TriesLeft:   r.TriesLeft,
		Error:       r.ErrorText(),
		Title:       r.WindowTitle(),
		Description: r.Description(),
	}
}

// agentError is the failure of a caller's prompt agent (other than the user
// cancelling): no prompt could be shown, so it is prompt.ErrNoPrompter.
// There is no fallback to pinentry: the client asked to show its prompts
// itself. The agent's own error is kept for the message only, so that an
// agent cannot choose the error name its request fails with.
type agentError struct{ err error }

func (e *agentError) Error() string { return "the prompt agent failed: " + e.err.Error() }

func (e *agentError) Unwrap() error { return prompt.ErrNoPrompter }
