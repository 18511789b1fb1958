// Package pinentry is a [prompt.Prompter] that asks through a pinentry
// program, the PIN dialog of GnuPG, speaking its Assuan protocol over the
// program's stdin and stdout.
//
// Like gpg-agent, it starts a fresh pinentry process for every prompt and
// ends it after the answer (BYE), so no PIN outlives the prompt in another
// process. The conversation is:
//
//	OPTION ttyname=... / ttytype=... (when GPG_TTY is set), lc-ctype, lc-messages
//	SETTIMEOUT n        (when ctx has a deadline)
//	SETKEYINFO --clear  (nothing may be cached by the pinentry)
//	SETTITLE, SETDESC   (prompt.Request.Description, percent-escaped)
//	SETOK, SETCANCEL    (Confirm only: "Sign"/"Decrypt"/"Allow", "Cancel")
//	SETPROMPT PIN: | Passphrase:
//	SETERROR ...        (only when Request.Error is set)
//	GETPIN | CONFIRM | MESSAGE
//	BYE
//
// When ctx ends the pinentry is sent SIGINT, as gpg-agent does (terminal
// pinentries then restore the terminal), and killed if it lingers; it is
// always waited for.
//
// The PIN travels from the pinentry's D lines into a byte buffer this package
// owns, is percent-decoded there without ever becoming a string, copied into
// the returned [prompt.Secret], and the buffers are zeroed.
package pinentry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/smimed/smimed/prompt"
)

// EnvProgram names the environment variable that selects the pinentry
// program when Options.Program is empty.
const EnvProgram = "SMIMED_PINENTRY"

// DefaultPrograms are the pinentry programs looked up in PATH, in order, when
// neither Options.Program nor SMIMED_PINENTRY names one.
//
// Graphical ones come first: they fall back to curses by themselves when no
// display is reachable.
func DefaultPrograms() []string {
	return []string{
		"pinentry-gnome3",
		"pinentry-qt",
		"pinentry-gtk2",
		"pinentry-curses",
		"pinentry-tty",
		"pinentry",
	}
}

// Options configures a Client.
type Options struct {
	// Program is the pinentry to run, from configuration: a path, or a name
	// looked up in PATH. Empty means $SMIMED_PINENTRY, else the first
	// installed of DefaultPrograms.
	Program string
	// Env is the pinentry's environment (DISPLAY, WAYLAND_DISPLAY,
	// DBUS_SESSION_BUS_ADDRESS, GPG_TTY, TERM, LANG, ...), in os.Environ
	// form. SMIMED_PINENTRY and PATH are read from it too. Nil means the
	// daemon's own environment.
	Env []string
	// Logger receives one debug line per prompt (program, pid, kind,
	// outcome), never a PIN or the prompt text. Nil discards.
	Logger *slog.Logger
	// ExitWait bounds how long a pinentry may take to exit after BYE before
	// it is killed. Zero means 2 seconds.
	ExitWait time.Duration
	// StartTimeout bounds the machine part of a prompt: from starting the
	// pinentry until it has accepted every command before GETPIN, CONFIRM
	// or MESSAGE. A program that does not speak Assuan is killed then
	// instead of blocking the prompt queue. Zero means 10 seconds. The
	// user's own time is bounded by ctx only.
	StartTimeout time.Duration
}

// Client runs a pinentry program for each prompt. It is safe for concurrent
// use, but prompts from concurrent calls would overlap on screen: wrap it in
// [prompt.Serialized].
type Client struct {
	program      string
	env          []string
	log          *slog.Logger
	exitWait     time.Duration
	startTimeout time.Duration
}

var _ prompt.Prompter = (*Client)(nil)

// New returns a Client for the pinentry that opts selects (see
// Options.Program). When no program can be found the error wraps
// [prompt.ErrNoPrompter].
func New(opts Options) (*Client, error) {
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	program, err := findProgram(opts.Program, env)
	if err != nil {
		return nil, err
	}
	c := &Client{program: program, env: env, log: opts.Logger, exitWait: opts.ExitWait, startTimeout: opts.StartTimeout}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.exitWait <= 0 {
		c.exitWait = 2 * time.Second
	}
	if c.startTimeout <= 0 {
		c.startTimeout = 10 * time.Second
	}
	return c, nil
}

