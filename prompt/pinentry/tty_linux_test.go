//go:build linux

package pinentry_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/prompt/pinentry"
)

// The real pinentry-tty and pinentry-curses need a terminal: the test runs
// this test binary again inside a tmux pane (TestMain dispatches on
// ttyHelperEnv), where our client starts the pinentry on the pane's
// terminal (GPG_TTY), and types into it with tmux send-keys.
const (
	ttyHelperEnv     = "SMIMED_PINENTRY_TTY_HELPER" // result file
	ttyHelperProgram = "SMIMED_PINENTRY_TTY_PROGRAM"
	ttyHelperKind    = "SMIMED_PINENTRY_TTY_KIND"
	ttyHelperTimeout = "SMIMED_PINENTRY_TTY_TIMEOUT"
)

func TestMain(m *testing.M) {
	if out := os.Getenv(ttyHelperEnv); out != "" {
		os.Exit(ttyHelper(out))
	}
	os.Exit(m.Run())
}

// ttyResult is what the helper reports: never the PIN, only its hash.
type ttyResult struct {
	Err          string `json:"err,omitempty"`
	Cancelled    bool   `json:"cancelled,omitempty"`
	TimedOut     bool   `json:"timedOut,omitempty"`
	SecretSHA256 string `json:"secretSHA256,omitempty"`
	// TTYRestored: the terminal's settings (stty -g) after the prompt are
	// those from before it, however the pinentry ended.
	TTYRestored bool `json:"ttyRestored"`
}

func ttyRequest(kind string) prompt.Request {
	r := prompt.Request{Kind: prompt.PIN, Operation: prompt.OpSign, KeyLabel: "CN=Alice Example",
		TokenLabel: "SoftHSM T", Subject: "Quarterly report", Counterpart: "bob@example.com", TriesLeft: 2}
	switch kind {
	case "retry":
		r.Error, r.TriesLeft = "Wrong PIN", 1
	case "confirm":
		r.Kind, r.TriesLeft = prompt.Confirm, prompt.TriesUnknown
	case "notice":
		r.Kind = prompt.Notice
	}
	return r
}

func sttyState() string {
	cmd := exec.Command("stty", "-g")
	cmd.Stdin = os.Stdin
	out, err := cmd.Output()
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}

// ttyHelper runs in the tmux pane: one Ask through the real pinentry.
func ttyHelper(out string) int {
	res := ttyResult{}
	tty, err := os.Readlink("/proc/self/fd/0")
	if err == nil {
		env := append(os.Environ(), "GPG_TTY="+tty)
		var c *pinentry.Client
		c, err = pinentry.New(pinentry.Options{Program: os.Getenv(ttyHelperProgram), Env: env})
		if err == nil {
			timeout := 60 * time.Second
			if d, perr := time.ParseDuration(os.Getenv(ttyHelperTimeout)); perr == nil {
				timeout = d
			}
			before := sttyState()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			req := ttyRequest(os.Getenv(ttyHelperKind))
			if req.Kind == prompt.Notice {
				// Shown until the test creates out+".dismiss".
				dismiss := prompt.ShowNotice(ctx, c, req)
				for _, serr := os.Stat(out + ".dismiss"); serr != nil; _, serr = os.Stat(out + ".dismiss") {
					time.Sleep(20 * time.Millisecond)
				}
				err = dismiss()
			} else {
				var s *prompt.Secret
				s, err = c.Ask(ctx, req)
				if s != nil {
					sum := sha256.Sum256(s.Bytes())
					res.SecretSHA256 = hex.EncodeToString(sum[:])
					s.Wipe()
				}
			}
			cancel()
			res.TTYRestored = sttyState() == before
		}
	}
	if err != nil {
		res.Err = err.Error()
		res.Cancelled = errors.Is(err, prompt.ErrCancelled)
		res.TimedOut = errors.Is(err, prompt.ErrTimeout)
	}
	data, _ := json.Marshal(res)
	if os.WriteFile(out+".tmp", data, 0o600) != nil || os.Rename(out+".tmp", out) != nil {
		return 1
	}
	return 0
}

func needProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (Debian package %s): this test drives the real program", name, pkg)
	}
	return p
}

// pane is one tmux session running the helper.
type pane struct {
	t    *testing.T
	sock string
}

func (p pane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p pane) screen() string { return p.tmux("capture-pane", "-p", "-t", "helper") }

