package certbook

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/cms"
)

func openBook(t *testing.T) *Book {
	t.Helper()
	b, err := Open(filepath.Join(t.TempDir(), "smimed"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAnchors(t *testing.T) {
	ctx := context.Background()
	pki := testpki.New(t)
	b := openBook(t)
	added, err := b.AddAnchors(ctx, []*x509.Certificate{pki.Root.Cert, pki.Intermediate.Cert})
	if err != nil || len(added) != 2 {
		t.Fatalf("AddAnchors = %d, %v", len(added), err)
	}
	if again, err := b.AddAnchors(ctx, []*x509.Certificate{pki.Root.Cert}); err != nil || len(again) != 0 {
		t.Errorf("adding an anchor twice: %d new, %v", len(again), err)
	}
	// A new Book over the same directory (a restart) sees them.
	b2, err := Open(b.Dir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b2.Anchors(ctx)
	if err != nil || len(got) != 2 {
		t.Fatalf("Anchors after reopen = %d, %v", len(got), err)
	}
	// A damaged file is reported and does not hide the others.
	bad := filepath.Join(b.Dir(), "trust", strings.Repeat("0", 64)+".pem")
	if err := os.WriteFile(bad, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = b2.Anchors(ctx)
	var ce *CorruptError
	if len(got) != 2 || !errors.As(err, &ce) || ce.Path != bad || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("with a corrupt file: %d anchors, err %v", len(got), err)
	}
	removed, err := b2.RemoveAnchors(ctx, []string{Fingerprint(pki.Root.Cert), strings.Repeat("0", 64), strings.Repeat("1", 64)})
	if err != nil || len(removed) != 1 || !removed[0].Equal(pki.Root.Cert) {
		t.Fatalf("RemoveAnchors = %v, %v", removed, err)
	}
	got, err = b2.Anchors(ctx)
	if err != nil || len(got) != 1 || !got[0].Equal(pki.Intermediate.Cert) {
		t.Fatalf("after remove: %d, %v", len(got), err)
	}
	if _, err := b2.RemoveAnchors(ctx, []string{"../../etc/passwd"}); err == nil {
		t.Error("a path was accepted as a fingerprint")
	}
	assertModes(t, b.Dir())
}

func assertModes(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"trust", "certs"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v", sub, st.Mode().Perm())
		}
		files, _ := filepath.Glob(filepath.Join(dir, sub, "*"))
		for _, f := range files {
			if strings.HasPrefix(filepath.Base(f), ".tmp-") {
				t.Errorf("debris left: %s", f)
			}
			if st, err := os.Stat(f); err == nil && st.Mode().Perm() != 0o600 {
				if !strings.HasPrefix(filepath.Base(f), "0000") { // the test's own corrupt file
					t.Errorf("%s: mode %v", f, st.Mode().Perm())
				}
			}
		}
	}
}

func TestEntries(t *testing.T) {
	ctx := context.Background()
	pki := testpki.New(t)
	bob := pki.Issue(t, testpki.Options{Email: "Bob@Example.org"})
	carol := pki.Issue(t, testpki.Options{Email: "carol@example.org", Key: testpki.P256})
	b := openBook(t)
	caps := cms.DefaultCapabilities()[:2]
	seen := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

	if ch, err := b.Add(ctx, Entry{Certificate: bob.Cert, Source: SourceMessage}); err != nil || !ch {
		t.Fatalf("Add = %v, %v", ch, err)
	}
	if ch, err := b.Add(ctx, Entry{Certificate: bob.Cert, Source: SourceMessage}); err != nil || ch {
		t.Errorf("adding the same entry again changed it: %v, %v", ch, err)
	}
	if ch, err := b.Add(ctx, Entry{Certificate: bob.Cert, Capabilities: caps, CapabilitiesSeen: seen, PreferredAt: seen, Source: SourceUser}); err != nil || !ch {
		t.Fatalf("merge = %v, %v", ch, err)
	}
	// Older capabilities do not replace newer ones.
	if ch, err := b.Add(ctx, Entry{Certificate: bob.Cert, Capabilities: cms.DefaultCapabilities(), CapabilitiesSeen: seen.Add(-time.Hour)}); err != nil || ch {
		t.Errorf("older capabilities: %v, %v", ch, err)
	}
	if _, err := b.Add(ctx, Entry{Certificate: carol.Cert}); err != nil {
		t.Fatal(err)
	}

	b2, err := Open(b.Dir(), nil) // restart
	if err != nil {
		t.Fatal(err)
	}
	found, err := b2.Find(ctx, "bob@EXAMPLE.org")
	if err != nil || len(found) != 1 {
		t.Fatalf("Find = %d, %v", len(found), err)
	}
	e := found[0]
	if !e.Certificate.Equal(bob.Cert) || !e.CapabilitiesSeen.Equal(seen) || !e.PreferredAt.Equal(seen) || e.Source != SourceUser || e.Added.IsZero() {
		t.Errorf("entry = %+v", e)
	}
	if len(e.Capabilities) != 2 || !e.Capabilities[0].Algorithm.Equal(caps[0].Algorithm) || string(e.Capabilities[1].Parameters) != string(caps[1].Parameters) {
		t.Errorf("capabilities = %+v, want %+v", e.Capabilities, caps)
	}

	// A corrupt entry is reported by name; the others still list.
	bad := filepath.Join(b.Dir(), "certs", strings.Repeat("0", 64)+".json")
	if err := os.WriteFile(bad, []byte(`{"format":"smimed-certbook-entry","version":1,"certificate":"!!"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := b2.List(ctx)
	var ce *CorruptError
	if len(all) != 2 || !errors.As(err, &ce) || ce.Path != bad {
		t.Fatalf("List with a corrupt entry: %d, %v", len(all), err)
	}
	// A renamed file (content does not match its name) is corrupt too.
	if err := os.Rename(filepath.Join(b.Dir(), "certs", Fingerprint(carol.Cert)+".json"), filepath.Join(b.Dir(), "certs", strings.Repeat("1", 64)+".json")); err != nil {
		t.Fatal(err)
	}
	all, err = b2.List(ctx)
	if len(all) != 1 || err == nil {
		t.Errorf("renamed entry: %d listed, err %v", len(all), err)
	}
	if ok, err := b2.Remove(ctx, Fingerprint(bob.Cert)); !ok || err != nil {
		t.Errorf("Remove = %v, %v", ok, err)
	}
	if ok, err := b2.Remove(ctx, Fingerprint(bob.Cert)); ok || err != nil {
		t.Errorf("Remove again = %v, %v", ok, err)
	}
	assertModes(t, b.Dir())
}

func TestOpenRemovesDebris(t *testing.T) {
	b := openBook(t)
	debris := filepath.Join(b.Dir(), "certs", ".tmp-123")
	if err := os.WriteFile(debris, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(b.Dir(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(debris); !os.IsNotExist(err) {
		t.Error("crash debris was not removed")
	}
}

func TestSelect(t *testing.T) {
	pki := testpki.New(t)
	now := time.Now()
	mk := func(o testpki.Options) Entry { return Entry{Certificate: pki.Issue(t, o).Cert} }
	old := mk(testpki.Options{Email: "a@x.org", NotAfter: now.Add(24 * time.Hour)})
	newer := mk(testpki.Options{Email: "a@x.org", NotAfter: now.Add(48 * time.Hour)})
	preferred := mk(testpki.Options{Email: "a@x.org", NotAfter: now.Add(12 * time.Hour)})
	preferred.PreferredAt = now.Add(-time.Hour)
	expired := mk(testpki.Options{Email: "e@x.org", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	signOnly := mk(testpki.Options{Email: "k@x.org", KeyUsage: x509.KeyUsageDigitalSignature})
	ecSignOnly := mk(testpki.Options{Email: "k@x.org", Key: testpki.P256, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment})
	wrongEKU := mk(testpki.Options{Email: "u@x.org", ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	noKU := mk(testpki.Options{Email: "n@x.org", NoExtKeyUsage: true})
	ecOK := mk(testpki.Options{Email: "n@x.org", Key: testpki.P384})
	all := []Entry{old, newer, preferred, expired, signOnly, ecSignOnly, wrongEKU, noKU, ecOK}

	tests := []struct {
		email  string
		want   []Entry
		reason string
	}{
		{"A@X.ORG", []Entry{preferred, newer, old}, ""},
		{"nobody@x.org", nil, ReasonNoneFound},
		{"e@x.org", nil, ReasonExpired},
		{"k@x.org", nil, ReasonWrongKeyUsage},
		{"u@x.org", nil, ReasonWrongKeyUsage},
		{"n@x.org", []Entry{noKU, ecOK}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.email, func(t *testing.T) {
			got, reason := Select(all, tc.email, now)
			if reason != tc.reason {
				t.Errorf("reason %q, want %q", reason, tc.reason)
			}
			fp := func(es []Entry) []string {
				var out []string
				for _, e := range es {
					out = append(out, e.Fingerprint()[:8])
				}
				return out
			}
			if tc.email == "n@x.org" { // equal preference: order by NotAfter, which testpki may make equal
				if len(got) != 2 {
					t.Errorf("got %v", fp(got))
				}
				return
			}
			if !slices.Equal(fp(got), fp(tc.want)) {
				t.Errorf("got %v, want %v", fp(got), fp(tc.want))
			}
		})
	}
}

func TestEmails(t *testing.T) {
	pki := testpki.New(t)
	c := pki.Issue(t, testpki.Options{Email: "Mixed@Case.Example"}).Cert
	if got := Emails(c); !slices.Equal(got, []string{"mixed@case.example"}) {
		t.Errorf("Emails = %v", got)
	}
	if !HasEmail(c, " MIXED@case.example ") || HasEmail(c, "other@case.example") {
		t.Error("HasEmail")
	}
}