// Program returns the path of the pinentry program the Client runs.
func (c *Client) Program() string { return c.program }

// Ask runs one pinentry and asks it for r. See [prompt.Prompter] for the
// results and errors. When ctx ends the pinentry is interrupted (SIGINT),
// killed if it lingers, and in every case waited for, so none is left
// behind.
func (c *Client) Ask(ctx context.Context, r prompt.Request) (*prompt.Secret, error) {
	if !r.Kind.Valid() {
		return nil, fmt.Errorf("pinentry: invalid prompt kind %s", r.Kind)
	}
	if err := ctx.Err(); err != nil {
		if r.Kind == prompt.Notice {
			return nil, nil
		}
		return nil, prompt.ContextError(ctx, "pinentry "+r.Kind.String()+" prompt")
	}

	cmd := exec.CommandContext(ctx, c.program)
	cmd.Env = c.env
	cmd.Stderr = nil // pinentry's diagnostics are not ours to log
	// When ctx ends, interrupt the pinentry the way gpg-agent does
	// (SIGINT: terminal pinentries restore the terminal and exit), and kill
	// it if it is still there exitWait later.
	cmd.Cancel = func() error { return interrupt(cmd.Process) }
	cmd.WaitDelay = c.exitWait
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("pinentry: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("pinentry: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("pinentry: starting %s: %w: %w", c.program, prompt.ErrNoPrompter, err)
	}
	pid := cmd.Process.Pid
	start := time.Now()

	// Until the pinentry has taken every setup command, it gets
	// startTimeout; then the user has until ctx ends.
	var stalled atomic.Bool
	startKiller := time.AfterFunc(c.startTimeout, func() {
		stalled.Store(true)
		_ = cmd.Process.Kill()
	})
	ready := func() bool { return startKiller.Stop() }

	lr := newLineReader(stdout)
	cn := &conn{lr: lr, w: stdin}
	var pin secretBuf
	convErr := c.converse(ctx, cn, r, &pin, ready)
	startKiller.Stop()
	if convErr != nil && stalled.Load() {
		convErr = fmt.Errorf("pinentry: %s did not answer within %v (not an Assuan pinentry?): %w", c.program, c.startTimeout, convErr)
	}
	var secret *prompt.Secret
	if convErr == nil && (r.Kind == prompt.PIN || r.Kind == prompt.Passphrase) {
		secret = prompt.NewSecret(pin.b)
	}
	pin.wipe()

	// End the session: politely (BYE) when the pinentry is still talking,
	// including after an ERR such as a cancel, else by killing it. A
	// pinentry that lingers after BYE is killed too. Wait reaps it in every
	// case.
	killer := time.AfterFunc(c.exitWait, func() { _ = cmd.Process.Kill() })
	var ae *assuanError
	if ctx.Err() == nil && (convErr == nil || errors.As(convErr, &ae)) {
		if err := cn.transact("BYE", nil); err != nil {
			c.log.Debug("pinentry BYE", slog.String("error", err.Error()))
		}
	} else {
		_ = interrupt(cmd.Process)
	}
	lr.wipe()
	_ = stdin.Close()
	waitErr := cmd.Wait()
	killer.Stop()

	err = c.result(ctx, r, convErr)
	outcome := "ok"
	if err != nil {
		outcome = err.Error()
		secret.Wipe()
		secret = nil
	}
	c.log.Debug("pinentry prompt",
		slog.String("program", c.program),
		slog.Int("pid", pid),
		slog.String("kind", r.Kind.String()),
		slog.String("operation", r.Operation),
		slog.Duration("took", time.Since(start)),
		slog.String("outcome", outcome),
		slog.Any("exit", waitErr))
	return secret, err
}

// result maps the conversation's outcome to the errors prompt.Prompter
// documents. The end of ctx wins over whatever the killed pinentry said.
func (c *Client) result(ctx context.Context, r prompt.Request, convErr error) error {
	doing := "pinentry " + r.Kind.String() + " prompt"
	if ctx.Err() != nil {
		if r.Kind == prompt.Notice {
			return nil // the caller took the notice down
		}
		if convErr != nil {
			return prompt.ContextError(ctx, doing)
		}
		// answered just as ctx ended: the answer stands
	}
	if convErr == nil {
		return nil
	}
	var ae *assuanError
	if errors.As(convErr, &ae) {
		switch {
		case errors.Is(ae, prompt.ErrCancelled):
			return fmt.Errorf("%s: %w (%w)", doing, prompt.ErrCancelled, ae)
		case errors.Is(ae, prompt.ErrTimeout):
			return fmt.Errorf("%s: %w (%w)", doing, prompt.ErrTimeout, ae)
		}
	}
	return fmt.Errorf("%s (%s): %w", doing, c.program, convErr)
}

