//go:build linux

package dbus

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// testAgent is an ipc.PromptAgent that records what it is asked and answers
// with answer (the secret "1234" when nil).
type testAgent struct {
	mu      sync.Mutex
	reqs    []ipc.PromptRequest
	answers [][]byte // every slice returned, to check that it was zeroed
	answer  func(ctx context.Context, r ipc.PromptRequest) ([]byte, error)
}

func (a *testAgent) Ask(ctx context.Context, r ipc.PromptRequest) ([]byte, error) {
	a.mu.Lock()
	a.reqs = append(a.reqs, r)
	answer := a.answer
	a.mu.Unlock()
	var b []byte
	var err error
	if answer == nil {
		b = []byte("1234")
	} else {
		b, err = answer(ctx, r)
	}
	a.mu.Lock()
	a.answers = append(a.answers, b)
	a.mu.Unlock()
	return b, err
}

func (a *testAgent) setAnswer(fn func(ctx context.Context, r ipc.PromptRequest) ([]byte, error)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answer = fn
}

func (a *testAgent) asked() []ipc.PromptRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

// seen is what the Service got when it looked for the caller's agent.
type seen struct {
	has    bool
	secret []byte
	err    error
}

// askFromService makes the fake's Sign ask the caller's prompt agent, if
// any, for r and report what it saw.
func askFromService(f *fake, r ipc.PromptRequest) chan seen {
	ch := make(chan seen, 10)
	f.setHook(func(ctx context.Context) error {
		a, ok := ipc.PromptAgentFrom(ctx)
		res := seen{has: ok}
		if ok {
			res.secret, res.err = a.Ask(ctx, r)
		}
		ch <- res
		return res.err
	})
	return ch
}

func sign(t *testing.T, c *Client) error {
	t.Helper()
	return c.Sign(t.Context(), ipc.SignRequest{From: "a@x"}, strings.NewReader("m"), io.Discard)
}

// agentOf returns the path of the agent the server has for a unique name.
func agentOf(s *Server, name string) godbus.ObjectPath {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.callers[name]; e != nil {
		return e.agent
	}
	return ""
}

func uniqueName(c *Client) string { return c.conn.Names()[0] }

var fullRequest = ipc.PromptRequest{
	Kind: ipc.PromptPIN, Operation: "sign", KeyLabel: "CN=Alice", TokenLabel: "Alice's card",
	Subject: "Quarterly report", Counterpart: "bob@example.org", TriesLeft: 2,
	Error: "Wrong PIN", Title: "smimed: PIN", Description: "Enter the PIN to sign a message.",
}

func TestPromptAgentPerClient(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{AllowPromptAgents: true}, "")
	results := askFromService(f, fullRequest)
	c, other := e.client(t), e.client(t)
	agent := &testAgent{}

	// Before registering: no agent in the request's context.
	if err := sign(t, c); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.has {
		t.Fatal("a request carries a prompt agent before any was registered")
	}

	if err := c.RegisterPromptAgent(t.Context(), agent); err != nil {
		t.Fatal(err)
	}
	if got := agentOf(e.srv, uniqueName(c)); got != AgentObjectPath {
		t.Errorf("the server has agent %q for the client", got)
	}
	if err := sign(t, c); err != nil {
		t.Fatal(err)
	}
	r := <-results
	if !r.has || r.err != nil || string(r.secret) != "1234" {
		t.Fatalf("the Service saw %+v, want the agent's secret", r)
	}
	if got := agent.asked(); len(got) != 1 || !reflect.DeepEqual(got[0], fullRequest) {
		t.Errorf("the agent was asked %+v, want %+v", got, fullRequest)
	}
	agent.mu.Lock()
	for _, b := range agent.answers {
		if len(b) == 0 || !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("the client did not zero the agent's answer: %q", b)
		}
	}
	agent.mu.Unlock()

	// Negative and absent values travel too.
	results = askFromService(f, ipc.PromptRequest{Kind: ipc.PromptConfirm, TriesLeft: -1})
	agent.setAnswer(func(context.Context, ipc.PromptRequest) ([]byte, error) { return nil, nil })
	if err := sign(t, c); err != nil {
		t.Fatal(err)
	}
	if r := <-results; !r.has || r.err != nil || len(r.secret) != 0 {
		t.Errorf("confirm: the Service saw %+v", r)
	}
	if got := agent.asked(); len(got) != 2 || got[1] != (ipc.PromptRequest{Kind: ipc.PromptConfirm, TriesLeft: -1}) {
		t.Errorf("the agent was asked %+v", got)
	}

	// Another client on the same bus does not see it.
	if err := sign(t, other); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.has {
		t.Error("another client's request carries the first client's prompt agent")
	}
	if n := len(agent.asked()); n != 2 {
		t.Errorf("the agent was asked %d times, want 2", n)
	}

	// Registering again replaces the agent.
	second := &testAgent{}
	if err := c.RegisterPromptAgent(t.Context(), second); err != nil {
		t.Fatal(err)
	}
	if err := sign(t, c); err != nil {
		t.Fatal(err)
	}
	if r := <-results; !r.has || len(second.asked()) != 1 || len(agent.asked()) != 2 {
		t.Errorf("after a second registration: %+v; new agent asked %d times, old %d", r, len(second.asked()), len(agent.asked()))
	}

	// Unregistering drops it.
	if err := c.UnregisterPromptAgent(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := agentOf(e.srv, uniqueName(c)); got != "" {
		t.Errorf("the server still has agent %q", got)
	}
	if err := sign(t, c); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.has {
		t.Error("a request carries a prompt agent after UnregisterPromptAgent")
	}
	if err := c.UnregisterPromptAgent(t.Context()); err != nil {
		t.Errorf("a second UnregisterPromptAgent: %v", err)
	}

	// Leaving the bus drops it.
	if err := c.RegisterPromptAgent(t.Context(), agent); err != nil {
		t.Fatal(err)
	}
	name := uniqueName(c)
	if agentOf(e.srv, name) == "" {
		t.Fatal("registration lost")
	}
	_ = c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for agentOf(e.srv, name) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the server kept the agent of a client that left the bus")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(e.log.String(), "prompt agent registered") {
		t.Error("registrations are not logged")
	}
}

