//go:build linux

package keystore

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/prompt"
)

// keyring is a private session bus with a real gnome-keyring-daemon on it,
// started by the test and killed at cleanup.
type keyring struct {
	addr string
	env  []string
	conn *dbus.Conn // the test's own connection, for setup and checks
}

// startKeyring starts dbus-daemon and gnome-keyring-daemon in a throw-away
// HOME and XDG_RUNTIME_DIR (mode 0700). With unlock, the login keyring is
// created and unlocked with password "pw"; without, there is no login
// collection and any unlock needs a GUI prompt (which cannot be shown).
func startKeyring(t *testing.T, unlock bool) *keyring {
	t.Helper()
	dbusDaemon := needTool(t, "dbus-daemon")
	gkd := needTool(t, "gnome-keyring-daemon")
	home, runtime := t.TempDir(), t.TempDir()
	for _, d := range []string{home, runtime} {
		if err := os.Chmod(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + runtime, "PATH=" + os.Getenv("PATH"), "LANG=C"}

	addrR, addrW, _ := os.Pipe()
	pidR, pidW, _ := os.Pipe()
	cmd := exec.Command(dbusDaemon, "--session", "--fork", "--print-address=3", "--print-pid=4")
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{addrW, pidW}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	addrW.Close()
	pidW.Close()
	addr, err := bufio.NewReader(addrR).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon address: %v", err)
	}
	pidLine, err := bufio.NewReader(pidR).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon pid: %v", err)
	}
	addrR.Close()
	pidR.Close()
	_ = cmd.Wait()
	busPID, _ := strconv.Atoi(strings.TrimSpace(pidLine))
	addr = strings.TrimSpace(addr)
	env = append(env, "DBUS_SESSION_BUS_ADDRESS="+addr)
	k := &keyring{addr: addr, env: env}

	conn, err := dbus.Connect(addr)
	if err != nil {
		_ = syscall.Kill(busPID, syscall.SIGTERM)
		t.Fatalf("connect to the private bus: %v", err)
	}
	k.conn = conn

	args := []string{"--components=secrets", "--daemonize"}
	if unlock {
		args = append([]string{"--unlock"}, args...)
	}
	gk := exec.Command(gkd, args...)
	gk.Env = env
	if unlock {
		gk.Stdin = strings.NewReader("pw")
	}
	if out, err := gk.CombinedOutput(); err != nil {
		_ = syscall.Kill(busPID, syscall.SIGTERM)
		t.Fatalf("gnome-keyring-daemon: %v\n%s", err, out)
	}
	// Wait for it to own its name, and learn its pid for cleanup.
	var gkPID uint32
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, ssBusName).Store(&gkPID)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(busPID, syscall.SIGTERM)
			t.Fatalf("gnome-keyring-daemon did not appear on the bus: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		// Kill whatever owns the name now (the one we started, or one the
		// bus activated), then the bus.
		var pid uint32
		if conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, ssBusName).Store(&pid) == nil && pid > 1 {
			_ = syscall.Kill(int(pid), syscall.SIGTERM)
		}
		if gkPID > 1 && gkPID != pid {
			_ = syscall.Kill(int(gkPID), syscall.SIGTERM)
		}
		_ = conn.Close()
		if busPID > 1 {
			_ = syscall.Kill(busPID, syscall.SIGTERM)
		}
	})
	return k
}

