package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	smimedbus "github.com/smimed/smimed/ipc/dbus"
)

// serveOnBus serves h's Service on a private bus, as cmd/smimed does, and
// returns the bus address once the daemon owns its name.
func serveOnBus(t *testing.T, h *harness) string {
	t.Helper()
	addr := startPrivateBus(t, t.TempDir())
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smimedbus.NewServer(conn, h.svc, smimedbus.ServerOptions{
		Logger:            slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxMessageBytes:   h.cfg.Limits.MaxMessageBytes,
		AllowPromptAgents: h.cfg.Prompt.AllowAgents,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = conn.Close()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var owner string
		if conn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, smimedbus.BusName).Store(&owner) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not take its name")
		}
	}
	return addr
}

func dial(t *testing.T, addr string) *smimedbus.Client {
	t.Helper()
	c, err := smimedbus.Dial(t.Context(), smimedbus.ClientOptions{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestPromptAgentOverDBus: the whole chain with the real server, client
// and Service. The client that registered an agent gets its prompts there,
// with nothing in pinentry; another client on the same bus still gets
// pinentry; with agents forbidden, the registration is refused.
func TestPromptAgentOverDBus(t *testing.T) {
	t.Parallel()
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{})
		alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
		h.importIdentity(alice)
		addr := serveOnBus(t, h)
		withAgent, without := dial(t, addr), dial(t, addr)
		agent := &fakeAgent{answer: keyPass}
		if err := withAgent.RegisterPromptAgent(t.Context(), agent); err != nil {
			t.Fatal(err)
		}
		msg := newMail("alice@example.org", "bob@example.org", "Budget 2027", "numbers")
		before := len(h.prompts())

		var signed bytes.Buffer
		err := withAgent.Sign(t.Context(), ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(msg), &signed)
		if err != nil {
			t.Fatalf("Sign with an agent: %v", err)
		}
		reqs := agent.asked()
		if len(reqs) != 1 || reqs[0].Kind != ipc.PromptPassphrase || !strings.Contains(reqs[0].Description, "Budget 2027") {
			t.Errorf("the agent was asked %+v", reqs)
		}
		if n := len(h.prompts()) - before; n != 0 {
			t.Errorf("pinentry ran %d times for the client with an agent", n)
		}
		if st, err := without.Verify(t.Context(), ipc.OpenRequest{}, bytes.NewReader(signed.Bytes()), &bytes.Buffer{}); err != nil || st.Signed != true {
			t.Errorf("Verify of what the agent's passphrase signed: %+v, %v", st, err)
		}

		// A wrong passphrase from the agent: PinIncorrect, one Ask.
		agent.set(wrongPass, nil)
		err = withAgent.Sign(t.Context(), ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(msg), &bytes.Buffer{})
		if !errors.Is(err, &ipc.Error{Name: ipc.PinIncorrect}) || len(agent.asked()) != 2 {
			t.Errorf("Sign with a wrong passphrase from the agent = %v after %d asks", err, len(agent.asked()))
		}

		// The other client is not affected: pinentry asks.
		h.setPINs(keyPass)
		if err := without.Sign(t.Context(), ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(msg), &bytes.Buffer{}); err != nil {
			t.Fatalf("Sign without an agent: %v", err)
		}
		if n := len(h.prompts()) - before; n != 1 || len(agent.asked()) != 2 {
			t.Errorf("the client without an agent: %d pinentry prompts (want 1), agent asked %d times (want 2)", n, len(agent.asked()))
		}
		lines := h.auditLines()
		if l := lines[len(lines)-1]; l.CallerPID != uint32(os.Getpid()) || l.Outcome != "ok" || !strings.HasPrefix(l.CallerName, ":") {
			t.Errorf("audit line %+v", l)
		}
		h.assertNoSecrets()
	})
	t.Run("forbidden", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{policy: "[prompt]\nlocked = true\nprogram = \"/nonexistent/pinentry\"\nallow_agents = false\n"})
		addr := serveOnBus(t, h)
		c := dial(t, addr)
		err := c.RegisterPromptAgent(t.Context(), &fakeAgent{})
		var ie *ipc.Error
		if !errors.As(err, &ie) || ie.Name != ipc.NotAuthorized || !strings.Contains(ie.Message, "prompt.allow_agents") {
			t.Errorf("RegisterPromptAgent against the policy = %v, want NotAuthorized naming prompt.allow_agents", err)
		}
	})
}