func TestPromptAgentsForbidden(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "") // the zero value forbids them
	results := askFromService(f, fullRequest)
	c := e.client(t)
	agent := &testAgent{}
	err := c.RegisterPromptAgent(t.Context(), agent)
	if !isName(err, ipc.NotAuthorized) || !strings.Contains(err.Error(), "prompt.allow_agents") {
		t.Fatalf("RegisterPromptAgent with agents forbidden = %v, want NotAuthorized naming prompt.allow_agents", err)
	}
	if err := sign(t, c); err != nil {
		t.Fatal(err)
	}
	if r := <-results; r.has {
		t.Error("a refused agent reached the Service")
	}
	// The failed registration took the agent object off the bus again.
	err = connect(t, e.addr).Object(uniqueName(c), AgentObjectPath).Call(AgentInterface+".Cancel", 0, uint32(1)).Err
	var de godbus.Error
	if !errors.As(err, &de) || !slices.Contains([]string{errUnknownObject, errUnknownIface, errUnknownMethod, errNoSuchObject}, de.Name) {
		t.Errorf("the agent object is still exported after a refused registration (Cancel: %v)", err)
	}
	if n := len(agent.asked()); n != 0 {
		t.Errorf("the agent was asked %d times", n)
	}
}

func TestPromptAgentOutcomes(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{AllowPromptAgents: true}, "")
	c := e.client(t)
	agent := &testAgent{}
	if err := c.RegisterPromptAgent(t.Context(), agent); err != nil {
		t.Fatal(err)
	}
	results := askFromService(f, fullRequest)
	setAnswer := agent.setAnswer

	t.Run("cancelled", func(t *testing.T) {
		setAnswer(func(context.Context, ipc.PromptRequest) ([]byte, error) {
			return nil, ipc.Errorf(ipc.Cancelled, "the user closed the dialog")
		})
		err := sign(t, c)
		r := <-results
		if !r.has || !isName(r.err, ipc.Cancelled) || r.secret != nil {
			t.Errorf("the Service saw %+v, want Cancelled", r)
		}
		if !isName(err, ipc.Cancelled) {
			t.Errorf("Sign = %v, want Cancelled", err)
		}
	})
	t.Run("failure is not Cancelled", func(t *testing.T) {
		setAnswer(func(context.Context, ipc.PromptRequest) ([]byte, error) {
			return nil, errors.New("the window exploded")
		})
		_ = sign(t, c)
		r := <-results
		if r.err == nil || isName(r.err, ipc.Cancelled) || !strings.Contains(r.err.Error(), "window exploded") {
			t.Errorf("the Service saw %+v, want a failure with the agent's message", r)
		}
	})
	t.Run("too long", func(t *testing.T) {
		setAnswer(func(context.Context, ipc.PromptRequest) ([]byte, error) {
			return bytes.Repeat([]byte("x"), MaxAgentSecretBytes+1), nil
		})
		_ = sign(t, c)
		if r := <-results; r.err == nil || r.secret != nil {
			t.Errorf("the Service saw %+v, want an error", r)
		}
	})
	t.Run("request ends: the agent is told", func(t *testing.T) {
		ended := make(chan error, 1)
		setAnswer(func(ctx context.Context, _ ipc.PromptRequest) ([]byte, error) {
			<-ctx.Done()
			ended <- ctx.Err()
			return nil, ctx.Err()
		})
		f.setHook(func(ctx context.Context) error {
			a, _ := ipc.PromptAgentFrom(ctx)
			actx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
			_, err := a.Ask(actx, fullRequest)
			results <- seen{has: true, err: err}
			return err
		})
		defer func() { results = askFromService(f, fullRequest) }()
		_ = sign(t, c)
		if r := <-results; !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("the Service saw %+v, want its deadline", r)
		}
		select {
		case err := <-ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the agent's context ended with %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the agent was not told to take its prompt down")
		}
	})
	t.Run("unregistered while the request waits", func(t *testing.T) {
		setAnswer(nil)
		proceed := make(chan struct{})
		f.setHook(func(ctx context.Context) error {
			a, ok := ipc.PromptAgentFrom(ctx)
			<-proceed
			var err error
			if ok {
				_, err = a.Ask(ctx, fullRequest)
			}
			results <- seen{has: ok, err: err}
			return err
		})
		defer func() { results = askFromService(f, fullRequest) }()
		done := make(chan error, 1)
		go func() { done <- sign(t, c) }()
		for f.active.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		before := len(agent.asked())
		if err := c.UnregisterPromptAgent(t.Context()); err != nil {
			t.Fatal(err)
		}
		close(proceed)
		if r := <-results; !r.has || !isName(r.err, ipc.Cancelled) {
			t.Errorf("the Service saw %+v, want Cancelled", r)
		}
		<-done
		if n := len(agent.asked()) - before; n != 0 {
			t.Errorf("an unregistered agent was asked %d times", n)
		}
	})
}

