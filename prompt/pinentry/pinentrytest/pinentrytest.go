// Package pinentrytest builds and drives the test pinentry
// (prompt/pinentry/testpinentry) for tests anywhere in the module: tests of
// keystore/, tokens/ and daemon/ point SMIMED_PINENTRY (or
// pinentry.Options.Program) at the binary Build returns, choose its answers
// with Config, and read what it was asked with ReadLog.
//
//	bin := pinentrytest.Build(t)
//	logPath := filepath.Join(t.TempDir(), "pinentry.log")
//	env := append(os.Environ(), pinentrytest.Config{PIN: "1234", Log: logPath}.Env(t)...)
//	c, _ := pinentry.New(pinentry.Options{Program: bin, Env: env})
//	...
//	sessions := pinentrytest.ReadLog(t, logPath) // one per prompt shown
//
// Import it from _test.go files only.
package pinentrytest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The testpinentry's environment variables (see its package doc).
const (
	EnvPIN      = "TESTPINENTRY_PIN"
	EnvPINsFile = "TESTPINENTRY_PINS_FILE"
	EnvCancel   = "TESTPINENTRY_CANCEL"
	EnvHang     = "TESTPINENTRY_HANG"
	EnvDelay    = "TESTPINENTRY_DELAY"
	EnvLog      = "TESTPINENTRY_LOG"
)

// ImportPath is the test pinentry's package.
const ImportPath = "github.com/smimed/smimed/prompt/pinentry/testpinentry"

// Build returns the path of a testpinentry binary, building it if needed.
//
// There is no package-level state: the binary is cached on disk, in
// $XDG_CACHE_HOME/smimed-test (os.UserCacheDir; os.TempDir when there is
// none), under a name derived from a hash of its source files, the Go
// version and the target platform. So it is built once per source version
// and machine, whichever test binary asks first; every later call, from
// any test or any concurrently running test binary, only hashes the source
// and finds the file. Concurrent first builds are safe: each builds to a
// temporary name and renames it into place atomically.
func Build(tb testing.TB) string {
	tb.Helper()
	dir := sourceDir(tb)
	sum := sha256.New()
	sum.Write([]byte(runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("pinentrytest: no Go files in %s (%v)", dir, err)
	}
	slices.Sort(files)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatalf("pinentrytest: %v", err)
		}
		sum.Write([]byte(filepath.Base(f) + "\x00" + strconv.Itoa(len(data)) + "\x00"))
		sum.Write(data)
	}
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	cacheDir = filepath.Join(cacheDir, "smimed-test")
	name := "testpinentry-" + hex.EncodeToString(sum.Sum(nil))[:20]
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	bin := filepath.Join(cacheDir, name)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		tb.Fatalf("pinentrytest: %v", err)
	}
	tmp, err := os.CreateTemp(cacheDir, name+".tmp-*")
	if err != nil {
		tb.Fatalf("pinentrytest: %v", err)
	}
	tmpName := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(tmpName) // gone after the rename; cleans up on failure
	cmd := exec.Command("go", "build", "-o", tmpName, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("pinentrytest: go build %s: %v\n%s", ImportPath, err, out)
	}
	if err := os.Rename(tmpName, bin); err != nil {
		tb.Fatalf("pinentrytest: %v", err)
	}
	return bin
}

// sourceDir finds testpinentry's source: beside this file when the test was
// built from a source tree, else through `go list`.
func sourceDir(tb testing.TB) string {
	tb.Helper()
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Join(filepath.Dir(file), "..", "testpinentry")
		if _, err := os.Stat(filepath.Join(dir, "main.go")); err == nil {
			return filepath.Clean(dir)
		}
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", ImportPath).Output()
	if err != nil {
		tb.Fatalf("pinentrytest: go list %s: %v", ImportPath, err)
	}
	return strings.TrimSpace(string(out))
}

// Config chooses how the testpinentry answers.
type Config struct {
	// PIN answers every GETPIN (empty: an empty PIN).
	PIN string
	// PINs, when set, answer one session each in order (e.g. a wrong PIN
	// then the right one); once used up, GETPIN is cancelled. Env writes
	// them to a file in tb.TempDir().
	PINs []string
	// Cancel answers GETPIN and CONFIRM with "Operation cancelled".
	Cancel bool
	// Hang never answers GETPIN, CONFIRM or MESSAGE.
	Hang bool
	// Delay waits before answering GETPIN, CONFIRM or MESSAGE.
	Delay time.Duration
	// Log is the file the sessions are appended to; read it with ReadLog.
	Log string
}

// Env returns the TESTPINENTRY_* variables for c, to append to the
// environment the pinentry runs with (pinentry.Options.Env, or the daemon's
// environment). Later entries win, so appending them to os.Environ()
// overrides any inherited ones.
func (c Config) Env(tb testing.TB) []string {
	tb.Helper()
	env := []string{
		EnvPIN + "=" + c.PIN,
		EnvCancel + "=" + boolEnv(c.Cancel),
		EnvHang + "=" + boolEnv(c.Hang),
		EnvLog + "=" + c.Log,
		EnvPINsFile + "=",
		EnvDelay + "=",
	}
	if c.Delay > 0 {
		env = append(env, EnvDelay+"="+c.Delay.String())
	}
	if c.PINs != nil {
		f := filepath.Join(tb.TempDir(), "pins")
		var data []byte
		for _, p := range c.PINs {
			if strings.ContainsAny(p, "\r\n") {
				tb.Fatalf("pinentrytest: a PIN in Config.PINs contains a line break")
			}
			data = append(data, p+"\n"...)
		}
		if err := os.WriteFile(f, data, 0o600); err != nil {
			tb.Fatalf("pinentrytest: %v", err)
		}
		env = append(env, EnvPINsFile+"="+f)
	}
	return env
}

func boolEnv(b bool) string {
	if b {
		return "1"
	}
	return ""
}

// Command is one command the testpinentry received, with its argument
// percent-decoded.
type Command struct {
	Cmd string `json:"cmd"`
	Arg string `json:"arg,omitempty"`
}

// Session is one run of the testpinentry: one prompt.
type Session struct {
	PID      int       `json:"pid"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Commands []Command `json:"commands"`
	// Outcome is "pin" (a PIN was answered), "cancelled", "confirmed",
	// "messaged", "hung" or "none".
	Outcome string `json:"outcome"`
}

// Arg returns the argument of the last cmd in the session, and whether the
// session had one.
func (s Session) Arg(cmd string) (string, bool) {
	for i := len(s.Commands) - 1; i >= 0; i-- {
		if s.Commands[i].Cmd == cmd {
			return s.Commands[i].Arg, true
		}
	}
	return "", false
}

// Count returns how many times cmd was received.
func (s Session) Count(cmd string) int {
	n := 0
	for _, c := range s.Commands {
		if c.Cmd == cmd {
			n++
		}
	}
	return n
}

// Description returns the SETDESC text, the prompt's description.
func (s Session) Description() string {
	d, _ := s.Arg("SETDESC")
	return d
}

// ReadLog returns the sessions logged to path, in the order they ended. A
// missing file means no prompt was shown yet: it returns none.
func ReadLog(tb testing.TB, path string) []Session {
	tb.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		tb.Fatalf("pinentrytest: %v", err)
	}
	var sessions []Session
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var s Session
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			tb.Fatalf("pinentrytest: %s: bad log line %q: %v", path, sc.Text(), err)
		}
		sessions = append(sessions, s)
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("pinentrytest: %s: %v", path, err)
	}
	return sessions
}
