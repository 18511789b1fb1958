package daemon

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/internal/testldap"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
)

// keyringSession is a private session bus with a real, unlocked
// gnome-keyring on it: the connection handed to the daemon, and the
// environment under which the real secret-tool talks to the same keyring.
type keyringSession struct {
	conn *dbus.Conn
	env  []string
}

// startKeyringSession is startKeyringBus that also keeps the bus address,
// for secret-tool.
func startKeyringSession(t *testing.T) *keyringSession {
	t.Helper()
	gkExe, err := exec.LookPath("gnome-keyring-daemon")
	if err != nil {
		t.Fatalf("this test needs gnome-keyring-daemon (Debian package gnome-keyring): %v", err)
	}
	home, runtime := t.TempDir(), t.TempDir()
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	addr := startPrivateBus(t, runtime)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "XDG_RUNTIME_DIR=" + runtime, "PATH=" + os.Getenv("PATH"), "LANG=C", "DBUS_SESSION_BUS_ADDRESS=" + addr}
	gk := exec.Command(gkExe, "--unlock", "--components=secrets", "--daemonize")
	gk.Env = env
	gk.Stdin = strings.NewReader("login-keyring-pw")
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
	return &keyringSession{conn: conn, env: env}
}

// storePassword runs the real `secret-tool store` exactly as daemon/README.md
// tells an administrator to, the password on its standard input.
func (k *keyringSession) storePassword(t *testing.T, server, bindDN, password string) {
	t.Helper()
	tool, err := exec.LookPath("secret-tool")
	if err != nil {
		t.Fatalf("this test needs secret-tool (Debian package libsecret-tools): %v", err)
	}
	cmd := exec.Command(tool, "store", "--label=smimed directory", "xdg:schema", "org.smimed.DirectoryPassword",
		"server", server, "bindname", bindDN)
	cmd.Env = k.env
	cmd.Stdin = strings.NewReader(password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret-tool store: %v\n%s", err, out)
	}
}

