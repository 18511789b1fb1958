// Package peer runs the real S/MIME implementations smimed must
// interoperate with — OpenSSL's `openssl cms`, Thunderbird's NSS through
// `cmsutil`, and GnuPG's `gpgsm` — from tests, each in its own temporary
// directory, database or home.
//
// It is test-only: nothing outside _test.go files may import it. Every
// method takes a testing.TB, runs its command with a 60-second timeout, and
// reports the full command line plus the peer's stderr when the peer fails.
// A peer that is not installed fails the test (with the Debian package to
// install); it never skips, because a skipped interop test is a hidden hole.
//
// Three kinds of result come back:
//   - producing a message (Sign, Encrypt) either succeeds or fails the test:
//     the peer refusing our inputs is a harness problem;
//   - reading a message (Verify, Decrypt) returns what the peer concluded,
//     because tests also feed peers bad messages on purpose;
//   - setting up a peer (databases, identities) fails the test on any error.
//
// The peers work on different formats. `openssl cms` reads and writes S/MIME
// (MIME) messages directly. cmsutil and gpgsm only read and write raw CMS
// (DER), so their wrappers take the CMS out of, or wrap it into, an S/MIME
// message with the helpers in mime.go.
//
// Line endings. Every message the wrappers produce is canonical: CRLF line
// endings throughout, the exact input bytes as the signed, enveloped or
// detached content (OpenSSL runs with -binary -crlfeol). Tests therefore feed
// them canonical (CRLF) input.
package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Timeout bounds every single peer command.
const Timeout = 60 * time.Second

// thunderbirdLib is where Debian's thunderbird package puts its NSS
// libraries; every NSS tool runs with LD_LIBRARY_PATH pointing there so that
// the code under test is Thunderbird's NSS, not the system's libnss3.
const thunderbirdLib = "/usr/lib/thunderbird"

// RunError is a peer command that exited with a non-zero status.
type RunError struct {
	Cmd    string // the command line, shell-quoted
	Exit   int    // the exit status, -1 if it did not exit normally
	Stdout string
	Stderr string
	Err    error // the error from os/exec
}

func (e *RunError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += "\nstderr:\n" + s
	}
	if s := strings.TrimSpace(e.Stdout); s != "" && len(s) < 4000 {
		msg += "\nstdout:\n" + s
	}
	return msg
}

// command is one peer invocation.
type command struct {
	name  string
	args  []string
	env   []string // added to the process environment
	dir   string
	stdin []byte
}

func (c command) String() string {
	var b strings.Builder
	for _, e := range c.env {
		b.WriteString(shellQuote(e))
		b.WriteByte(' ')
	}
	b.WriteString(shellQuote(c.name))
	for _, a := range c.args {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	if c.dir != "" {
		b.WriteString("   (in " + c.dir + ")")
	}
	return b.String()
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run executes c with the package timeout. A non-zero exit is returned as a
// *RunError; a command that cannot be started at all fails the test.
func run(tb testing.TB, c command) (stdout, stderr []byte, err error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.name, c.args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	// Never let a peer wait on the terminal for a password.
	cmd.Stdin = bytes.NewReader(c.stdin)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	runErr := cmd.Run()
	if runErr == nil {
		return out.Bytes(), errb.Bytes(), nil
	}
	var exitErr *exec.ExitError
	if ctx.Err() != nil {
		runErr = fmt.Errorf("timed out after %v: %w", Timeout, runErr)
	} else if !errors.As(runErr, &exitErr) {
		tb.Fatalf("peer: cannot run %s: %v", c, runErr)
	}
	re := &RunError{Cmd: c.String(), Exit: -1, Stdout: out.String(), Stderr: errb.String(), Err: runErr}
	if exitErr != nil {
		re.Exit = exitErr.ExitCode()
	}
	return out.Bytes(), errb.Bytes(), re
}

// mustRun is run for commands that must succeed (setup, producing messages).
func mustRun(tb testing.TB, c command) (stdout, stderr []byte) {
	tb.Helper()
	stdout, stderr, err := run(tb, c)
	if err != nil {
		tb.Fatalf("peer: %v", err)
	}
	return stdout, stderr
}

// need fails the test when a peer program is not installed.
func need(tb testing.TB, program, aptPackage string) string {
	tb.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		tb.Fatalf("peer: %s is not installed (%v); install it with: apt-get install -y %s", program, err, aptPackage)
	}
	return path
}

// needFile fails the test when a file a peer depends on is missing.
func needFile(tb testing.TB, path, aptPackage string) {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		tb.Fatalf("peer: %s is missing (%v); install it with: apt-get install -y %s", path, err, aptPackage)
	}
}

// workDir returns a fresh per-call directory below base, removed when the
// test ends. Files of concurrent calls never collide.
func workDir(tb testing.TB, base string) string {
	tb.Helper()
	d, err := os.MkdirTemp(base, "op")
	if err != nil {
		tb.Fatalf("peer: %v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func readFile(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("peer: %v", err)
	}
	return b
}

// Verdict is what a peer concluded about a signed message.
type Verdict struct {
	// Good is true only when the peer says the signature is valid and the
	// signer's certificate chains to the test root.
	Good bool
	// Status is the peer's own words: cmsutil's signerN.status values,
	// gpgsm's status keywords, or OpenSSL's "Verification successful".
	Status string
	// Content is the signed content as the peer hands it out (nil when it
	// handed out nothing).
	Content []byte
	// Log holds the command lines and the peer's stderr, for failure
	// messages.
	Log string
}

func (v Verdict) String() string {
	return fmt.Sprintf("good=%v status=%q\n%s", v.Good, v.Status, v.Log)
}