// vault opens a SecretServiceVault on the private bus, on a connection of
// its own (as the daemon would share its own).
func (k *keyring) vault(t *testing.T, timeout time.Duration) *SecretServiceVault {
	t.Helper()
	conn, err := dbus.Connect(k.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	v, err := NewSecretServiceVault(context.Background(), SecretServiceOptions{Conn: conn, PromptTimeout: timeout})
	if err != nil {
		t.Fatalf("NewSecretServiceVault: %v", err)
	}
	return v
}

// secretTool runs secret-tool against the private keyring.
func (k *keyring) secretTool(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(needTool(t, "secret-tool"), args...)
	cmd.Env = k.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("secret-tool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lockLogin locks the login collection through the Secret Service API.
func (k *keyring) lockLogin(t *testing.T) {
	t.Helper()
	var locked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	err := k.conn.Object(ssBusName, ssPath).Call(ssService+".Lock", 0,
		[]dbus.ObjectPath{"/org/freedesktop/secrets/collection/login"}).Store(&locked, &prompt)
	if err != nil || len(locked) != 1 || prompt != "/" {
		t.Fatalf("lock: %v %v %v", locked, prompt, err)
	}
}

func TestSecretServiceVault(t *testing.T) {
	k := startKeyring(t, true)
	v := k.vault(t, 0)
	ctx := context.Background()
	if v.Backend() != "secret-service" {
		t.Fatal(v.Backend())
	}

	// store
	blob := []byte("SMDKEY\x01 encrypted blob \x00\xff bytes")
	items := []item{
		{id: "id1", kind: kindKey, label: "smimed key Alice", data: blob},
		{id: "id1", kind: kindCert, label: "smimed certificate Alice", data: []byte("-----BEGIN CERTIFICATE-----\n")},
		{id: "id2", kind: kindKey, label: "smimed key Bob", data: []byte("blob2")},
	}
	for _, it := range items {
		if err := v.put(ctx, it); err != nil {
			t.Fatalf("put %s.%s: %v", it.id, it.kind, err)
		}
	}
	// retrieve
	got, err := v.get(ctx, "id1", kindKey)
	if err != nil || string(got.data) != string(blob) {
		t.Fatalf("get: %q %v", got.data, err)
	}
	if !strings.HasPrefix(got.where, "/org/freedesktop/secrets/collection/login/") {
		t.Fatalf("where = %q", got.where)
	}
	// replace keeps one item
	if err := v.put(ctx, item{id: "id2", kind: kindKey, label: "smimed key Bob", data: []byte("blob2-new")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.get(ctx, "id2", kindKey); string(got.data) != "blob2-new" {
		t.Fatalf("after replace: %q", got.data)
	}
	// list
	list, err := v.list(ctx)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %d %v", len(list), err)
	}

	// Real interop: secret-tool (libsecret) sees our items and attributes.
	out := k.secretTool(t, "search", "--all", "application", "smimed")
	for _, want := range []string{"label = smimed key Alice", "label = smimed certificate Alice", "label = smimed key Bob",
		"attribute.smimed-id = id1", "attribute.kind = cert", "attribute.application = smimed"} {
		if !strings.Contains(out, want) {
			t.Errorf("secret-tool search misses %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "label = smimed key Bob") != 1 {
		t.Errorf("replaced item duplicated:\n%s", out)
	}
	if got := k.secretTool(t, "lookup", "application", "smimed", "smimed-id", "id2", "kind", "key"); got != "blob2-new" {
		t.Errorf("secret-tool lookup = %q", got)
	}
	// An item written by libsecret with our attributes is read by us.
	cmd := exec.Command(needTool(t, "secret-tool"), "store", "--label", "smimed key Carol",
		"application", "smimed", "smimed-id", "id3", "kind", "key")
	cmd.Env = k.env
	cmd.Stdin = strings.NewReader("from-libsecret")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret-tool store: %v %s", err, out)
	}
	if got, err := v.get(ctx, "id3", kindKey); err != nil || string(got.data) != "from-libsecret" {
		t.Fatalf("item stored by secret-tool: %q %v", got.data, err)
	}
	// A foreign item with our application attribute but a bad ID is
	// reported, without hiding the others.
	cmd = exec.Command(needTool(t, "secret-tool"), "store", "--label", "junk", "application", "smimed", "smimed-id", "../x", "kind", "key")
	cmd.Env = k.env
	cmd.Stdin = strings.NewReader("junk")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret-tool store: %v %s", err, out)
	}
	list, err = v.list(ctx)
	var ce *CorruptError
	if !errors.As(err, &ce) || len(list) != 4 || !strings.HasPrefix(ce.Where, "/org/freedesktop/secrets/") {
		t.Fatalf("list with a foreign item: %d items, %v", len(list), err)
	}

	// delete
	if err := v.remove(ctx, "id1", kindKey); err != nil {
		t.Fatal(err)
	}
	if _, err := v.get(ctx, "id1", kindKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := v.remove(ctx, "id1", kindKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if out := k.secretTool(t, "search", "--all", "application", "smimed", "smimed-id", "id1", "kind", "key"); strings.Contains(out, "label") {
		t.Fatalf("deleted item still visible to secret-tool:\n%s", out)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSecretServiceLockedCollection(t *testing.T) {
	t.Run("locked login keyring", func(t *testing.T) {
		k := startKeyring(t, true)
		v := k.vault(t, 0)
		ctx := context.Background()
		if err := v.put(ctx, item{id: "id1", kind: kindKey, label: "smimed key X", data: []byte("b")}); err != nil {
			t.Fatal(err)
		}
		k.lockLogin(t)
		ops := map[string]func(context.Context) error{
			"get":    func(ctx context.Context) error { _, err := v.get(ctx, "id1", kindKey); return err },
			"list":   func(ctx context.Context) error { _, err := v.list(ctx); return err },
			"put":    func(ctx context.Context) error { return v.put(ctx, item{id: "id2", kind: kindKey, data: []byte("x")}) },
			"remove": func(ctx context.Context) error { return v.remove(ctx, "id1", kindKey) },
		}
		for name, op := range ops {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			start := time.Now()
			err := op(ctx)
			cancel()
			t.Logf("%s: %v (%v)", name, err, time.Since(start).Round(time.Millisecond))
			if !errors.Is(err, ErrLocked) {
				t.Fatalf("%s on a locked collection: %v, want ErrLocked", name, err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("%s took %v to report the locked keyring", name, d)
			}
		}
	})
	t.Run("no login keyring", func(t *testing.T) {
		k := startKeyring(t, false)
		v := k.vault(t, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		_, err := v.list(ctx)
		t.Logf("list: %v (%v)", err, time.Since(start).Round(time.Millisecond))
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("list without a login keyring: %v, want ErrLocked", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

// startBareBus starts a private session bus on which nothing is activatable
// (its only service directory is empty), and returns its address.
func startBareBus(t *testing.T) string {
	t.Helper()
	dbusDaemon := needTool(t, "dbus-daemon")
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir=`+dir+`</listen><servicedir>`+dir+`</servicedir>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>`), 0o600); err != nil {
		t.Fatal(err)
	}
	addrR, addrW, _ := os.Pipe()
	pidR, pidW, _ := os.Pipe()
	cmd := exec.Command(dbusDaemon, "--config-file="+conf, "--fork", "--print-address=3", "--print-pid=4")
	cmd.ExtraFiles = []*os.File{addrW, pidW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrW.Close()
	pidW.Close()
	addr, _ := bufio.NewReader(addrR).ReadString('\n')
	pidLine, _ := bufio.NewReader(pidR).ReadString('\n')
	addrR.Close()
	pidR.Close()
	_ = cmd.Wait()
	if pid, _ := strconv.Atoi(strings.TrimSpace(pidLine)); pid > 1 {
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGTERM) })
	}
	if strings.TrimSpace(addr) == "" {
		t.Fatal("dbus-daemon printed no address")
	}
	return strings.TrimSpace(addr)
}

func TestSecretServiceUnavailable(t *testing.T) {
	conn, err := dbus.Connect(startBareBus(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = NewSecretServiceVault(context.Background(), SecretServiceOptions{Conn: conn})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no Secret Service: %v, want ErrUnavailable", err)
	}
}

// stuckService is a Secret Service whose collection is locked and whose
// unlock prompt never completes (a prompter waiting for a user who is not
// there). gnome-keyring cannot be made to do that headless, so this one
// small stand-in checks that the vault gives up on time and dismisses it.
type stuckService struct {
	dismissed chan struct{}
}

const stuckCollection = dbus.ObjectPath("/org/freedesktop/secrets/collection/stuck")
const stuckPrompt = dbus.ObjectPath("/org/freedesktop/secrets/prompt/stuck")

func (s *stuckService) OpenSession(alg string, in dbus.Variant) (dbus.Variant, dbus.ObjectPath, *dbus.Error) {
	return dbus.MakeVariant(""), "/org/freedesktop/secrets/session/s1", nil
}
func (s *stuckService) ReadAlias(name string) (dbus.ObjectPath, *dbus.Error) {
	return stuckCollection, nil
}
func (s *stuckService) Unlock(objs []dbus.ObjectPath) ([]dbus.ObjectPath, dbus.ObjectPath, *dbus.Error) {
	return nil, stuckPrompt, nil
}

type stuckProps struct{}

func (stuckProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	if name == "Locked" {
		return dbus.MakeVariant(true), nil
	}
	return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", nil)
}

type stuckPromptObj struct{ s *stuckService }

func (p stuckPromptObj) Prompt(window string) *dbus.Error { return nil }
func (p stuckPromptObj) Dismiss() *dbus.Error {
	select {
	case p.s.dismissed <- struct{}{}:
	default:
	}
	return nil
}

func TestSecretServiceUnansweredPrompt(t *testing.T) {
	addr := startBareBus(t)
	svcConn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer svcConn.Close()
	svc := &stuckService{dismissed: make(chan struct{}, 1)}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(svcConn.Export(svc, ssPath, ssService))
	must(svcConn.Export(stuckProps{}, stuckCollection, dbusProps))
	must(svcConn.Export(stuckPromptObj{svc}, stuckPrompt, ssPrompt))
	if reply, err := svcConn.RequestName(ssBusName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request name: %v %v", reply, err)
	}

	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tests := []struct {
		name          string
		ctxTimeout    time.Duration
		promptTimeout time.Duration
		alsoWraps     error
	}{
		{"context deadline", time.Second, time.Hour, context.DeadlineExceeded},
		{"PromptTimeout", 0, 700 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewSecretServiceVault(context.Background(), SecretServiceOptions{Conn: conn, PromptTimeout: tc.promptTimeout})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			start := time.Now()
			_, err = v.get(ctx, "id1", kindKey)
			if !errors.Is(err, ErrLocked) || !errors.Is(err, tc.alsoWraps) {
				t.Fatalf("err = %v, want ErrLocked wrapping %v", err, tc.alsoWraps)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("gave up after %v", d)
			}
			select {
			case <-svc.dismissed:
			case <-time.After(3 * time.Second):
				t.Fatal("the abandoned prompt was not dismissed")
			}
		})
	}
}

// restartDaemon kills gnome-keyring-daemon and starts it again on the same
// HOME (the login keyring file survives) and bus, unlocked with "pw".
func (k *keyring) restartDaemon(t *testing.T) {
	t.Helper()
	var pid uint32
	if err := k.conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, ssBusName).Store(&pid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(pid), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		var has bool
		if err := k.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, ssBusName).Store(&has); err == nil && !has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gnome-keyring-daemon did not go away")
		}
		time.Sleep(50 * time.Millisecond)
	}
	gk := exec.Command(needTool(t, "gnome-keyring-daemon"), "--unlock", "--components=secrets", "--daemonize")
	gk.Env = k.env
	gk.Stdin = strings.NewReader("pw")
	if out, err := gk.CombinedOutput(); err != nil {
		t.Fatalf("restart gnome-keyring-daemon: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		var has bool
		if err := k.conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, ssBusName).Store(&has); err == nil && has {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("gnome-keyring-daemon did not come back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStoreOnSecretService(t *testing.T) {
	k := startKeyring(t, true)
	pki := testpki.New(t)
	fp := &fakePrompter{def: "key-pass"}
	s, err := Open(context.Background(), Options{Vault: k.vault(t, 0), Prompter: fp})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fastKDF(s)
	ctx := context.Background()
	rsaID := pki.Issue(t, testpki.Options{Email: "ss-rsa@example.org", Key: testpki.RSA2048})
	ecID := pki.Issue(t, testpki.Options{Email: "ss-ec@example.org", Key: testpki.P256})
	a := importPEM(t, s, rsaID, "key-pass")
	b := importPEM(t, s, ecID, "key-pass")
	if a.Backend != "secret-service" {
		t.Fatalf("backend %q", a.Backend)
	}
	out := k.secretTool(t, "search", "--all", "application", "smimed")
	for _, want := range []string{"label = smimed key ss-rsa@example.org", "label = smimed certificate ss-ec@example.org",
		"attribute.smimed-id = " + a.ID} {
		if !strings.Contains(out, want) {
			t.Errorf("secret-tool search misses %q:\n%s", want, out)
		}
	}
	// The secret stored for a key is our encrypted blob, never the key.
	keyBlob := k.secretTool(t, "lookup", "application", "smimed", "smimed-id", a.ID, "kind", "key")
	if !strings.HasPrefix(keyBlob, blobMagic) {
		t.Fatalf("key item does not hold an encrypted blob: %q", keyBlob[:min(len(keyBlob), 16)])
	}
	certPEMText := k.secretTool(t, "lookup", "application", "smimed", "smimed-id", a.ID, "kind", "cert")
	if !strings.HasPrefix(certPEMText, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("cert item: %q", certPEMText[:min(len(certPEMText), 40)])
	}

	signer, err := s.Signer(ctx, a.ID, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	checkSign(t, signer, rsaID.Cert)
	if fp.calls() != 1 {
		t.Fatalf("%d prompts", fp.calls())
	}

	// gnome-keyring restarts: the store reopens its session and carries on.
	k.restartDaemon(t)
	ids, err := s.Identities(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("after gnome-keyring restart: %v %v", ids, err)
	}
	// smimed restarts: a new Store over a new vault sees the same identities.
	s2, err := Open(ctx, Options{Vault: k.vault(t, 0), Prompter: fp})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ids, err = s2.Identities(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("after smimed restart: %v %v", ids, err)
	}
	signer, err = s2.Signer(ctx, b.ID, prompt.Request{})
	if err != nil {
		t.Fatal(err)
	}
	checkSign(t, signer, ecID.Cert)
	if err := s2.Remove(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if out := k.secretTool(t, "search", "--all", "application", "smimed", "smimed-id", a.ID); strings.Contains(out, "label") {
		t.Fatalf("removed identity still in the keyring:\n%s", out)
	}

	// Locked keyring: listing and key use fail with ErrLocked, fast.
	k.lockLogin(t)
	start := time.Now()
	if _, err := s2.Identities(ctx); !errors.Is(err, ErrLocked) {
		t.Fatalf("identities on a locked keyring: %v", err)
	}
	if _, err := s2.Signer(ctx, b.ID, prompt.Request{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("signer on a locked keyring: %v", err)
	}
	if _, err := s2.ImportPEM(ctx, rsaID.KeyPEM(t), testpki.CertPEM(rsaID.Cert), ImportOptions{NewPassphrase: secret("x")}); !errors.Is(err, ErrLocked) {
		t.Fatalf("import on a locked keyring: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("locked keyring took %v to report", d)
	}
	fp.assertWiped(t)
}
