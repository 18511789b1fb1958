package daemon

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
)

// startPrivateBus starts a private dbus-daemon (no service activation)
// with its socket in dir, and returns its address.
func startPrivateBus(t *testing.T, dir string) string {
	t.Helper()
	busExe, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatalf("this test needs dbus-daemon (Debian package dbus-daemon): %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "bus.conf")
	writeFile(t, conf, `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=`+filepath.Join(dir, "bus")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`)
	bus := exec.Command(busExe, "--config-file="+conf, "--nofork", "--print-address=1")
	stdout, err := bus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Process.Kill(); _ = bus.Wait() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(addr)
}

// startKeyringBus starts a private dbus-daemon (no service activation) and,
// on it, a real gnome-keyring-daemon in a throw-away HOME; with unlock its
// login keyring is created and unlocked, without it there is none (and no
// prompt can make one). It returns a connection to that bus.
func startKeyringBus(t *testing.T, unlock bool) *dbus.Conn {
	t.Helper()
	tool := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Fatalf("this test needs %s (Debian packages dbus-daemon, gnome-keyring): %v", name, err)
		}
		return p
	}
	gkExe := tool("gnome-keyring-daemon")
	home, runtime := t.TempDir(), t.TempDir()
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := startPrivateBus(t, runtime)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}

	args := []string{"--components=secrets", "--daemonize"}
	if unlock {
		args = append([]string{"--unlock"}, args...)
	}
	gk := exec.Command(gkExe, args...)
	gk.Env = []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + runtime, "PATH=" + os.Getenv("PATH"), "LANG=C", "DBUS_SESSION_BUS_ADDRESS=" + addr}
	if unlock {
		gk.Stdin = strings.NewReader("login-keyring-pw")
	}
	if out, err := gk.CombinedOutput(); err != nil {
		t.Fatalf("gnome-keyring-daemon: %v\n%s", err, out)
	}
	var pid uint32
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, "org.freedesktop.secrets").Store(&pid)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gnome-keyring-daemon did not appear on the bus: %v", err)
		}
	}
	t.Cleanup(func() {
		_ = syscall.Kill(int(pid), syscall.SIGTERM)
		_ = conn.Close()
	})
	return conn
}

// TestSecretServiceBackend: keystore.backend "auto" picks the Secret
// Service when one answers on the bus; identities live there and survive a
// restart of smimed; a keyring without a login collection (and no way to
// show its unlock prompt) gives KeystoreLocked.
func TestSecretServiceBackend(t *testing.T) {
	t.Parallel()
	t.Run("auto picks it", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{backend: "auto", bus: startKeyringBus(t, true)})
		ctx := h.ctx()
		if !strings.Contains(h.logs.String(), "using the Secret Service") {
			t.Error("the log does not say the Secret Service was chosen")
		}
		alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
		ident := h.importIdentity(alice)
		if ident.Source != "secret-service" {
			t.Errorf("identity kept in %q", ident.Source)
		}
		h.svc.Close()
		h.start()
		st, err := h.svc.Status(ctx)
		if err != nil || st.Keystore != "secret-service" || st.Identities != 1 {
			t.Fatalf("Status after restart = %+v, %v", st, err)
		}
		h.setPINs(keyPass)
		var signed bytes.Buffer
		if err := h.svc.Sign(ctx, ipc.SignRequest{}, bytes.NewReader(newMail("alice@example.org", "b@example.org", "s", "b")), &signed); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(h.dataDir, "keys")); !os.IsNotExist(err) {
			t.Errorf("a file vault was created beside the Secret Service: %v", err)
		}
		h.assertNoSecrets()
	})
	t.Run("locked", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{backend: "secret-service", bus: startKeyringBus(t, false)})
		ctx := h.ctx()
		_, err := h.svc.Identities(ctx)
		wantName(t, err, ipc.KeystoreLocked)
		err = h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org"}, strings.NewReader("x"), io.Discard)
		wantName(t, err, ipc.KeystoreLocked)
		st, err := h.svc.Status(ctx)
		if err != nil || st.Identities != 0 || st.Keystore != "secret-service" {
			t.Errorf("Status with a locked key store = %+v, %v", st, err)
		}
	})
}