// waitFor waits until the screen shows want.
func (p pane) waitFor(want string) string {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.screen()
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("screen never showed %q; it shows:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func startPane(t *testing.T, program, kind string, timeout time.Duration) (pane, string) {
	t.Helper()
	needProgram(t, "tmux", "tmux")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := pane{t: t, sock: filepath.Join(dir, "tmux.sock")}
	result := filepath.Join(dir, "result.json")
	p.tmux("-f", "/dev/null", "new-session", "-d", "-s", "helper", "-x", "100", "-y", "40",
		"-e", ttyHelperEnv+"="+result,
		"-e", ttyHelperProgram+"="+program,
		"-e", ttyHelperKind+"="+kind,
		"-e", ttyHelperTimeout+"="+timeout.String(),
		"-e", "LANG=C.UTF-8",
		"-e", "TERM=screen",
		// keep the pane after the helper exits, to read the screen
		shellQuote(self)+" -test.run=^$; sleep 30")
	t.Cleanup(func() { _ = exec.Command("tmux", "-S", p.sock, "kill-server").Run() })
	return p, result
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func waitResult(t *testing.T, p pane, path string) ttyResult {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			var r ttyResult
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatalf("helper result %q: %v", data, err)
			}
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no result from the helper after 20s; screen:\n%s", p.screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestRealPinentryOnTerminal(t *testing.T) {
	const pin = "5%9 ü2"
	signing := []string{"Enter the PIN to sign a message.", `"Quarterly report" to bob@example.com`, "Key: CN=Alice Example", "Token: SoftHSM T"}
	tests := []struct {
		name, program, pkg string
		kind               string
		timeout            time.Duration
		waitFor            string   // what shows the pinentry is waiting for us
		screen             []string // what else must be on screen
		keys               []string // send-keys arguments, one call each ("-l:" = literal text)
		want               ttyResult
	}{
		{name: "pinentry-tty PIN", program: "pinentry-tty", kind: "pin", waitFor: "PIN:",
			screen: append(signing, "2 tries left."), keys: []string{"-l:" + pin, "Enter"},
			want: ttyResult{SecretSHA256: sha(pin), TTYRestored: true}},
		{name: "pinentry-tty retry shows the error and the final try", program: "pinentry-tty", kind: "retry", waitFor: "PIN:",
			screen: append(signing, "Wrong PIN", "FINAL try: a wrong PIN locks the card."), keys: []string{"-l:" + pin, "Enter"},
			want: ttyResult{SecretSHA256: sha(pin), TTYRestored: true}},
		{name: "pinentry-tty cancel", program: "pinentry-tty", kind: "pin", waitFor: "PIN:",
			screen: signing, keys: []string{"C-d"},
			want: ttyResult{Cancelled: true, TTYRestored: true}},
		{name: "pinentry-tty timeout", program: "pinentry-tty", kind: "pin", timeout: 2 * time.Second, waitFor: "PIN:",
			screen: signing,
			want:   ttyResult{TimedOut: true, TTYRestored: true}},
		{name: "pinentry-tty confirm accepted", program: "pinentry-tty", kind: "confirm", waitFor: "Allow signing a message?",
			screen: []string{"Sign", "Cancel"}, keys: []string{"s"},
			want: ttyResult{TTYRestored: true}},
		{name: "pinentry-tty confirm declined", program: "pinentry-tty", kind: "confirm", waitFor: "Allow signing a message?",
			screen: []string{"Sign", "Cancel"}, keys: []string{"c"},
			want: ttyResult{Cancelled: true, TTYRestored: true}},
		{name: "pinentry-tty PIN pad notice taken down", program: "pinentry-tty", kind: "notice", waitFor: "PIN pad",
			screen: []string{"Enter the PIN on the reader's PIN pad to sign a message.", "2 tries left."}, keys: []string{"dismiss"},
			want: ttyResult{TTYRestored: true}},
		{name: "pinentry-curses PIN", program: "pinentry-curses", kind: "pin", waitFor: "PIN:",
			screen: append(signing, "2 tries left."), keys: []string{"-l:" + pin, "Enter"},
			want: ttyResult{SecretSHA256: sha(pin), TTYRestored: true}},
		{name: "pinentry-curses timeout restores the terminal", program: "pinentry-curses", kind: "pin", timeout: 2 * time.Second, waitFor: "PIN:",
			screen: signing,
			want:   ttyResult{TimedOut: true, TTYRestored: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			program := needProgram(t, tt.program, tt.program)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = time.Minute
			}
			p, result := startPane(t, program, tt.kind, timeout)
			screen := p.waitFor(tt.waitFor)
			t.Logf("%s shows:\n%s", tt.program, strings.TrimRight(screen, "\n"))
			for _, want := range tt.screen {
				if !strings.Contains(screen, want) {
					t.Errorf("the pinentry does not show %q", want)
				}
			}
			for _, k := range tt.keys {
				switch lit, ok := strings.CutPrefix(k, "-l:"); {
				case k == "dismiss":
					if err := os.WriteFile(result+".dismiss", nil, 0o600); err != nil {
						t.Fatal(err)
					}
				case ok:
					p.tmux("send-keys", "-t", "helper", "-l", lit)
				default:
					p.tmux("send-keys", "-t", "helper", k)
				}
			}
			res := waitResult(t, p, result)
			got := res
			got.Err = ""
			if got != tt.want {
				t.Errorf("result %+v, want %+v", res, tt.want)
			}
			if tt.want == (ttyResult{SecretSHA256: tt.want.SecretSHA256, TTYRestored: true}) && res.Err != "" {
				t.Errorf("error: %s", res.Err)
			}
			if strings.Contains(p.screen(), pin) || strings.Contains(res.Err, pin) {
				t.Errorf("the PIN was echoed or reported")
			}
		})
	}
}
