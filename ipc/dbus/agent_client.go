//go:build unix

package dbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// askKey names one prompt: the daemon's unique name and its prompt id.
type askKey struct {
	daemon string
	id     uint32
}

// earlyCancelTTL is how long a Cancel that arrived before its Ask is
// remembered.
const earlyCancelTTL = time.Minute

// RegisterPromptAgent makes a show the prompts of this client's requests:
// it exports an object implementing AgentInterface at AgentObjectPath on
// the client's connection and registers it with the daemon. From then on,
// while the connection lasts, the daemon asks a for every PIN, passphrase
// or confirmation that a request made through this Client needs, instead of
// running pinentry; requests of other connections are not affected.
// Registering again replaces a.
//
// a.Ask runs on its own goroutine for each prompt, while the request that
// needs it is still waiting for its reply, and its ctx ends when the daemon
// takes the prompt down (the request was cancelled), when the agent is
// unregistered or when the Client is closed. Only the daemon (the owner of
// BusName) may call the agent; others get AccessDenied. The slice a.Ask
// returns is copied into the reply and zeroed; a must not keep it.
//
// The daemon refuses the registration with NotAuthorized when its policy
// forbids prompt agents (prompt.allow_agents); prompts then stay with
// pinentry. A registration lives in one daemon instance: after the daemon
// restarts, register again.
func (c *Client) RegisterPromptAgent(ctx context.Context, a ipc.PromptAgent) error {
	if a == nil {
		return errors.New("ipc/dbus: RegisterPromptAgent needs an agent")
	}
	c.agentMu.Lock()
	prev := c.agent
	if prev == nil {
		if err := c.exportAgent(); err != nil {
			c.agentMu.Unlock()
			return err
		}
	}
	c.agent = a
	c.agentMu.Unlock()

	call := c.obj.CallWithContext(ctx, Interface+".RegisterPromptAgent", 0, godbus.ObjectPath(AgentObjectPath))
	if call.Err == nil {
		return nil
	}
	c.agentMu.Lock()
	if c.agent == a { // not changed meanwhile: undo
		c.agent = prev
		if prev == nil {
			c.unexportAgent()
		}
	}
	c.agentMu.Unlock()
	return c.mapError("RegisterPromptAgent", call.Err)
}

// UnregisterPromptAgent tells the daemon to show this client's prompts with
// pinentry again, and takes the agent's object off the bus; prompts it is
// showing are cancelled. It does nothing when no agent is registered.
func (c *Client) UnregisterPromptAgent(ctx context.Context) error {
	c.agentMu.Lock()
	had := c.agent != nil
	c.agentMu.Unlock()
	if !had {
		return nil
	}
	call := c.obj.CallWithContext(ctx, Interface+".UnregisterPromptAgent", 0)
	c.agentMu.Lock()
	c.agent = nil
	c.unexportAgent()
	c.agentMu.Unlock()
	if call.Err != nil {
		return c.mapError("UnregisterPromptAgent", call.Err)
	}
	return nil
}

// exportAgent puts the agent object on the bus. agentMu is held.
func (c *Client) exportAgent() error {
	x, err := agentIntrospectionXML()
	if err != nil {
		return err
	}
	if err := c.conn.Export(agentObject{c}, AgentObjectPath, AgentInterface); err != nil {
		return fmt.Errorf("ipc/dbus: exporting the prompt agent: %w", err)
	}
	if err := c.conn.Export(introspectable(x), AgentObjectPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		_ = c.conn.Export(nil, AgentObjectPath, AgentInterface)
		return fmt.Errorf("ipc/dbus: exporting the prompt agent: %w", err)
	}
	c.agentCtx, c.agentStop = context.WithCancel(c.conn.Context())
	c.asks = map[askKey]context.CancelFunc{}
	c.early = map[askKey]time.Time{}
	return nil
}

// unexportAgent takes the agent object off the bus and cancels the prompts
// it shows. agentMu is held.
func (c *Client) unexportAgent() {
	_ = c.conn.Export(nil, AgentObjectPath, AgentInterface)
	_ = c.conn.Export(nil, AgentObjectPath, "org.freedesktop.DBus.Introspectable")
	if c.agentStop != nil {
		c.agentStop()
	}
	c.agentCtx, c.agentStop, c.asks, c.early = nil, nil, nil, nil
}