// Only the daemon may ask a client's agent for a PIN.
func TestPromptAgentAnswersOnlyTheDaemon(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{AllowPromptAgents: true}, "")
	c := e.client(t)
	agent := &testAgent{}
	if err := c.RegisterPromptAgent(t.Context(), agent); err != nil {
		t.Fatal(err)
	}
	rogue := connect(t, e.addr).Object(uniqueName(c), AgentObjectPath)
	var secret []byte
	err := rogue.Call(AgentInterface+".Ask", 0, uint32(1), encodeOptions(fullRequest)).Store(&secret)
	var de godbus.Error
	if !errors.As(err, &de) || de.Name != errAccessDenied || secret != nil {
		t.Errorf("Ask from another connection = %v, %q; want AccessDenied", err, secret)
	}
	err = rogue.Call(AgentInterface+".Cancel", 0, uint32(1)).Err
	if !errors.As(err, &de) || de.Name != errAccessDenied {
		t.Errorf("Cancel from another connection = %v; want AccessDenied", err)
	}
	if n := len(agent.asked()); n != 0 {
		t.Errorf("the agent was asked %d times by a stranger", n)
	}

	// It introspects as documented.
	var x string
	if err := rogue.Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&x); err != nil {
		t.Fatal(err)
	}
	want, err := agentIntrospectionXML()
	if err != nil {
		t.Fatal(err)
	}
	if x != want {
		t.Errorf("the agent introspects as\n%s\nwant\n%s", x, want)
	}
}

func TestAgentDocumentationComplete(t *testing.T) {
	var exported []string
	typ := reflect.TypeFor[agentObject]()
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		if m.Type.NumOut() > 0 && m.Type.Out(m.Type.NumOut()-1) == reflect.TypeFor[*godbus.Error]() {
			exported = append(exported, m.Name)
		}
	}
	var documented []string
	for _, m := range agentMethodDocs() {
		documented = append(documented, m.name)
	}
	slices.Sort(exported)
	slices.Sort(documented)
	if !slices.Equal(exported, documented) {
		t.Errorf("agent methods %v, documented %v", exported, documented)
	}
	x, err := agentIntrospectionXML()
	if err != nil {
		t.Fatal(err)
	}
	var node struct {
		Interfaces []struct {
			Name    string `xml:"name,attr"`
			Methods []struct {
				Name string `xml:"name,attr"`
				Args []struct {
					Name string `xml:"name,attr"`
					Type string `xml:"type,attr"`
				} `xml:"arg"`
			} `xml:"method"`
		} `xml:"interface"`
	}
	d := xml.NewDecoder(strings.NewReader(x))
	d.Strict = false
	if err := d.Decode(&node); err != nil {
		t.Fatalf("the agent's introspection XML does not parse: %v", err)
	}
	if len(node.Interfaces) != 2 || node.Interfaces[1].Name != AgentInterface || len(node.Interfaces[1].Methods) != 2 {
		t.Fatalf("parsed agent XML: %+v", node)
	}
	var sigs []string
	for _, a := range node.Interfaces[1].Methods[0].Args {
		sigs = append(sigs, a.Type)
	}
	if node.Interfaces[1].Methods[0].Name != "Ask" || !slices.Equal(sigs, []string{"u", "a{sv}", "ay"}) {
		t.Errorf("Ask is %+v", node.Interfaces[1].Methods[0])
	}
	daemonXML, err := introspectionXML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Ask(u id, a{sv} request) -> (ay secret)", "Cancel(u id)", "interface " + AgentInterface} {
		if !strings.Contains(daemonXML, want) {
			t.Errorf("the daemon's XML does not describe the agent: %q missing", want)
		}
	}
}
