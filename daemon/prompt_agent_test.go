package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/smimed/smimed/daemon/audit"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
)

// fakeAgent is a caller's prompt agent: it answers every prompt with
// answer, or fails with err, and records what it was asked and the buffers
// it handed out.
type fakeAgent struct {
	mu     sync.Mutex
	answer string
	err    error
	reqs   []ipc.PromptRequest
	given  [][]byte
}

func (a *fakeAgent) Ask(ctx context.Context, r ipc.PromptRequest) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reqs = append(a.reqs, r)
	if a.err != nil {
		return nil, a.err
	}
	b := []byte(a.answer)
	a.given = append(a.given, b)
	return b, nil
}

func (a *fakeAgent) set(answer string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.answer, a.err = answer, err
}

func (a *fakeAgent) asked() []ipc.PromptRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reqs)
}

// allZeroed reports whether every buffer the agent handed out was wiped.
func (a *fakeAgent) allZeroed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.given {
		if !bytes.Equal(b, make([]byte, len(b))) {
			return false
		}
	}
	return true
}

// TestPromptAgent: with the caller's prompt agent in the request's context,
// the passphrase is asked there, exactly once per private-key operation and
// never through pinentry; a wrong one is PinIncorrect without a retry and
// the next prompt says so; cancelling is Cancelled; an agent that fails
// gives KeystoreLocked and no pinentry either.
func TestPromptAgent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	h.importIdentity(alice) // through pinentry: no agent in that request
	agent := &fakeAgent{answer: keyPass}
	ctx := ipc.WithPromptAgent(h.ctx(), agent)
	msg := newMail("Alice <alice@example.org>", "bob@example.org", "Quarterly report", "Hello Bob")
	sign := func() error {
		return h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org", Subject: "Quarterly report", Counterpart: "bob@example.org"},
			bytes.NewReader(msg), io.Discard)
	}
	pinentryBefore := len(h.prompts())

	if err := sign(); err != nil {
		t.Fatalf("Sign through the agent: %v", err)
	}
	reqs := agent.asked()
	if len(reqs) != 1 {
		t.Fatalf("the agent was asked %d times, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Kind != ipc.PromptPassphrase || r.Operation != "sign" || r.Subject != "Quarterly report" ||
		r.Counterpart != "bob@example.org" || !strings.Contains(r.KeyLabel, "alice@example.org") ||
		r.Title == "" || r.Error != "" || r.TokenLabel != "" {
		t.Errorf("the agent was asked %+v", r)
	}
	for _, want := range []string{"Enter the passphrase to sign a message.", `"Quarterly report" to bob@example.org`, "alice@example.org"} {
		if !strings.Contains(r.Description, want) {
			t.Errorf("the agent's description %q lacks %q", r.Description, want)
		}
	}
	if !agent.allZeroed() {
		t.Error("the agent's answer was not zeroed")
	}
	if lines := h.auditLines(); lines[len(lines)-1].Operation != audit.OpSign || lines[len(lines)-1].Outcome != "ok" {
		t.Errorf("audit line %+v", lines[len(lines)-1])
	}

	// A wrong passphrase: PinIncorrect after exactly one Ask.
	agent.set(wrongPass, nil)
	wantName(t, sign(), ipc.PinIncorrect)
	if n := len(agent.asked()); n != 2 {
		t.Errorf("the agent was asked %d times after a wrong passphrase, want 2 (no retry)", n)
	}
	// The next prompt says the last one was wrong.
	agent.set(keyPass, nil)
	if err := sign(); err != nil {
		t.Fatal(err)
	}
	if reqs := agent.asked(); len(reqs) != 3 || !strings.Contains(reqs[2].Error, "Wrong passphrase") {
		t.Errorf("the prompt after a wrong passphrase: %+v", reqs[len(reqs)-1])
	}

	// Cancelled in the agent.
	agent.set("", ipc.Errorf(ipc.Cancelled, "the user closed the dialog"))
	wantName(t, sign(), ipc.Cancelled)
	if lines := h.auditLines(); lines[len(lines)-1].Outcome != audit.OutcomeCancelled {
		t.Errorf("audit outcome %q, want cancelled", lines[len(lines)-1].Outcome)
	}

	// The agent fails: KeystoreLocked naming it, and no pinentry instead.
	agent.set("", errors.New("the add-on's window is gone"))
	ie := wantName(t, sign(), ipc.KeystoreLocked)
	if !strings.Contains(ie.Message, "prompt agent") || !strings.Contains(ie.Message, "window is gone") {
		t.Errorf("message %q", ie.Message)
	}

	// Decrypting asks the agent too.
	agent.set(keyPass, nil)
	var enc bytes.Buffer
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{From: "alice@example.org"}, bytes.NewReader(msg), &enc); err != nil {
		t.Fatal(err)
	}
	n := len(agent.asked())
	var plain bytes.Buffer
	if _, err := h.svc.Decrypt(ctx, ipc.OpenRequest{}, bytes.NewReader(enc.Bytes()), &plain); err != nil {
		t.Fatalf("Decrypt through the agent: %v", err)
	}
	if reqs := agent.asked(); len(reqs) != n+1 || reqs[n].Operation != "decrypt" || !strings.Contains(plain.String(), "Hello Bob") {
		t.Errorf("Decrypt: agent asked %d times, last %+v", len(reqs)-n, reqs[len(reqs)-1])
	}

	if n := len(h.prompts()) - pinentryBefore; n != 0 {
		t.Errorf("pinentry ran %d times while the caller had a prompt agent", n)
	}
	if !agent.allZeroed() {
		t.Error("an answer of the agent was not zeroed")
	}
	h.assertNoSecrets()
}

// TestPromptAgentForbiddenByPolicy: a policy that locks prompt.allow_agents
// off beats the user's setting, and the prompter ignores an agent in the
// context: pinentry asks.
func TestPromptAgentForbiddenByPolicy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{
		policy: "enforce = [\"prompt.allow_agents\"]\n[prompt]\nallow_agents = false\n",
		prompt: "allow_agents = true\n",
	})
	if h.cfg.Prompt.AllowAgents {
		t.Fatal("the user turned prompt agents on against the policy")
	}
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	h.importIdentity(alice)
	agent := &fakeAgent{answer: wrongPass}
	ctx := ipc.WithPromptAgent(h.ctx(), agent)
	before := len(h.prompts())
	h.setPINs(keyPass)
	err := h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(newMail("alice@example.org", "b@example.org", "s", "b")), io.Discard)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if n := len(agent.asked()); n != 0 {
		t.Errorf("the agent was asked %d times although the policy forbids agents", n)
	}
	if n := len(h.prompts()) - before; n != 1 {
		t.Errorf("pinentry ran %d times, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "prompt.allow_agents is locked by the machine policy") {
		t.Error("the ignored user setting is not logged")
	}
}
