package pinentry_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/prompt/pinentry"
	"github.com/smimed/smimed/prompt/pinentry/pinentrytest"
)

const testPIN = "73%\\ 9ü1"

// harness runs the client against the real testpinentry binary.
type harness struct {
	t   *testing.T
	log string
	bin string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return &harness{t: t, log: filepath.Join(t.TempDir(), "pinentry.log"), bin: pinentrytest.Build(t)}
}

// client returns a Client whose testpinentry answers per cfg; extra is
// appended to a minimal environment.
func (h *harness) client(cfg pinentrytest.Config, extra ...string) *pinentry.Client {
	h.t.Helper()
	cfg.Log = h.log
	env := append([]string{"PATH=" + os.Getenv("PATH")}, cfg.Env(h.t)...)
	env = append(env, extra...)
	c, err := pinentry.New(pinentry.Options{Program: h.bin, Env: env})
	if err != nil {
		h.t.Fatal(err)
	}
	if c.Program() != h.bin {
		h.t.Fatalf("Program() = %q, want %q", c.Program(), h.bin)
	}
	return c
}

func (h *harness) sessions() []pinentrytest.Session {
	return pinentrytest.ReadLog(h.t, h.log)
}

// noLeak fails if a secret shows up in what the testpinentry logged. The
// process id and the timestamps of each session are left out: they are
// numbers of our own making and can contain a PIN's digits by chance.
func (h *harness) noLeak(secrets ...string) {
	h.t.Helper()
	data, err := os.ReadFile(h.log)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		h.t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		var fields map[string]any // decoded, so escaped characters compare as themselves
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			h.t.Fatalf("bad pinentry log line %q: %v", line, err)
		}
		delete(fields, "pid")
		delete(fields, "start")
		delete(fields, "end")
		for name, v := range fields {
			for _, s := range secrets {
				if strings.Contains(fmt.Sprint(v), s) {
					h.t.Errorf("the pinentry log's %q contains the secret %q", name, s)
				}
			}
		}
	}
}

func verbs(s pinentrytest.Session) []string {
	var v []string
	for _, c := range s.Commands {
		v = append(v, c.Cmd)
	}
	return v
}

var signReq = prompt.Request{
	Kind: prompt.PIN, Operation: prompt.OpSign, KeyLabel: "CN=Alice Example", TokenLabel: "Alice's card",
	Subject: "50% discount\nreport", Counterpart: "bob@example.com", TriesLeft: 2,
}

func TestAskPIN(t *testing.T) {
	tests := []struct {
		name       string
		req        prompt.Request
		pin        string
		wantPrompt string
	}{
		{"PIN", signReq, testPIN, "PIN:"},
		{"passphrase", prompt.Request{Kind: prompt.Passphrase, Operation: prompt.OpDecrypt, KeyLabel: "CN=Alice", TriesLeft: -1}, "correct horse % battery", "Passphrase:"},
		{"empty PIN", prompt.Request{Kind: prompt.PIN, Operation: prompt.OpSign, TriesLeft: -1}, "", "PIN:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.client(pinentrytest.Config{PIN: tt.pin}, "LANG=C.UTF-8")
			s, err := c.Ask(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if string(s.Bytes()) != tt.pin {
				t.Errorf("secret has %d bytes, want %d (the PIN answered)", s.Len(), len(tt.pin))
			}
			s.Wipe()

			got := h.sessions()
			if len(got) != 1 {
				t.Fatalf("%d prompts, want 1", len(got))
			}
			sess := got[0]
			if sess.Outcome != "pin" {
				t.Errorf("outcome %q", sess.Outcome)
			}
			want := []string{"OPTION", "OPTION", "SETKEYINFO", "SETTITLE", "SETDESC", "SETPROMPT", "GETPIN", "BYE"}
			if strings.Join(verbs(sess), " ") != strings.Join(want, " ") {
				t.Errorf("commands %v, want %v", verbs(sess), want)
			}
			if d := sess.Description(); d != tt.req.Description() {
				t.Errorf("description on screen:\n%s\nwant:\n%s", d, tt.req.Description())
			}
			if p, _ := sess.Arg("SETPROMPT"); p != tt.wantPrompt {
				t.Errorf("SETPROMPT %q, want %q", p, tt.wantPrompt)
			}
			if k, _ := sess.Arg("SETKEYINFO"); k != "--clear" {
				t.Errorf("SETKEYINFO %q", k)
			}
			if tt.pin != "" {
				h.noLeak(tt.pin)
			}
		})
	}
}

