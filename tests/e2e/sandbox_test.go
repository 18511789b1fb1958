//go:build linux

package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/prompt/pinentry/pinentrytest"
)

// The secrets the tests use. Each is distinctive, so finding it in a file
// cannot be a coincidence; the sandbox checks at cleanup that none appears
// in any file under its directories.
const (
	passphrase  = "e2e-Passphrase-7Qx9wZ" // protects imported keys in the keystore
	p12Password = "e2e-P12pw-3Kd8vM"      // the PKCS#12 files' password
	keyringPW   = "e2e-Keyring-5Tn2bR"    // gnome-keyring's login collection
	wrongPIN    = "e2e-Wrong-9Hy4cE"      // a wrong passphrase
)

// options configure a sandbox.
type options struct {
	// keyring starts gnome-keyring-daemon on the private bus and uses the
	// secret-service keystore backend; otherwise the file backend.
	keyring bool
	// configExtra is appended to the daemon's config.toml.
	configExtra string
	// noDaemon leaves smimed stopped (start it with s.start).
	noDaemon bool
	// pin, when set, is the test pinentry's answer to every prompt
	// (TESTPINENTRY_PIN) instead of the answers s.setPINs queues.
	pin string
	// policy is the machine policy (TOML) smimed reads through --policy;
	// empty means none (the file does not exist), whatever
	// /etc/smimed/policy.toml on this machine says.
	policy string
	// args are more smimed arguments, e.g. --log-level debug.
	args []string
	// env is more of smimed's environment, e.g. SOFTHSM2_CONF.
	env []string
}

// sandbox is one user's world: a private session bus, throw-away HOME and
// XDG directories, the test pinentry, and smimed.
type sandbox struct {
	t                                         testing.TB
	root                                      string // everything the sandbox writes lives under it
	home, data, state, config, cache, runtime string

	busAddr string
	busPID  int
	bus     *godbus.Conn // the test's own connection, for checks

	configFile string
	policyFile string
	pinLog     string // the test pinentry's session log
	pinsFile   string // the answers the test pinentry gives, one line per session
	daemonLog  string // smimed's stdout and stderr

	daemon     *exec.Cmd
	daemonDone chan error
	backend    string
	opts       options
}