// TestDirectorySimpleBind: a directory whose access rules let only
// authenticated users read certificates, configured by an RFC 4516 URL
// with a bindname; the password stored with the real secret-tool in a real
// gnome-keyring. Without the password CertsFind reports
// directory-auth-failed (and the log says what to store), quickly; once it
// is stored, CertsFind and Encrypt find the certificate through the
// authenticated bind; a wrong password, a locked keyring and the file vault
// (which holds no such passwords) are reported the same way, with the reason
// in the log. The password never reaches a log.
func TestDirectorySimpleBind(t *testing.T) {
	t.Parallel()
	const dirPassword = testldap.ReaderPW
	srv := testldap.StartWith(t, testldap.Options{ProtectCertificates: true})
	pki := testpki.New(t)
	for _, who := range []string{"bob", "carol", "dave"} {
		c := pki.Issue(t, testpki.Options{Email: who + "@example.org", Key: testpki.P256})
		srv.Person(t, who, who+"@example.org", map[string][]string{"userCertificate;binary": {string(c.Cert.Raw)}})
	}
	url := srv.URL + "??sub??bindname=cn=reader%2cdc=example%2cdc=org"
	origin := "ldap://" + srv.Addr

	t.Run("secret service", func(t *testing.T) {
		t.Parallel()
		k := startKeyringSession(t)
		h := newHarness(t, harnessOptions{pki: pki, backend: "secret-service", bus: k.conn,
			user: "[directory]\nldap = [" + quote(url) + "]\n"})
		ctx := h.ctx()
		h.importIdentity(pki.Issue(t, testpki.Options{Email: "alice@example.org"}))
		h.trustRoot()

		// No password stored: reported per address, quickly.
		start := time.Now()
		look, err := h.svc.CertsFind(ctx, "bob@example.org")
		if err != nil || look.Reason != reasonDirectoryAuthFailed || len(look.Certificates) != 0 {
			t.Fatalf("CertsFind without a stored password = %+v, %v", look, err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("CertsFind without a stored password took %v", el)
		}
		logs := h.logs.String()
		for _, want := range []string{"no password stored for " + origin + " as cn=reader,dc=example,dc=org",
			"secret-tool store --label='smimed directory' xdg:schema org.smimed.DirectoryPassword server " + origin} {
			if !strings.Contains(logs, want) {
				t.Errorf("the log does not say %q:\n%s", want, logs)
			}
		}
		msg := newMail("alice@example.org", "bob@example.org", "s", "for Bob")
		err = h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org"}, From: "alice@example.org"}, bytes.NewReader(msg), &bytes.Buffer{})
		if ie := wantName(t, err, ipc.NoRecipientCertificate); !strings.Contains(ie.Message, "bob@example.org (directory-auth-failed)") {
			t.Errorf("Encrypt without a stored password: %v", ie)
		}

		// The administrator stores it: found through the authenticated
		// bind (the failure was not cached).
		k.storePassword(t, origin, testldap.ReaderDN, dirPassword)
		look, err = h.svc.CertsFind(ctx, "Bob@example.org")
		if err != nil || look.Reason != "" || len(look.Certificates) != 1 || look.Certificates[0].Emails[0] != "bob@example.org" {
			t.Fatalf("CertsFind with the password stored = %+v, %v", look, err)
		}
		if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"carol@example.org"}, From: "alice@example.org"},
			bytes.NewReader(newMail("alice@example.org", "carol@example.org", "s", "for Carol")), &bytes.Buffer{}); err != nil {
			t.Fatalf("Encrypt to a directory recipient behind a bind: %v", err)
		}

		// A wrong password (stored over the right one): reported, with the
		// server's refusal in the log.
		k.storePassword(t, origin, testldap.ReaderDN, "Wrong-Directory-Secret-1")
		look, err = h.svc.CertsFind(ctx, "dave@example.org")
		if err != nil || look.Reason != reasonDirectoryAuthFailed || len(look.Certificates) != 0 {
			t.Fatalf("CertsFind with a wrong password = %+v, %v", look, err)
		}
		logs = h.logs.String()
		if !strings.Contains(logs, "Invalid Credentials") {
			t.Errorf("the log does not show the refused bind:\n%s", logs)
		}
		for _, secret := range []string{dirPassword, "Wrong-Directory-Secret-1"} {
			if strings.Contains(logs, secret) {
				t.Errorf("the log shows a directory password %q", secret)
			}
		}
		h.assertNoSecrets()
	})

	t.Run("locked keyring", func(t *testing.T) {
		t.Parallel()
		// No login keyring and no way to show the prompt that would
		// create one: reported as quickly, not a hang.
		h := newHarness(t, harnessOptions{pki: pki, backend: "secret-service", bus: startKeyringBus(t, false),
			user: "[directory]\nldap = [" + quote(url) + "]\n"})
		start := time.Now()
		look, err := h.svc.CertsFind(h.ctx(), "bob@example.org")
		if err != nil || look.Reason != reasonDirectoryAuthFailed || len(look.Certificates) != 0 {
			t.Fatalf("CertsFind with a locked keyring = %+v, %v", look, err)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Fatalf("CertsFind with a locked keyring took %v", el)
		}
		if logs := h.logs.String(); !strings.Contains(logs, "directory: the password for "+origin+" as cn=reader,dc=example,dc=org cannot be read") ||
			!strings.Contains(logs, keystore.ErrLocked.Error()) {
			t.Errorf("the log does not say why:\n%s", logs)
		}
	})

	t.Run("file vault", func(t *testing.T) {
		t.Parallel()
		// The file vault holds no directory passwords: the reason is
		// reported and the log says why.
		h := newHarness(t, harnessOptions{pki: pki, user: "[directory]\nldap = [" + quote(url) + "]\n"})
		ctx := h.ctx()
		h.trustRoot()
		look, err := h.svc.CertsFind(ctx, "bob@example.org")
		if err != nil || look.Reason != reasonDirectoryAuthFailed || len(look.Certificates) != 0 {
			t.Fatalf("CertsFind with the file vault = %+v, %v", look, err)
		}
		if logs := h.logs.String(); !strings.Contains(logs, "the file key store holds no directory passwords") ||
			!strings.Contains(logs, keystore.ErrUnsupportedBackend.Error()) {
			t.Errorf("the log does not say why:\n%s", logs)
		}
	})

	t.Run("anonymous", func(t *testing.T) {
		t.Parallel()
		// Without a bindname the bind is anonymous: the directory's rules
		// hide the certificate, so none is found (and nothing failed).
		h := newHarness(t, harnessOptions{pki: pki, user: "[directory]\nldap = [" + quote(srv.URL) + "]\n"})
		ctx := h.ctx()
		h.trustRoot()
		look, err := h.svc.CertsFind(ctx, "bob@example.org")
		if err != nil || look.Reason != "none-found" || len(look.Certificates) != 0 {
			t.Fatalf("anonymous CertsFind = %+v, %v", look, err)
		}
	})
}