// The description leaves as text with '%' and line breaks and arrives intact
// (percent-escaping round trip through the real binary).
func TestDescriptionRoundTrip(t *testing.T) {
	h := newHarness(t)
	c := h.client(pinentrytest.Config{PIN: "1"})
	req := signReq
	req.KeyLabel = "CN=100% Legit, O=%0A Corp"
	s, err := c.Ask(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	s.Wipe()
	d := h.sessions()[0].Description()
	if d != req.Description() {
		t.Fatalf("description on screen:\n%q\nwant:\n%q", d, req.Description())
	}
	for _, want := range []string{"\n", `"50% discount report"`, "CN=100% Legit, O=%0A Corp", "2 tries left."} {
		if !strings.Contains(d, want) {
			t.Errorf("description lacks %q:\n%s", want, d)
		}
	}
	title, _ := h.sessions()[0].Arg("SETTITLE")
	if title != "smimed: PIN" {
		t.Errorf("title %q", title)
	}
}

func TestSetErrorOnlyWhenErrorSet(t *testing.T) {
	tests := []struct {
		name    string
		errText string
		want    string // "" = no SETERROR
	}{
		{"first attempt", "", ""},
		{"after a wrong PIN", "Wrong PIN", "Wrong PIN"},
		{"error text is one line", "Wrong PIN\n100% sure\r", "Wrong PIN 100% sure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.client(pinentrytest.Config{PIN: "1"})
			req := signReq
			req.Error = tt.errText
			s, err := c.Ask(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			s.Wipe()
			sess := h.sessions()[0]
			got, ok := sess.Arg("SETERROR")
			if ok != (tt.want != "") || got != tt.want {
				t.Errorf("SETERROR sent=%v %q, want %q", ok, got, tt.want)
			}
		})
	}
}

// A wrong PIN then the right one: two user actions, two prompts, each a new
// Request; the client never retries by itself.
func TestWrongThenRightPIN(t *testing.T) {
	h := newHarness(t)
	c := h.client(pinentrytest.Config{PINs: []string{"1111", "2222"}})
	first, err := c.Ask(context.Background(), signReq)
	if err != nil {
		t.Fatal(err)
	}
	if string(first.Bytes()) != "1111" {
		t.Errorf("first answer wrong")
	}
	first.Wipe()
	if n := len(h.sessions()); n != 1 {
		t.Fatalf("%d prompts after one Ask", n)
	}
	retry := signReq
	retry.Error, retry.TriesLeft = "Wrong PIN", 1
	second, err := c.Ask(context.Background(), retry)
	if err != nil {
		t.Fatal(err)
	}
	if string(second.Bytes()) != "2222" {
		t.Errorf("second answer wrong")
	}
	second.Wipe()
	_, err = c.Ask(context.Background(), signReq)
	if !errors.Is(err, prompt.ErrCancelled) {
		t.Errorf("PINs used up: err = %v, want ErrCancelled", err)
	}
	sess := h.sessions()
	if len(sess) != 3 {
		t.Fatalf("%d prompts, want 3", len(sess))
	}
	if !strings.Contains(sess[1].Description(), "FINAL try: a wrong PIN locks the card.") {
		t.Errorf("retry prompt does not warn of the final try:\n%s", sess[1].Description())
	}
	if e, _ := sess[1].Arg("SETERROR"); e != "Wrong PIN" {
		t.Errorf("retry SETERROR %q", e)
	}
	h.noLeak("1111", "2222")
}

func TestCancel(t *testing.T) {
	for _, kind := range []prompt.Kind{prompt.PIN, prompt.Passphrase, prompt.Confirm} {
		t.Run(kind.String(), func(t *testing.T) {
			h := newHarness(t)
			c := h.client(pinentrytest.Config{PIN: testPIN, Cancel: true})
			req := signReq
			req.Kind = kind
			s, err := c.Ask(context.Background(), req)
			if !errors.Is(err, prompt.ErrCancelled) {
				t.Fatalf("err = %v, want ErrCancelled", err)
			}
			if s != nil {
				t.Error("secret returned with an error")
			}
			if strings.Contains(err.Error(), testPIN) {
				t.Errorf("error contains the PIN: %v", err)
			}
			if got := h.sessions(); len(got) != 1 || got[0].Outcome != "cancelled" {
				t.Errorf("sessions %+v", got)
			}
		})
	}
}

func TestConfirm(t *testing.T) {
	h := newHarness(t)
	c := h.client(pinentrytest.Config{PIN: testPIN})
	req := prompt.Request{Kind: prompt.Confirm, Operation: prompt.OpDecrypt, KeyLabel: "CN=Alice", TriesLeft: -1}
	s, err := c.Ask(context.Background(), req)
	if err != nil || s != nil {
		t.Fatalf("Ask = %v, %v; want nil, nil", s, err)
	}
	sess := h.sessions()[0]
	if sess.Count("GETPIN") != 0 || sess.Count("CONFIRM") != 1 || sess.Count("SETPROMPT") != 0 {
		t.Errorf("commands %v", verbs(sess))
	}
	if ok, _ := sess.Arg("SETOK"); ok != "_Decrypt" {
		t.Errorf("SETOK %q", ok)
	}
	if cancel, _ := sess.Arg("SETCANCEL"); cancel != "_Cancel" {
		t.Errorf("SETCANCEL %q", cancel)
	}
	if sess.Description() != "Allow decrypting a message?\n\nKey: CN=Alice" {
		t.Errorf("description %q", sess.Description())
	}
}

func TestNotice(t *testing.T) {
	notice := prompt.Request{Kind: prompt.Notice, Operation: prompt.OpSign, TokenLabel: "Reader", TriesLeft: 3}
	t.Run("user dismisses it", func(t *testing.T) {
		h := newHarness(t)
		c := h.client(pinentrytest.Config{})
		if s, err := c.Ask(context.Background(), notice); err != nil || s != nil {
			t.Fatalf("Ask = %v, %v", s, err)
		}
		if sess := h.sessions()[0]; sess.Count("MESSAGE") != 1 || sess.Outcome != "messaged" {
			t.Errorf("session %+v", sess)
		}
	})
	t.Run("caller takes it down", func(t *testing.T) {
		h := newHarness(t)
		c := h.client(pinentrytest.Config{Hang: true})
		dismiss := prompt.ShowNotice(context.Background(), c, notice)
		sess := waitSessions(t, h, 1)[0]
		if !strings.Contains(sess.Description(), "PIN pad") || sess.Outcome != "hung" {
			t.Errorf("notice session %+v", sess)
		}
		start := time.Now()
		if err := dismiss(); err != nil {
			t.Errorf("dismiss: %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("dismiss took %v", d)
		}
		assertReaped(t, sess.PID)
	})
}

// waitSessions waits until the log holds n sessions (a hanging testpinentry
// logs before it hangs).
func waitSessions(t *testing.T, h *harness, n int) []pinentrytest.Session {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := h.sessions(); len(s) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d pinentry sessions after 10s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTimeoutKillsAndReaps(t *testing.T) {
	for _, kind := range []prompt.Kind{prompt.PIN, prompt.Confirm} {
		t.Run(kind.String(), func(t *testing.T) {
			h := newHarness(t)
			c := h.client(pinentrytest.Config{PIN: testPIN, Hang: true})
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			req := signReq
			req.Kind = kind
			start := time.Now()
			s, err := c.Ask(ctx, req)
			took := time.Since(start)
			if !errors.Is(err, prompt.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			if s != nil {
				t.Error("secret returned on timeout")
			}
			if took > 5*time.Second {
				t.Errorf("Ask returned %v after the deadline", took)
			}
			sess := h.sessions()
			if len(sess) != 1 || sess[0].Outcome != "hung" {
				t.Fatalf("sessions %+v", sess)
			}
			if tmo, ok := sess[0].Arg("SETTIMEOUT"); !ok || tmo != "1" {
				t.Errorf("SETTIMEOUT %q sent=%v, want 1", tmo, ok)
			}
			assertReaped(t, sess[0].PID)
		})
	}
}

func TestCallerCancels(t *testing.T) {
	h := newHarness(t)
	c := h.client(pinentrytest.Config{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := c.Ask(ctx, signReq)
	if !errors.Is(err, context.Canceled) || errors.Is(err, prompt.ErrTimeout) || errors.Is(err, prompt.ErrCancelled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	assertReaped(t, h.sessions()[0].PID)

	// A context already ended starts no pinentry at all.
	if _, err := c.Ask(ctx, signReq); !errors.Is(err, context.Canceled) {
		t.Errorf("dead ctx: %v", err)
	}
	if n := len(h.sessions()); n != 1 {
		t.Errorf("%d sessions, want 1", n)
	}
}

func TestTTYOptions(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"no terminal, no locale", nil, nil},
		{"GPG_TTY and TERM", []string{"GPG_TTY=/dev/pts/7", "TERM=xterm-256color"}, []string{"ttyname=/dev/pts/7", "ttytype=xterm-256color"}},
		{"TERM alone is not a terminal", []string{"TERM=xterm"}, nil},
		{"locale", []string{"LANG=en_GB.UTF-8", "LC_CTYPE=de_DE.UTF-8"}, []string{"lc-ctype=de_DE.UTF-8", "lc-messages=en_GB.UTF-8"}},
		{"LC_ALL wins", []string{"LANG=en_GB.UTF-8", "LC_ALL=C.UTF-8"}, []string{"lc-ctype=C.UTF-8", "lc-messages=C.UTF-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			c := h.client(pinentrytest.Config{PIN: "1"}, tt.env...)
			s, err := c.Ask(context.Background(), signReq)
			if err != nil {
				t.Fatal(err)
			}
			s.Wipe()
			var got []string
			for _, cmd := range h.sessions()[0].Commands {
				if cmd.Cmd == "OPTION" {
					got = append(got, cmd.Arg)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("OPTIONs %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBrokenPrograms(t *testing.T) {
	dir := t.TempDir()
	write := func(name, script string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		program string
		want    string
	}{
		{"exits at once", write("exits", "exit 0"), "greeting"},
		{"never greets", write("silent", "exec sleep 60"), "did not answer within"},
		{"not Assuan", write("chatty", "echo HELLO; cat >/dev/null"), "protocol error"},
		{"dies while asked", write("dies", "echo OK; read a; echo OK; read a; exit 3"), "pinentry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := pinentry.New(pinentry.Options{Program: tt.program, Env: []string{"PATH=" + os.Getenv("PATH")}, StartTimeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.Ask(context.Background(), signReq)
			if err == nil || errors.Is(err, prompt.ErrCancelled) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

func TestProgramRemovedAfterNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pinentry-gone")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := pinentry.New(pinentry.Options{Program: p, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(p)
	if _, err := c.Ask(context.Background(), signReq); !errors.Is(err, prompt.ErrNoPrompter) {
		t.Errorf("err = %v, want ErrNoPrompter", err)
	}
}

func TestInvalidKind(t *testing.T) {
	h := newHarness(t)
	c := h.client(pinentrytest.Config{})
	if _, err := c.Ask(context.Background(), prompt.Request{}); err == nil {
		t.Error("zero Request accepted")
	}
	if len(h.sessions()) != 0 {
		t.Error("a pinentry ran for an invalid request")
	}
}

// 20 callers through Serialized and the real client: the testpinentry's
// sessions never overlap in time.
func TestSerializedRealPinentry(t *testing.T) {
	h := newHarness(t)
	c := prompt.Serialized(h.client(pinentrytest.Config{PIN: testPIN, Delay: 5 * time.Millisecond}))
	const callers = 20
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := c.Ask(context.Background(), signReq)
			if err != nil {
				t.Error(err)
				return
			}
			if string(s.Bytes()) != testPIN {
				t.Error("wrong secret")
			}
			s.Wipe()
		}()
	}
	wg.Wait()
	sess := h.sessions()
	if len(sess) != callers {
		t.Fatalf("%d sessions, want %d", len(sess), callers)
	}
	for i := 1; i < len(sess); i++ {
		if sess[i].Start.Before(sess[i-1].End) {
			t.Errorf("session %d (pid %d) started %v before session %d ended", i, sess[i].PID, sess[i-1].End.Sub(sess[i].Start), i-1)
		}
	}
	h.noLeak(testPIN)
}

// The client's own log lines (debug level) carry neither the PIN nor the
// prompt text.
func TestLoggerNeverSeesThePIN(t *testing.T) {
	h := newHarness(t)
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	env := append([]string{"PATH=" + os.Getenv("PATH")}, pinentrytest.Config{PIN: testPIN, Log: h.log}.Env(t)...)
	c, err := pinentry.New(pinentry.Options{Program: h.bin, Env: env, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Ask(context.Background(), signReq)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("got it", "secret", s)
	s.Wipe()
	out := buf.String()
	if !strings.Contains(out, `"msg":"pinentry prompt"`) || !strings.Contains(out, `"secret":"[redacted]"`) {
		t.Errorf("log lacks the expected lines:\n%s", out)
	}
	for _, leak := range []string{testPIN, "Quarterly", "discount"} {
		if strings.Contains(out, leak) {
			t.Errorf("log contains %q:\n%s", leak, out)
		}
	}
}