// newSandbox starts a bus and, unless o.noDaemon, smimed on it.
func newSandbox(t testing.TB, o options) *sandbox {
	t.Helper()
	needTool(t, "dbus-daemon")
	// A short root: the bus socket's path must fit in sun_path.
	root, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		t.Fatal(err)
	}
	s := &sandbox{t: t, root: root, backend: "file", opts: o}
	t.Cleanup(func() { os.RemoveAll(root) })
	mk := func(name string) string {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s.home, s.data, s.state = mk("home"), mk("data"), mk("state")
	s.config, s.cache, s.runtime = mk("config"), mk("cache"), mk("run")
	s.pinLog = filepath.Join(root, "pinentry.log")
	s.pinsFile = filepath.Join(root, "pins")
	s.daemonLog = filepath.Join(root, "smimed.log")
	s.configFile = filepath.Join(s.config, "smimed-e2e.toml")
	s.setPINs() // no answers until a test gives some: an unexpected prompt is cancelled

	s.startBus()
	if o.keyring {
		s.startKeyring()
		s.backend = "secret-service"
	}
	cfg := fmt.Sprintf("[keystore]\nbackend = %q\n\n[trust]\nsystem_roots = false\n\n[audit]\nsyslog = false\n", s.backend)
	if o.configExtra != "" {
		cfg += "\n" + o.configExtra + "\n"
	}
	if err := os.WriteFile(s.configFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.policyFile = filepath.Join(root, "policy.toml")
	if o.policy != "" {
		if err := os.WriteFile(s.policyFile, []byte(o.policy+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Registered after the bus's cleanup, so it runs before it: the daemon
	// stops, then nothing may hold a secret.
	t.Cleanup(func() {
		s.stop()
		s.checkNoSecrets()
	})
	if !o.noDaemon {
		s.start()
	}
	return s
}

// baseEnv is the environment every process of the sandbox gets: nothing
// from the test's own environment but PATH.
func (s *sandbox) baseEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"LANG=C",
		"HOME=" + s.home,
		"XDG_RUNTIME_DIR=" + s.runtime,
		"XDG_DATA_HOME=" + s.data,
		"XDG_STATE_HOME=" + s.state,
		"XDG_CONFIG_HOME=" + s.config,
		"XDG_CACHE_HOME=" + s.cache,
	}
}

// startBus starts a private dbus-daemon and connects to it.
func (s *sandbox) startBus() {
	t := s.t
	t.Helper()
	addrR, addrW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pidR, pidW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(needTool(t, "dbus-daemon"), "--session", "--fork", "--nopidfile",
		"--address=unix:dir="+s.runtime, "--print-address=3", "--print-pid=4")
	cmd.Env = s.baseEnv()
	cmd.ExtraFiles = []*os.File{addrW, pidW}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	addrW.Close()
	pidW.Close()
	addr, err1 := bufio.NewReader(addrR).ReadString('\n')
	pid, err2 := bufio.NewReader(pidR).ReadString('\n')
	addrR.Close()
	pidR.Close()
	if err := cmd.Wait(); err != nil || err1 != nil || err2 != nil {
		t.Fatalf("dbus-daemon: %v %v %v", err, err1, err2)
	}
	s.busAddr = strings.TrimSpace(addr)
	s.busPID, _ = strconv.Atoi(strings.TrimSpace(pid))
	t.Cleanup(func() {
		if s.bus != nil {
			s.bus.Close()
		}
		if s.busPID > 1 {
			syscall.Kill(s.busPID, syscall.SIGTERM)
		}
	})
	conn, err := godbus.Connect(s.busAddr)
	if err != nil {
		t.Fatalf("connect to the private bus: %v", err)
	}
	s.bus = conn
}

const secretsName = "org.freedesktop.secrets"

// startKeyring starts gnome-keyring-daemon (secrets only) with its login
// collection unlocked, and kills it at cleanup.
func (s *sandbox) startKeyring() {
	t := s.t
	t.Helper()
	gk := exec.Command(needTool(t, "gnome-keyring-daemon"), "--unlock", "--components=secrets", "--daemonize")
	gk.Env = append(s.baseEnv(), "DBUS_SESSION_BUS_ADDRESS="+s.busAddr)
	gk.Stdin = strings.NewReader(keyringPW)
	if out, err := gk.CombinedOutput(); err != nil {
		t.Fatalf("gnome-keyring-daemon: %v\n%s", err, out)
	}
	var pid uint32
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := s.bus.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, secretsName).Store(&pid)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gnome-keyring-daemon did not appear on the bus: %v", err)
		}
	}
	t.Cleanup(func() { syscall.Kill(int(pid), syscall.SIGTERM) })
}

// lockKeyring locks gnome-keyring's login collection (it stays locked: no
// unlock prompt can be shown headless).
func (s *sandbox) lockKeyring() {
	t := s.t
	t.Helper()
	var locked []godbus.ObjectPath
	var prompt godbus.ObjectPath
	err := s.bus.Object(secretsName, "/org/freedesktop/secrets").Call("org.freedesktop.Secret.Service.Lock", 0,
		[]godbus.ObjectPath{"/org/freedesktop/secrets/collection/login"}).Store(&locked, &prompt)
	if err != nil || len(locked) != 1 || prompt != "/" {
		t.Fatalf("lock the login collection: %v %v %v", locked, prompt, err)
	}
}

// daemonEnv is smimed's environment.
func (s *sandbox) daemonEnv() []string {
	env := append(s.baseEnv(),
		"DBUS_SESSION_BUS_ADDRESS="+s.busAddr,
		"SMIMED_CONFIG="+s.configFile,
		"SMIMED_PINENTRY="+pinentrytest.Build(s.t),
		pinentrytest.EnvLog+"="+s.pinLog,
	)
	env = append(env, s.opts.env...)
	if s.opts.pin != "" {
		return append(env, pinentrytest.EnvPIN+"="+s.opts.pin)
	}
	return append(env, pinentrytest.EnvPINsFile+"="+s.pinsFile)
}

