//go:build unix

package dbus

import (
	"context"
	"errors"
	"fmt"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// Prompt agents, the daemon's side.
//
// A client calls RegisterPromptAgent(o agent) with the path of an object on
// its own connection that implements AgentInterface. The registration
// belongs to the caller's unique bus name: it is dropped by
// UnregisterPromptAgent, by another registration (which replaces it), and
// when the name leaves the bus (with the rest of the caller's entry). While
// it lasts, every request of that caller carries an ipc.PromptAgent in its
// context, and the daemon's prompter sends its prompts there:
//
//	Ask(u id, a{sv} request) -> (ay secret)
//	Cancel(u id)
//
// Ask is called with the request's context: when that context ends (the
// request is cancelled, or a notice is taken down) before the agent
// answers, the pending call is abandoned, its late reply ignored, and the
// agent is sent Cancel(id), without waiting for a reply, so that it takes
// the prompt down. The id is what tells a late Cancel from the next
// prompt's Ask: an agent that dispatches calls concurrently (godbus does)
// may see them in either order.

// RegisterPromptAgent answers RegisterPromptAgent.
func (o object) RegisterPromptAgent(m godbus.Message, agent godbus.ObjectPath) *godbus.Error {
	return o.s.callEntry(&m, "RegisterPromptAgent", func(ctx context.Context, e *callerEntry) error {
		caller, _ := ipc.CallerFrom(ctx)
		if !o.s.allowAgents {
			o.s.log.Info("refused a prompt agent: the policy forbids them", "caller", caller.Name,
				"pid", caller.PID, "exe", caller.Exe)
			return ipc.Errorf(ipc.NotAuthorized, "prompt agents are turned off (prompt.allow_agents = false, set by the machine policy or the user configuration); smimed shows its prompts with pinentry")
		}
		if !agent.IsValid() {
			return badArg("%q is not a usable object path for a prompt agent", agent)
		}
		o.s.mu.Lock()
		e.agent = agent
		o.s.mu.Unlock()
		o.s.log.Info("prompt agent registered", "caller", caller.Name, "pid", caller.PID, "exe", caller.Exe, "agent", agent)
		return nil
	})
}

// UnregisterPromptAgent answers UnregisterPromptAgent.
func (o object) UnregisterPromptAgent(m godbus.Message) *godbus.Error {
	return o.s.callEntry(&m, "UnregisterPromptAgent", func(ctx context.Context, e *callerEntry) error {
		o.s.mu.Lock()
		had := e.agent
		e.agent = ""
		o.s.mu.Unlock()
		if had != "" {
			caller, _ := ipc.CallerFrom(ctx)
			o.s.log.Info("prompt agent unregistered", "caller", caller.Name, "pid", caller.PID, "agent", had)
		}
		return nil
	})
}

// promptAgent returns the prompt agent of the caller with entry e for a new
// request, or nil when it has none or agents are not allowed.
func (s *Server) promptAgent(e *callerEntry, name string) ipc.PromptAgent {
	if !s.allowAgents {
		return nil
	}
	s.mu.Lock()
	registered := e.agent != ""
	s.mu.Unlock()
	if !registered {
		return nil
	}
	return &remoteAgent{s: s, entry: e, name: name}
}

// remoteAgent is a caller's prompt agent as the Service sees it.
type remoteAgent struct {
	s     *Server
	entry *callerEntry
	name  string // the caller's unique name
}

// Ask sends the prompt to the agent the caller has registered now (a
// registration made after the request began is not seen, one replaced since
// is followed) and waits for its answer or for the end of ctx.
func (a *remoteAgent) Ask(ctx context.Context, r ipc.PromptRequest) ([]byte, error) {
	a.s.mu.Lock()
	path := a.entry.agent
	a.s.mu.Unlock()
	if path == "" {
		return nil, ipc.Errorf(ipc.Cancelled, "the caller unregistered its prompt agent while the request waited for a prompt")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := a.s.promptIDs.Add(1)
	obj := a.s.conn.Object(a.name, path)
	a.s.log.Debug("asking the caller's prompt agent", "caller", a.name, "agent", path, "prompt", id,
		"kind", r.Kind, "operation", r.Operation)
	call := obj.CallWithContext(ctx, AgentInterface+".Ask", 0, id, encodeOptions(r))
	if err := ctx.Err(); err != nil {
		// godbus has abandoned the pending call (or the answer came too
		// late): have the agent take its prompt down.
		clearBody(call.Body)
		obj.Go(AgentInterface+".Cancel", godbus.FlagNoReplyExpected, nil, id)
		a.s.log.Debug("prompt agent: prompt taken down", "caller", a.name, "prompt", id, "why", err)
		return nil, err
	}
	if call.Err != nil {
		return nil, agentError(a.name, path, call.Err)
	}
	if len(call.Body) != 1 {
		clearBody(call.Body)
		return nil, fmt.Errorf("ipc/dbus: the prompt agent %s %s answered Ask with %d values, not one byte array", a.name, path, len(call.Body))
	}
	secret, ok := call.Body[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("ipc/dbus: the prompt agent %s %s answered Ask with a %T, not a byte array", a.name, path, call.Body[0])
	}
	if len(secret) > MaxAgentSecretBytes {
		clear(secret)
		return nil, fmt.Errorf("ipc/dbus: the prompt agent %s %s answered with more than %d bytes", a.name, path, MaxAgentSecretBytes)
	}
	return secret, nil
}

// agentError turns the error of an Ask call into what the Service sees:
// Cancelled stays Cancelled; anything else means the agent failed.
func agentError(name string, path godbus.ObjectPath, err error) error {
	var de godbus.Error
	if pe := (*godbus.Error)(nil); errors.As(err, &pe) && pe != nil {
		de = *pe
	} else if !errors.As(err, &de) {
		return fmt.Errorf("ipc/dbus: the prompt agent %s %s: %w", name, path, err)
	}
	if de.Name == DBusErrorName(ipc.Cancelled) {
		return &ipc.Error{Name: ipc.Cancelled, Message: "the prompt was cancelled: " + de.Error()}
	}
	return fmt.Errorf("ipc/dbus: the prompt agent %s %s failed: %s: %s", name, path, de.Name, de.Error())
}

// clearBody zeroes the byte arrays of a reply nobody will use.
func clearBody(body []any) {
	for _, v := range body {
		if b, ok := v.([]byte); ok {
			clear(b)
		}
	}
}