// fromDaemon reports whether sender is the daemon: the current owner of
// BusName. Nobody else may ask this client's user for a PIN.
func (c *Client) fromDaemon(ctx context.Context, sender string) bool {
	if sender == "" {
		return false
	}
	var owner string
	err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
	return err == nil && owner == sender
}

// agentObject is what RegisterPromptAgent exports at AgentObjectPath. Its
// methods are documented in agentMethodDocs.
type agentObject struct{ c *Client }

// Ask answers Ask: it shows the prompt through the registered agent.
func (o agentObject) Ask(m godbus.Message, id uint32, request map[string]godbus.Variant) ([]byte, *godbus.Error) {
	c := o.c
	sender, _ := m.Headers[godbus.FieldSender].Value().(string)
	key := askKey{sender, id}

	c.agentMu.Lock()
	a, base := c.agent, c.agentCtx
	if a == nil {
		c.agentMu.Unlock()
		return nil, agentReplyError(ipc.Errorf(ipc.Cancelled, "this client no longer shows smimed's prompts"))
	}
	if _, cancelled := c.early[key]; cancelled {
		delete(c.early, key)
		c.agentMu.Unlock()
		return nil, agentReplyError(context.Canceled)
	}
	ctx, cancel := context.WithCancel(base)
	c.asks[key] = cancel
	c.agentMu.Unlock()
	defer func() {
		c.agentMu.Lock()
		if c.asks != nil {
			delete(c.asks, key)
		}
		c.agentMu.Unlock()
		cancel()
	}()

	if !c.fromDaemon(ctx, sender) {
		return nil, &godbus.Error{Name: errAccessDenied, Body: []any{"only smimed (the owner of " + BusName + ") may ask this prompt agent"}}
	}
	var r ipc.PromptRequest
	if err := decodeOptions(request, &r); err != nil {
		return nil, invalidArgs("Ask: %v", err)
	}
	secret, err := a.Ask(ctx, r)
	defer clear(secret)
	if err != nil {
		return nil, agentReplyError(err)
	}
	if len(secret) > MaxAgentSecretBytes {
		return nil, agentReplyError(fmt.Errorf("the agent's answer is longer than %d bytes", MaxAgentSecretBytes))
	}
	return nonNil(bytes.Clone(secret)), nil
}

// Cancel answers Cancel: the daemon no longer waits for prompt id.
func (o agentObject) Cancel(m godbus.Message, id uint32) *godbus.Error {
	c := o.c
	sender, _ := m.Headers[godbus.FieldSender].Value().(string)
	ctx, cancel := context.WithTimeout(c.conn.Context(), 10*time.Second)
	defer cancel()
	if !c.fromDaemon(ctx, sender) {
		return &godbus.Error{Name: errAccessDenied, Body: []any{"only smimed (the owner of " + BusName + ") may cancel prompts"}}
	}
	key := askKey{sender, id}
	c.agentMu.Lock()
	defer c.agentMu.Unlock()
	if stop, ok := c.asks[key]; ok {
		stop()
		return nil
	}
	if c.early != nil {
		// The Cancel overtook its Ask (each call runs on its own
		// goroutine): remember it for a while, so that the Ask ends at once.
		now := time.Now()
		for k, t := range c.early {
			if now.Sub(t) > earlyCancelTTL {
				delete(c.early, k)
			}
		}
		c.early[key] = now
	}
	return nil
}

// agentReplyError turns the error of an agent's Ask into the D-Bus error
// the daemon gets.
func agentReplyError(err error) *godbus.Error {
	var ie *ipc.Error
	name, msg := ipc.Internal, ""
	switch {
	case errors.As(err, &ie):
		name, msg = ie.Name, ie.Message
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		name, msg = ipc.Cancelled, "the prompt was taken down"
	default:
		msg = err.Error()
	}
	if !slices.Contains(ipc.AllErrorNames(), name) {
		name = ipc.Internal
	}
	return &godbus.Error{Name: DBusErrorName(name), Body: []any{validString(msg)}}
}