// start starts smimed (no --address: it serves DBUS_SESSION_BUS_ADDRESS;
// its config comes from SMIMED_CONFIG) and waits until it answers.
func (s *sandbox) start() {
	t := s.t
	t.Helper()
	if s.daemon != nil {
		t.Fatal("smimed is already running")
	}
	logf, err := os.OpenFile(s.daemonLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(smimedBin, append([]string{"--policy", s.policyFile}, s.opts.args...)...)
	cmd.Env = s.daemonEnv()
	cmd.Dir = s.home
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start smimed: %v", err)
	}
	logf.Close()
	s.daemon = cmd
	done := make(chan error, 1)
	s.daemonDone = done
	go func() { done <- cmd.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			s.daemon = nil
			t.Fatalf("smimed exited at start: %v\n%s", err, s.log())
		default:
		}
		if r := s.ctl("status"); r.code == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("smimed did not answer within 20s\n%s", s.log())
		}
	}
}

// stop sends SIGTERM and waits for smimed to exit; it returns its exit
// error (nil for a clean exit).
func (s *sandbox) stop() error {
	if s.daemon == nil {
		return nil
	}
	s.daemon.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-s.daemonDone:
	case <-time.After(20 * time.Second):
		s.daemon.Process.Kill()
		err = <-s.daemonDone
		err = fmt.Errorf("smimed did not exit within 20s of SIGTERM (killed: %v)", err)
	}
	s.daemon = nil
	return err
}

// pid is smimed's process id.
func (s *sandbox) pid() int {
	s.t.Helper()
	if s.daemon == nil {
		s.t.Fatal("smimed is not running")
	}
	return s.daemon.Process.Pid
}

// log returns what smimed wrote to stdout and stderr.
func (s *sandbox) log() string {
	data, _ := os.ReadFile(s.daemonLog)
	return string(data)
}

