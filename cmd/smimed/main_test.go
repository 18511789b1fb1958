//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	smimedbus "github.com/smimed/smimed/ipc/dbus"
	"github.com/smimed/smimed/prompt/pinentry/pinentrytest"
	"github.com/smimed/smimed/tokens"
)

// envRunDaemon makes the test binary run main() instead of the tests, so
// that the tests can start smimed as a real process.
const envRunDaemon = "SMIMED_TEST_RUN_DAEMON"

func TestMain(m *testing.M) {
	if tokens.IsWorker(os.Args) {
		tokens.WorkerMain()
	}
	if os.Getenv(envRunDaemon) == "1" {
		os.Args = append([]string{"smimed"}, strings.Fields(os.Getenv(envRunDaemon+"_ARGS"))...)
		main()
		return
	}
	os.Exit(m.Run())
}

func TestArguments(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(bad, []byte("[limits]\nmax_message_bytes = 4096\n\n[crypto]\nallow_modern = maybe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.toml")
	if err := os.WriteFile(unknown, []byte("[prompt]\nprogramm = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noPolicy := "--policy=" + filepath.Join(dir, "none.toml")
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		contains []string
	}{
		{"syntax error in --config", []string{"--config", bad, noPolicy}, nil, 2, []string{bad + ":5", "configuration error"}},
		{"unknown key via SMIMED_CONFIG", []string{noPolicy}, map[string]string{"SMIMED_CONFIG": unknown}, 2, []string{unknown + ":2", "prompt.programm"}},
		{"missing --config", []string{"--config", filepath.Join(dir, "nope.toml"), noPolicy}, nil, 2, []string{"nope.toml"}},
		{"bad policy", []string{"--config", unknown, "--policy", bad}, nil, 2, []string{bad + ":5"}},
		{"stray argument", []string{"serve"}, nil, 2, []string{"unexpected argument"}},
		{"bad log level", []string{"--log-level", "loud"}, nil, 2, []string{"--log-level"}},
		{"bad log format", []string{"--log-format", "xml"}, nil, 2, []string{"--log-format"}},
		{"unknown flag", []string{"--frobnicate"}, nil, 2, []string{"frobnicate"}},
		{"version", []string{"--version"}, nil, 0, []string{"smimed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), tc.args, env(tc.env), &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			for _, c := range tc.contains {
				if !strings.Contains(stderr.String(), c) {
					t.Errorf("stderr lacks %q:\n%s", c, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "goroutine ") {
				t.Errorf("a crash instead of a message:\n%s", stderr.String())
			}
		})
	}
	t.Run("no bus address", func(t *testing.T) {
		cfg := filepath.Join(dir, "ok.toml")
		if err := os.WriteFile(cfg, []byte("[audit]\nsyslog = false\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		code := run(context.Background(), []string{"--config", cfg, noPolicy}, env(map[string]string{"XDG_RUNTIME_DIR": dir}), &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "no session bus") {
			t.Errorf("exit %d; stderr:\n%s", code, stderr.String())
		}
	})
}

// startBus runs a private dbus-daemon with no service activation (so that
// nothing, gnome-keyring included, is started behind the test's back) and
// returns its address.
func startBus(t *testing.T) string {
	t.Helper()
	exe, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatalf("this test needs dbus-daemon (apt-get install -y dbus-daemon): %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	text := `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=` + filepath.Join(dir, "bus") + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--config-file="+conf, "--nofork", "--print-address=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var busErr lockedBuffer
	cmd.Stderr = &busErr // it complains that it cannot raise its fd limit
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v\n%s", err, busErr.String())
	}
	return strings.TrimSpace(addr)
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeAndStopGracefully runs smimed as a process on a private bus:
// it picks the file vault (no Secret Service there), has core dumps off,
// serves requests from a D-Bus client, and on SIGTERM lets the request in
// flight finish, then exits 0.
func TestServeAndStopGracefully(t *testing.T) {
	addr := startBus(t)
	pinentry := pinentrytest.Build(t)
	dir := t.TempDir()
	const pass = "Graceful-Passphrase-9917"
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte("[audit]\nsyslog = false\n[trust]\nsystem_roots = false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(),
		envRunDaemon+"=1",
		envRunDaemon+"_ARGS=--address "+addr+" --log-format json --log-level debug --policy "+filepath.Join(dir, "no-policy.toml"),
		"SMIMED_CONFIG="+cfgPath,
		"SMIMED_PINENTRY="+pinentry,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_STATE_HOME="+filepath.Join(dir, "state"),
		"XDG_RUNTIME_DIR="+filepath.Join(dir, "run"),
		"DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent", // --address wins
	)
	cmd.Env = append(cmd.Env, pinentrytest.Config{PIN: pass, Delay: 1500 * time.Millisecond, Log: filepath.Join(dir, "pinentry.log")}.Env(t)...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("smimed's stderr:\n%s", stderr.String())
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := smimedbus.Dial(ctx, smimedbus.ClientOptions{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var st ipc.DaemonStatus
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err = client.Status(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smimed did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Keystore != "file" || st.PID != cmd.Process.Pid || st.Config != cfgPath {
		t.Errorf("Status = %+v", st)
	}
	if !strings.Contains(stderr.String(), "no Secret Service on the session bus; using the encrypted-file vault") {
		t.Error("the log does not say which key store backend was chosen")
	}
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max core file size") && !strings.Contains(line, " 0 ") {
			t.Errorf("core dumps are not off: %q", line)
		}
	}

	// A second smimed of the same user on the same bus refuses to run.
	second := exec.Command(os.Args[0])
	second.Env = cmd.Env
	secondOut, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(secondOut), "taken") {
		t.Errorf("a second smimed: %v\n%s", err, secondOut)
	}

	pki := testpki.New(t)
	alice := pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	if _, err := client.ImportPKCS12(ctx, alice.PKCS12(t, pass, false), []byte(pass)); err != nil {
		t.Fatalf("ImportPKCS12: %v", err)
	}

	// A sign request whose prompt takes 1.5 s is in flight when SIGTERM
	// arrives: it still completes, and then the daemon exits 0.
	msg := "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: s\r\n\r\nbody\r\n"
	signed := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		signed <- client.Sign(ctx, ipc.SignRequest{}, strings.NewReader(msg), &out)
	}()
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-signed:
		if err != nil {
			t.Fatalf("the request in flight at SIGTERM failed: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the request in flight did not finish")
	}
	if !strings.Contains(out.String(), "application/pkcs7-signature") {
		t.Errorf("signed output: %q", out.String())
	}
	select {
	case err := <-exited:
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if err != nil {
			t.Fatalf("smimed exited with %v after SIGTERM, want 0", err)
		}
		exited <- nil // for the deferred cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("smimed did not exit after SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no stop record in the log")
	}
	for _, where := range []string{stderr.String(), readFile(t, filepath.Join(dir, "state", "smimed", "audit.log"))} {
		if strings.Contains(where, pass) {
			t.Error("the passphrase reached a log")
		}
	}
	audit := readFile(t, filepath.Join(dir, "state", "smimed", "audit.log"))
	if n := strings.Count(audit, "\n"); n != 2 || !strings.Contains(audit, `"caller_pid":`+strconv.Itoa(os.Getpid())) {
		t.Errorf("audit trail (want import and sign by this process):\n%s", audit)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(data)
}
