package daemon

import (
	"bytes"
	"io"
	"testing"

	"github.com/smimed/smimed/internal/testldap"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
)

// TestDirectoryLookup: recipients' certificates come from a real slapd when
// the address book has none; a certificate that does not chain to the trust
// anchors is refused ("untrusted"), and an unreachable directory is
// reported per address without a hang.
func TestDirectoryLookup(t *testing.T) {
	srv := testldap.Start(t, false)
	pki := testpki.New(t)
	bob := pki.Issue(t, testpki.Options{Email: "bob@example.org"})
	stranger := testpki.New(t).Issue(t, testpki.Options{Email: "mallory@example.org"})
	srv.Person(t, "bob", "bob@example.org", map[string][]string{"userCertificate;binary": {string(bob.Cert.Raw)}})
	srv.Person(t, "mallory", "mallory@example.org", map[string][]string{"userCertificate;binary": {string(stranger.Cert.Raw)}})

	h := newHarness(t, harnessOptions{pki: pki, user: "[directory]\nldap = [" + quote(srv.URL) + "]\n"})
	ctx := h.ctx()
	h.importIdentity(pki.Issue(t, testpki.Options{Email: "alice@example.org"}))
	h.trustRoot()

	for _, c := range []struct {
		addr, reason string
		found        bool
	}{
		{"bob@example.org", "", true},
		{"Bob@Example.ORG", "", true},
		{"mallory@example.org", reasonUntrusted, false},
		{"nobody@example.org", "none-found", false},
	} {
		look, err := h.svc.CertsFind(ctx, c.addr)
		if err != nil {
			t.Fatalf("CertsFind(%s): %v", c.addr, err)
		}
		if got := len(look.Certificates) > 0; got != c.found || look.Reason != c.reason {
			t.Errorf("CertsFind(%s) = %d certificates, reason %q; want found=%v reason %q", c.addr, len(look.Certificates), look.Reason, c.found, c.reason)
		}
	}

	// Encrypting to a directory recipient works (composing is when lookups happen).
	msg := newMail("alice@example.org", "bob@example.org", "s", "for Bob, found in the directory")
	var enc bytes.Buffer
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org"}, From: "alice@example.org"}, bytes.NewReader(msg), &enc); err != nil {
		t.Fatalf("Encrypt to a directory recipient: %v", err)
	}
	// Reading a message never asks the directory: verify stays local.
	if _, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(enc.Bytes()), io.Discard); ipc.NameOf(err) != ipc.NoIdentity {
		t.Fatalf("Verify of an encrypted message: %v", err)
	}

	// The directory goes away: an address not cached is reported as such, quickly.
	srv.Stop(t)
	look, err := h.svc.CertsFind(ctx, "carol@example.org")
	if err != nil || look.Reason != reasonDirectoryUnreachable || len(look.Certificates) != 0 {
		t.Fatalf("CertsFind with the directory down = %+v, %v", look, err)
	}
}