// setPINs sets the test pinentry's answers: one line per prompt session,
// in order; once they are used up, every prompt is cancelled.
func (s *sandbox) setPINs(pins ...string) {
	s.t.Helper()
	var b strings.Builder
	for _, p := range pins {
		b.WriteString(p + "\n")
	}
	if err := os.WriteFile(s.pinsFile, []byte(b.String()), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// pinsLeft returns the answers not used yet.
func (s *sandbox) pinsLeft() []string {
	data, err := os.ReadFile(s.pinsFile)
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// sessions returns the prompt sessions the pinentry has logged so far.
func (s *sandbox) sessions() []pinentrytest.Session {
	s.t.Helper()
	return pinentrytest.ReadLog(s.t, s.pinLog)
}

// result is one smimectl run.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("smimectl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// ctl runs smimectl against the sandbox's bus.
func (s *sandbox) ctl(args ...string) result {
	return s.ctlIn(nil, args...)
}

// ctlTo runs smimectl with its stdout on the file out.
func (s *sandbox) ctlTo(out *os.File, args ...string) result {
	s.t.Helper()
	return runCtlTo(s.t, append(s.baseEnv(), "DBUS_SESSION_BUS_ADDRESS="+s.busAddr), nil, out, args...)
}

// ctlIn runs smimectl with stdin.
func (s *sandbox) ctlIn(stdin []byte, args ...string) result {
	s.t.Helper()
	return runCtl(s.t, append(s.baseEnv(), "DBUS_SESSION_BUS_ADDRESS="+s.busAddr), stdin, args...)
}

func runCtl(t testing.TB, env []string, stdin []byte, args ...string) result {
	t.Helper()
	return runCtlTo(t, env, stdin, nil, args...)
}

// runCtlTo runs smimectl with its stdout on the file stdout (nil:
// captured in the result).
func runCtlTo(t testing.TB, env []string, stdin []byte, stdout *os.File, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, smimectlBin, args...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdout != nil {
		cmd.Stdout = stdout
	}
	err := cmd.Run()
	r := result{args: args, stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		r.code = ee.ExitCode()
	default:
		t.Fatalf("smimectl %v: %v", args, err)
	}
	return r
}

// must runs smimectl and fails the test unless it exits 0.
func (s *sandbox) must(args ...string) result {
	s.t.Helper()
	r := s.ctl(args...)
	if r.code != 0 {
		s.t.Fatalf("%v\nsmimed log:\n%s", r, s.log())
	}
	return r
}

// want runs smimectl and checks its exit code and, when errName is not
// empty, that stderr names that error as "(<Name>)".
func (s *sandbox) want(code int, errName string, args ...string) result {
	s.t.Helper()
	r := s.ctl(args...)
	if r.code != code {
		s.t.Errorf("exit %d, want %d: %v", r.code, code, r)
	}
	if errName != "" && !strings.Contains(r.stderr, "("+errName+")") {
		s.t.Errorf("stderr does not name %s: %v", errName, r)
	}
	return r
}

// file writes data to name under the sandbox and returns its path.
func (s *sandbox) file(name string, data []byte) string {
	s.t.Helper()
	p := filepath.Join(s.root, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// read returns the contents of a file.
func (s *sandbox) read(path string) []byte {
	s.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		s.t.Fatal(err)
	}
	return data
}

// importP12 imports id as a PKCS#12 file with smimectl import-p12
// --password-file; the daemon asks the new passphrase through the
// pinentry, which answers passphrase.
func (s *sandbox) importP12(id *testpki.Identity) result {
	s.t.Helper()
	name := strings.ReplaceAll(id.Email, "@", "_")
	p12 := s.file(name+".p12", id.PKCS12(s.t, p12Password, false))
	pw := s.file(name+".pw", []byte(p12Password+"\n"))
	s.setPINs(passphrase, passphrase) // a new passphrase may be asked twice (entry, repeat)
	r := s.must("import-p12", p12, "--password-file", pw)
	s.setPINs()
	return r
}

// trustRoot makes the PKI's root a trust anchor.
func (s *sandbox) trustRoot(p *testpki.PKI) {
	s.t.Helper()
	s.must("trust", "add", s.file("root.pem", testpki.CertPEM(p.Root.Cert)))
}

// checkNoSecrets fails the test if any secret appears in any file under
// the sandbox: keystore, audit trail, config, daemon log, pinentry log,
// gnome-keyring's files.
func (s *sandbox) checkNoSecrets() {
	secrets := []string{passphrase, p12Password, keyringPW, wrongPIN}
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() || strings.HasSuffix(path, ".pw") || path == s.pinsFile {
			return nil // the test's own password files and pinentry answers
		}
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		defer f.Close()
		data, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		for _, sec := range secrets {
			for _, form := range secretForms(sec) {
				if bytes.Contains(data, form) {
					s.t.Errorf("secret %q (as %q) found in %s", sec, form, path)
				}
			}
		}
		return nil
	})
	if err != nil {
		s.t.Errorf("scanning the sandbox for secrets: %v", err)
	}
}

// secretForms are the ways a secret could be written: as is, UTF-16
// (PKCS#12 BMPString) and hex.
func secretForms(sec string) [][]byte {
	utf16 := make([]byte, 0, 2*len(sec))
	for _, c := range []byte(sec) {
		utf16 = append(utf16, 0, c)
	}
	return [][]byte{[]byte(sec), utf16, []byte(fmt.Sprintf("%x", sec))}
}

// vmKiB reads one "Vm...:" line (VmRSS, VmHWM) of /proc/<pid>/status in KiB.
func vmKiB(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// decodeJSON unmarshals smimectl's JSON output strictly into v.
func decodeJSON(tb testing.TB, data []byte, v any) {
	tb.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		tb.Fatalf("bad JSON %q: %v", data, err)
	}
}
