//go:build linux

package keystore

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// storeDirectoryPassword runs the real `secret-tool store` as an
// administrator would, the password on its standard input.
func (k *keyring) storeDirectoryPassword(t *testing.T, server, bindDN, password string) {
	t.Helper()
	cmd := exec.Command(needTool(t, "secret-tool"), "store", "--label=smimed directory",
		"xdg:schema", DirectoryPasswordSchema, "server", server, "bindname", bindDN)
	cmd.Env = k.env
	cmd.Stdin = strings.NewReader(password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret-tool store: %v\n%s", err, out)
	}
}

// TestDirectoryPassword: a bind password stored by the real secret-tool in
// a real gnome-keyring is read back exactly (a trailing newline from echo
// removed), only for the same server and bind DN; a missing one is
// ErrNotFound, a locked keyring ErrLocked (quickly), the file vault
// ErrUnsupportedBackend, a closed store ErrClosed.
func TestDirectoryPassword(t *testing.T) {
	const (
		server   = "ldap://ldap.example.org:389"
		bindDN   = "cn=reader,dc=example,dc=org"
		password = "Directory-Bind-Secret-5150"
	)
	k := startKeyring(t, true)
	s, err := Open(context.Background(), Options{Vault: k.vault(t, 0), Prompter: &fakePrompter{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()

	// Nothing stored yet.
	if _, err := s.DirectoryPassword(ctx, server, bindDN); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), bindDN) {
		t.Fatalf("before storing: %v, want ErrNotFound naming the DN", err)
	}

	k.storeDirectoryPassword(t, server, bindDN, password)
	k.storeDirectoryPassword(t, "ldaps://ldap.example.org:636", bindDN, "other-Secret\n") // as `echo other-Secret | secret-tool store ...`
	sec, err := s.DirectoryPassword(ctx, server, bindDN)
	if err != nil {
		t.Fatal(err)
	}
	got := sec.Bytes()
	if string(got) != password {
		t.Fatalf("password = %q", got)
	}
	sec.Wipe()
	if !bytes.Equal(got, make([]byte, len(got))) {
		t.Fatal("Wipe did not zero the password")
	}
	if sec, err := s.DirectoryPassword(ctx, "ldaps://ldap.example.org:636", bindDN); err != nil || string(sec.Bytes()) != "other-Secret" {
		t.Fatalf("password stored with a newline: %v", err)
	}

	// Matched exactly: another port, scheme, host or DN is not it.
	for _, c := range [][2]string{
		{"ldap://ldap.example.org:3890", bindDN},
		{"ldap://ldap.example.org", bindDN},
		{"ldap://other.example.org:389", bindDN},
		{server, "cn=writer,dc=example,dc=org"},
		{server, "cn=reader, dc=example, dc=org"},
	} {
		_, err := s.DirectoryPassword(ctx, c[0], c[1])
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s %s: %v, want ErrNotFound", c[0], c[1], err)
		}
	}
	// The smimed identity listing is not confused by the foreign items.
	if ids, err := s.Identities(ctx); err != nil || len(ids) != 0 {
		t.Fatalf("Identities beside directory passwords: %v, %v", ids, err)
	}

	// Locked keyring (no unlock prompt can be shown here): ErrLocked, fast.
	k.lockLogin(t)
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = s.DirectoryPassword(lctx, server, bindDN)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("locked keyring: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("locked keyring took %v", d)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DirectoryPassword(ctx, server, bindDN); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed store: %v", err)
	}
}

// TestDirectoryPasswordNoKeyring: without a login collection (and no prompt
// to create one) the answer is ErrLocked, not a hang or "not found".
func TestDirectoryPasswordNoKeyring(t *testing.T) {
	k := startKeyring(t, false)
	s, err := Open(context.Background(), Options{Vault: k.vault(t, 0), Prompter: &fakePrompter{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.DirectoryPassword(ctx, "ldap://h:389", "cn=r,dc=x"); !errors.Is(err, ErrLocked) {
		t.Fatalf("no login keyring: %v, want ErrLocked", err)
	}
}

// TestDirectoryPasswordFileVault: the file vault holds no directory
// passwords; it says so with ErrUnsupportedBackend.
func TestDirectoryPasswordFileVault(t *testing.T) {
	s, _ := newFileStore(t, &fakePrompter{}, 0)
	_, err := s.DirectoryPassword(context.Background(), "ldap://h:389", "cn=r,dc=x")
	if !errors.Is(err, ErrUnsupportedBackend) || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "file") {
		t.Fatalf("file vault: %v, want ErrUnsupportedBackend", err)
	}
	if _, err := s.DirectoryPassword(context.Background(), "", "cn=r,dc=x"); err == nil {
		t.Fatal("empty server accepted")
	}
}