// converse runs the Assuan conversation for r over cn. On success for PIN and
// Passphrase, pin holds the decoded secret.
//
// ready is called once the setup commands are done, before the user is asked;
// it returns false when the start timeout already fired.
func (c *Client) converse(ctx context.Context, cn *conn, r prompt.Request, pin *secretBuf, ready func() bool) error {
	if err := cn.greeting(); err != nil {
		return err
	}
	// Commands a pinentry may refuse without harm (unknown options, an old
	// pinentry without SETKEYINFO): like gpg-agent we carry on without them.
	var optional []string
	for _, o := range c.options() {
		optional = append(optional, command("OPTION", o))
	}
	if d, ok := ctx.Deadline(); ok {
		secs := int(math.Ceil(time.Until(d).Seconds()))
		optional = append(optional, command("SETTIMEOUT", fmt.Sprint(max(secs, 1))))
	}
	optional = append(optional, command("SETKEYINFO", "--clear"), command("SETTITLE", r.WindowTitle()))
	if r.Kind == prompt.Confirm {
		// Without explicit labels some pinentries (pinentry-tty) offer
		// no way to say no.
		optional = append(optional, command("SETOK", okLabel(r.Operation)), command("SETCANCEL", "_Cancel"))
	}
	for _, line := range optional {
		if err := cn.transact(line, nil); err != nil {
			var ae *assuanError
			if !errors.As(err, &ae) {
				return err
			}
		}
	}

	required := []string{command("SETDESC", r.Description())}
	switch r.Kind {
	case prompt.PIN:
		required = append(required, command("SETPROMPT", "PIN:"))
	case prompt.Passphrase:
		required = append(required, command("SETPROMPT", "Passphrase:"))
	}
	if e := r.ErrorText(); e != "" {
		required = append(required, command("SETERROR", e))
	}
	for _, line := range required {
		if err := cn.transact(line, nil); err != nil {
			return err
		}
	}

	if !ready() {
		return fmt.Errorf("pinentry: setup took too long")
	}

	var err error
	switch r.Kind {
	case prompt.PIN, prompt.Passphrase:
		err = cn.transact("GETPIN", pin)
	case prompt.Confirm:
		err = cn.transact("CONFIRM", nil)
	case prompt.Notice:
		// Blocks until the user dismisses the message or ctx ends (the
		// pinentry is then interrupted and the read fails).
		err = cn.transact("MESSAGE", nil)
	}
	return err
}

// okLabel is the accept button of a confirmation; '_' marks the
// accelerator key.
func okLabel(operation string) string {
	switch operation {
	case prompt.OpSign:
		return "_Sign"
	case prompt.OpDecrypt:
		return "_Decrypt"
	}
	return "_Allow"
}

// interrupt asks p to stop: SIGINT where there are signals, else a kill.
func interrupt(p *os.Process) error {
	if runtime.GOOS == "windows" {
		return p.Kill()
	}
	return p.Signal(os.Interrupt)
}

// options returns the OPTION arguments taken from the environment, as
// gpg-agent sends them: the terminal only when GPG_TTY names one.
func (c *Client) options() []string {
	var opts []string
	if tty := getenv(c.env, "GPG_TTY"); tty != "" {
		opts = append(opts, "ttyname="+tty)
		if term := getenv(c.env, "TERM"); term != "" {
			opts = append(opts, "ttytype="+term)
		}
	}
	if v := firstEnv(c.env, "LC_ALL", "LC_CTYPE", "LANG"); v != "" {
		opts = append(opts, "lc-ctype="+v)
	}
	if v := firstEnv(c.env, "LC_ALL", "LC_MESSAGES", "LANG"); v != "" {
		opts = append(opts, "lc-messages="+v)
	}
	return opts
}
