package certbook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
)

// verifies reports whether id's certificate chains to pool, with its own
// intermediates, for e-mail protection.
func verifies(pool *x509.CertPool, id *testpki.Identity) bool {
	inter := x509.NewCertPool()
	for _, c := range id.Chain {
		inter.AddCert(c)
	}
	_, err := id.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	return err == nil
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func pemOf(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// corruptPaths lists the paths the *CorruptErrors in err name, sorted.
func corruptPaths(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		var ce *CorruptError
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			if errors.As(err, &ce) {
				out = append(out, ce.Path)
			}
		}
	}
	walk(err)
	sort.Strings(out)
	return out
}

// trustFixture is a book and a machine directory with one PKI per source,
// each with a leaf that verifies only through that source.
type trustFixture struct {
	book       *Book
	machineDir string
	confDir    string
	// The configured paths.
	anchorsFile, anchorsDir, signingFile, encryptionDir string
	// Leaves by source: user, machine (both scopes), machine signing/,
	// machine encryption/, configured file and directory (both scopes),
	// configured signing and encryption anchors, and a leaf pinned by
	// itself in the machine directory.
	leaves map[string]*testpki.Identity
	// pki are the PKIs by the same names.
	pki map[string]*testpki.PKI
}

func newTrustFixture(t *testing.T) *trustFixture {
	t.Helper()
	ctx := context.Background()
	f := &trustFixture{
		book:       openBook(t),
		machineDir: filepath.Join(t.TempDir(), "trust"),
		confDir:    t.TempDir(),
		leaves:     map[string]*testpki.Identity{},
		pki:        map[string]*testpki.PKI{},
	}
	pki := f.pki
	for _, name := range []string{"user", "machine", "machine-signing", "machine-encryption", "conf-file", "conf-dir", "conf-signing", "conf-encryption", "pinned"} {
		pki[name] = testpki.New(t)
		f.leaves[name] = pki[name].Issue(t, testpki.Options{Email: name + "@example.org", Key: testpki.P256})
	}
	if _, err := f.book.AddAnchors(ctx, []*x509.Certificate{pki["user"].Root.Cert}); err != nil {
		t.Fatal(err)
	}
	// The machine directory: PEM, DER, a PEM bundle, a pinned end-entity
	// certificate, and files that are not anchors and are skipped.
	writeFile(t, filepath.Join(f.machineDir, "org-root.pem"), pemOf(pki["machine"].Root.Cert))
	writeFile(t, filepath.Join(f.machineDir, "signing", "sign-root.DER"), pki["machine-signing"].Root.Cert.Raw)
	writeFile(t, filepath.Join(f.machineDir, "encryption", "enc-bundle.crt"), pemOf(pki["machine-encryption"].Root.Cert, pki["machine-encryption"].Intermediate.Cert))
	writeFile(t, filepath.Join(f.machineDir, "pinned-leaf.cer"), pemOf(f.leaves["pinned"].Cert))
	writeFile(t, filepath.Join(f.machineDir, "README"), []byte("Put the organisation's CA certificates here.\n"))
	writeFile(t, filepath.Join(f.machineDir, ".hidden.pem"), []byte("not a certificate"))
	writeFile(t, filepath.Join(f.machineDir, "other", "ignored.pem"), []byte("not a certificate"))
	// The configured paths: a file of any name, a directory, ...
	f.anchorsFile = filepath.Join(f.confDir, "org-root")
	writeFile(t, f.anchorsFile, pemOf(pki["conf-file"].Root.Cert))
	f.anchorsDir = filepath.Join(f.confDir, "anchors")
	writeFile(t, filepath.Join(f.anchorsDir, "a.pem"), pemOf(pki["conf-dir"].Root.Cert))
	f.signingFile = filepath.Join(f.confDir, "signing.der")
	writeFile(t, f.signingFile, pki["conf-signing"].Root.Cert.Raw)
	f.encryptionDir = filepath.Join(f.confDir, "encryption")
	writeFile(t, filepath.Join(f.encryptionDir, "enc.pem"), pemOf(pki["conf-encryption"].Root.Cert))
	return f
}

func (f *trustFixture) all() TrustSources {
	return TrustSources{
		User:              true,
		MachineDir:        f.machineDir,
		Anchors:           []string{f.anchorsFile, f.anchorsDir},
		SigningAnchors:    []string{f.signingFile},
		EncryptionAnchors: []string{f.encryptionDir},
	}
}

func TestTrustPoolSources(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newTrustFixture(t)
	all := f.all()
	noUser := all
	noUser.User = false

	tests := []struct {
		name       string
		src        TrustSources
		signing    []string // leaves that verify against the signing pool
		encryption []string // ... against the encryption pool
	}{
		{"nothing", TrustSources{}, nil, nil},
		{"user", TrustSources{User: true}, []string{"user"}, []string{"user"}},
		{"machine directory", TrustSources{MachineDir: f.machineDir},
			[]string{"machine", "machine-signing", "pinned"}, []string{"machine", "machine-encryption", "pinned"}},
		{"missing machine directory", TrustSources{MachineDir: filepath.Join(f.confDir, "nonexistent")}, nil, nil},
		{"anchors file", TrustSources{Anchors: []string{f.anchorsFile}}, []string{"conf-file"}, []string{"conf-file"}},
		{"anchors directory", TrustSources{Anchors: []string{f.anchorsDir}}, []string{"conf-dir"}, []string{"conf-dir"}},
		{"signing anchors", TrustSources{SigningAnchors: []string{f.signingFile}}, []string{"conf-signing"}, nil},
		{"encryption anchors", TrustSources{EncryptionAnchors: []string{f.encryptionDir}}, nil, []string{"conf-encryption"}},
		{"all", all,
			[]string{"conf-dir", "conf-file", "conf-signing", "machine", "machine-signing", "pinned", "user"},
			[]string{"conf-dir", "conf-encryption", "conf-file", "machine", "machine-encryption", "pinned", "user"}},
		{"user anchors off", noUser,
			[]string{"conf-dir", "conf-file", "conf-signing", "machine", "machine-signing", "pinned"},
			[]string{"conf-dir", "conf-encryption", "conf-file", "machine", "machine-encryption", "pinned"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, s := range []struct {
				scope Scope
				want  []string
			}{{ScopeSigning, tc.signing}, {ScopeEncryption, tc.encryption}} {
				pool, err := f.book.TrustPool(ctx, tc.src, s.scope)
				if err != nil {
					t.Fatalf("%v: %v", s.scope, err)
				}
				var got []string
				for name, leaf := range f.leaves {
					if verifies(pool, leaf) {
						got = append(got, name)
					}
				}
				sort.Strings(got)
				if !slices.Equal(got, s.want) {
					t.Errorf("%v pool vouches for %v, want %v", s.scope, got, s.want)
				}
			}
		})
	}
}

func TestTrustAnchorsMerged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newTrustFixture(t)
	// The user's root is also a configured signing anchor, and the
	// machine's signing root is also in encryption/.
	userRoot, signRoot := f.pki["user"].Root.Cert, f.pki["machine-signing"].Root.Cert
	writeFile(t, filepath.Join(f.confDir, "user-root.pem"), pemOf(userRoot))
	writeFile(t, filepath.Join(f.machineDir, "encryption", "sign-root.pem"), pemOf(signRoot))
	src := f.all()
	src.SigningAnchors = append(src.SigningAnchors, filepath.Join(f.confDir, "user-root.pem"))

	anchors, err := f.book.TrustAnchors(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	byFP := map[string]Anchor{}
	for _, a := range anchors {
		if _, dup := byFP[a.Fingerprint()]; dup {
			t.Errorf("%s listed twice", a.Certificate.Subject)
		}
		byFP[a.Fingerprint()] = a
	}
	// 1 user + machine: root, signing root, encryption root and
	// intermediate, pinned leaf + configured: file, dir, signing,
	// encryption.
	if len(anchors) != 10 {
		t.Errorf("%d anchors, want 10", len(anchors))
	}
	if a := byFP[Fingerprint(userRoot)]; a.Scope != ScopeAll || !slices.Equal(a.Sources, []string{SourceUser, SourcePolicy}) {
		t.Errorf("user root also a policy anchor: scope %v, sources %v", a.Scope, a.Sources)
	}
	if a := byFP[Fingerprint(signRoot)]; a.Scope != ScopeAll || !slices.Equal(a.Sources, []string{SourcePolicy}) {
		t.Errorf("machine root in signing/ and encryption/: scope %v, sources %v", a.Scope, a.Sources)
	}
	if a := byFP[Fingerprint(f.leaves["pinned"].Cert)]; a.Scope != ScopeAll || a.Certificate.IsCA {
		t.Errorf("pinned leaf: %+v", a)
	}
	if anchors[0].Sources[0] != SourceUser {
		t.Errorf("first anchor from %v, want the user's first", anchors[0].Sources)
	}
	// The result is the caller's to change.
	anchors[0].Sources[0] = "mangled"
	again, _ := f.book.TrustAnchors(ctx, src)
	if again[0].Sources[0] != SourceUser {
		t.Error("TrustAnchors hands out its cache")
	}
	// Without the user's anchors, the user root stays as a signing anchor.
	src.User = false
	anchors, err = f.book.TrustAnchors(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range anchors {
		if a.Certificate.Equal(userRoot) && (a.Scope != ScopeSigning || !slices.Equal(a.Sources, []string{SourcePolicy})) {
			t.Errorf("user root without user anchors: scope %v, sources %v", a.Scope, a.Sources)
		}
	}
}

func TestTrustPoolSystemRoots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sys, err := x509.SystemCertPool()
	if err != nil {
		t.Fatalf("no system roots (apt-get install -y ca-certificates): %v", err)
	}
	// A root of the system's store (Debian: /etc/ssl/certs), found by
	// reading the bundle and keeping a certificate the system pool holds.
	data, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatalf("no system bundle (apt-get install -y ca-certificates): %v", err)
	}
	certs, _ := parseCertificates(data)
	var sysRoot *x509.Certificate
	for _, c := range certs {
		if _, err := c.Verify(x509.VerifyOptions{Roots: sys, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
			sysRoot = c
			break
		}
	}
	if sysRoot == nil {
		t.Fatal("no certificate of the system bundle is in the system pool")
	}
	b := openBook(t)
	pki := testpki.New(t)
	leaf := pki.Issue(t, testpki.Options{Email: "a@example.org"})
	if _, err := b.AddAnchors(ctx, []*x509.Certificate{pki.Root.Cert}); err != nil {
		t.Fatal(err)
	}
	for _, system := range []bool{false, true} {
		for _, scope := range []Scope{ScopeSigning, ScopeEncryption} {
			for _, user := range []bool{false, true} {
				pool, err := b.TrustPool(ctx, TrustSources{System: system, User: user}, scope)
				if err != nil {
					t.Fatal(err)
				}
				_, verr := sysRoot.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
				if (verr == nil) != system {
					t.Errorf("System %v, %v: system root verifies = %v", system, scope, verr == nil)
				}
				if verifies(pool, leaf) != user {
					t.Errorf("System %v, User %v, %v: user's leaf verifies = %v", system, user, scope, !user)
				}
			}
		}
	}
}

func TestTrustPoolCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newTrustFixture(t)
	src := f.all()
	newPKI := testpki.New(t)
	newLeaf := newPKI.Issue(t, testpki.Options{Email: "new@example.org"})
	// Every change also moves the modification times on, so that the test
	// does not depend on the file system's timestamp resolution.
	tick := time.Now().Add(time.Hour)
	touch := func(paths ...string) {
		for _, p := range paths {
			tick = tick.Add(time.Second)
			if err := os.Chtimes(p, tick, tick); err != nil {
				t.Fatal(err)
			}
		}
	}
	pools := map[Scope]*x509.CertPool{}
	pool := func(src TrustSources, scope Scope) *x509.CertPool {
		t.Helper()
		p, err := f.book.TrustPool(ctx, src, scope)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	steps := []struct {
		name     string
		change   func()
		reused   bool // both scopes' pools are the previous ones
		signing  bool // newLeaf verifies with the signing pool
		encrypts bool // ... with the encryption pool
	}{
		{"first", func() {}, false, false, false},
		{"unchanged", func() {}, true, false, false},
		{"other sources and back", func() {
			other := pool(TrustSources{User: true}, ScopeSigning)
			if other == pools[ScopeSigning] {
				t.Error("other sources share the pool")
			}
			if again := pool(TrustSources{User: true}, ScopeSigning); again != other {
				t.Error("other sources' pool not reused")
			}
			if r, _ := f.book.Roots(ctx, false); r != other {
				t.Error("Roots(false) is not TrustPool({User: true}, ScopeSigning)")
			}
		}, true, false, false},
		{"README edited", func() {
			writeFile(t, filepath.Join(f.machineDir, "README"), []byte("changed\n"))
			touch(filepath.Join(f.machineDir, "README"))
		}, true, false, false},
		{"file added to encryption/", func() {
			p := filepath.Join(f.machineDir, "encryption", "new.pem")
			writeFile(t, p, pemOf(newPKI.Root.Cert))
			touch(p, filepath.Dir(p))
		}, false, false, true},
		{"file removed from encryption/", func() {
			p := filepath.Join(f.machineDir, "encryption", "new.pem")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			touch(filepath.Dir(p))
		}, false, false, false},
		{"machine file rewritten in place", func() {
			p := filepath.Join(f.machineDir, "org-root.pem")
			fh, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fh.Write(pemOf(newPKI.Root.Cert)); err != nil {
				t.Fatal(err)
			}
			fh.Close()
			touch(p) // not the directory
		}, false, true, true},
		{"machine directory removed", func() {
			if err := os.RemoveAll(f.machineDir); err != nil {
				t.Fatal(err)
			}
		}, false, false, false},
		{"machine signing/ created", func() {
			p := filepath.Join(f.machineDir, "signing", "new.pem")
			writeFile(t, p, pemOf(newPKI.Root.Cert))
			touch(p, filepath.Dir(p), f.machineDir)
		}, false, true, false},
		{"file removed from machine signing/", func() {
			p := filepath.Join(f.machineDir, "signing", "new.pem")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			touch(filepath.Dir(p))
		}, false, false, false},
		{"configured signing file replaced", func() {
			writeFile(t, f.signingFile, newPKI.Root.Cert.Raw)
			touch(f.signingFile)
		}, false, true, false},
		{"file added to a configured directory", func() {
			p := filepath.Join(f.encryptionDir, "new.der")
			writeFile(t, p, newPKI.Root.Cert.Raw)
			touch(p, f.encryptionDir)
		}, false, true, true},
		{"user anchor added", func() {
			if _, err := f.book.AddAnchors(ctx, []*x509.Certificate{f.leaves["pinned"].Chain[0]}); err != nil {
				t.Fatal(err)
			}
		}, false, true, true},
		{"unchanged again", func() {}, true, true, true},
	}
	for _, s := range steps {
		s.change()
		sp, ep := pool(src, ScopeSigning), pool(src, ScopeEncryption)
		if reused := sp == pools[ScopeSigning] && ep == pools[ScopeEncryption]; reused != s.reused {
			t.Errorf("%s: pools reused = %v, want %v", s.name, reused, s.reused)
		}
		if sp == ep {
			t.Errorf("%s: both scopes share a pool", s.name)
		}
		if verifies(sp, newLeaf) != s.signing || verifies(ep, newLeaf) != s.encrypts {
			t.Errorf("%s: new leaf verifies with signing %v, encryption %v; want %v, %v",
				s.name, verifies(sp, newLeaf), verifies(ep, newLeaf), s.signing, s.encrypts)
		}
		pools[ScopeSigning], pools[ScopeEncryption] = sp, ep
	}
}

func TestTrustCorruptFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := openBook(t)
	machine := filepath.Join(t.TempDir(), "trust")
	good, other := testpki.New(t), testpki.New(t)
	leaf := good.Issue(t, testpki.Options{Email: "a@example.org"})
	otherLeaf := other.Issue(t, testpki.Options{Email: "b@example.org"})

	writeFile(t, filepath.Join(machine, "good.pem"), pemOf(good.Root.Cert))
	garbage := filepath.Join(machine, "garbage.pem")
	writeFile(t, garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	derGarbage := filepath.Join(machine, "garbage.der")
	writeFile(t, derGarbage, []byte{0x30, 0x03, 0x01, 0x02})
	keyOnly := filepath.Join(machine, "key.pem")
	writeFile(t, keyOnly, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
	// A bundle with one good and one broken certificate: the good one counts.
	half := filepath.Join(machine, "signing", "half.pem")
	broken := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}})
	writeFile(t, half, append(pemOf(other.Root.Cert), broken...))
	big := filepath.Join(machine, "big.pem")
	writeFile(t, big, append(pemOf(other.Root.Cert), bytes.Repeat([]byte("\n"), maxAnchorFile)...))
	loop := filepath.Join(machine, "loop.pem")
	if err := os.Symlink("loop2.crt", loop); err != nil {
		t.Fatal(err)
	}
	loop2 := filepath.Join(machine, "loop2.crt")
	if err := os.Symlink("loop.pem", loop2); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(machine, "dangling.cer")
	if err := os.Symlink("nowhere.pem", dangling); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	src := TrustSources{MachineDir: machine, Anchors: []string{missing, "relative.pem"}}

	want := []string{big, dangling, derGarbage, garbage, keyOnly, loop, loop2, half, missing, "relative.pem"}
	sort.Strings(want)
	for i := range 2 { // built, then from the cache: reported both times
		anchors, err := b.TrustAnchors(ctx, src)
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("call %d: err %v, want ErrCorrupt", i, err)
		}
		if got := corruptPaths(err); !slices.Equal(got, want) {
			t.Errorf("call %d: corrupt %v\nwant %v", i, got, want)
		}
		if len(anchors) != 2 {
			t.Errorf("call %d: %d anchors, want the good root and the bundle's", i, len(anchors))
		}
		for _, scope := range []Scope{ScopeSigning, ScopeEncryption} {
			pool, err := b.TrustPool(ctx, src, scope)
			if !errors.Is(err, ErrCorrupt) || pool == nil {
				t.Fatalf("TrustPool = %v, %v", pool, err)
			}
			if !verifies(pool, leaf) {
				t.Errorf("%v: the good anchor is not trusted", scope)
			}
			if verifies(pool, otherLeaf) != (scope == ScopeSigning) {
				t.Errorf("%v: the bundle's good certificate verifies = %v", scope, !(scope == ScopeSigning))
			}
		}
	}
	// A machine "directory" that is a file is reported too.
	notDir := filepath.Join(t.TempDir(), "file")
	writeFile(t, notDir, pemOf(good.Root.Cert))
	_, err := b.TrustAnchors(ctx, TrustSources{MachineDir: notDir})
	if got := corruptPaths(err); !slices.Equal(got, []string{notDir}) {
		t.Errorf("machine dir a file: corrupt %v", got)
	}
}

func TestRemoveAnchorsKeepsPolicyAnchor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := openBook(t)
	pki := testpki.New(t)
	leaf := pki.Issue(t, testpki.Options{Email: "a@example.org"})
	machine := filepath.Join(t.TempDir(), "trust")
	writeFile(t, filepath.Join(machine, "org.pem"), pemOf(pki.Root.Cert))
	src := TrustSources{User: true, MachineDir: machine}
	if _, err := b.AddAnchors(ctx, []*x509.Certificate{pki.Root.Cert}); err != nil {
		t.Fatal(err)
	}
	anchors, err := b.TrustAnchors(ctx, src)
	if err != nil || len(anchors) != 1 || !slices.Equal(anchors[0].Sources, []string{SourceUser, SourcePolicy}) {
		t.Fatalf("TrustAnchors = %+v, %v", anchors, err)
	}
	removed, err := b.RemoveAnchors(ctx, []string{Fingerprint(pki.Root.Cert)})
	if err != nil || len(removed) != 1 {
		t.Fatalf("RemoveAnchors = %v, %v", removed, err)
	}
	if again, err := b.RemoveAnchors(ctx, []string{Fingerprint(pki.Root.Cert)}); err != nil || len(again) != 0 {
		t.Fatalf("RemoveAnchors again = %v, %v", again, err)
	}
	if _, err := os.Stat(filepath.Join(machine, "org.pem")); err != nil {
		t.Fatalf("the policy file went: %v", err)
	}
	anchors, err = b.TrustAnchors(ctx, src)
	if err != nil || len(anchors) != 1 || anchors[0].Scope != ScopeAll || !slices.Equal(anchors[0].Sources, []string{SourcePolicy}) {
		t.Fatalf("after RemoveAnchors: %+v, %v", anchors, err)
	}
	for _, scope := range []Scope{ScopeSigning, ScopeEncryption} {
		pool, err := b.TrustPool(ctx, src, scope)
		if err != nil || !verifies(pool, leaf) {
			t.Errorf("%v: the policy anchor is no longer trusted (%v)", scope, err)
		}
	}
	if user, err := b.Anchors(ctx); err != nil || len(user) != 0 {
		t.Errorf("user anchors = %d, %v", len(user), err)
	}
}

func TestScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scope   Scope
		strings []string
		str     string
	}{
		{0, []string{}, "none"},
		{ScopeSigning, []string{"signing"}, "signing"},
		{ScopeEncryption, []string{"encryption"}, "encryption"},
		{ScopeAll, []string{"signing", "encryption"}, "signing+encryption"},
	}
	for _, tc := range tests {
		if got := tc.scope.Strings(); !slices.Equal(got, tc.strings) || got == nil {
			t.Errorf("%d.Strings() = %#v, want %#v", tc.scope, got, tc.strings)
		}
		if got := tc.scope.String(); got != tc.str {
			t.Errorf("%d.String() = %q, want %q", tc.scope, got, tc.str)
		}
	}
	b := openBook(t)
	for _, bad := range []Scope{0, 4, ScopeAll | 8} {
		if _, err := b.TrustPool(context.Background(), TrustSources{User: true}, bad); err == nil {
			t.Errorf("scope %d accepted", bad)
		}
	}
	// ScopeAll: only anchors that have both scopes.
	machine := filepath.Join(t.TempDir(), "trust")
	both, sign := testpki.New(t), testpki.New(t)
	writeFile(t, filepath.Join(machine, "both.pem"), pemOf(both.Root.Cert))
	writeFile(t, filepath.Join(machine, "signing", "sign.pem"), pemOf(sign.Root.Cert))
	pool, err := b.TrustPool(context.Background(), TrustSources{MachineDir: machine}, ScopeAll)
	if err != nil {
		t.Fatal(err)
	}
	if !verifies(pool, both.Issue(t, testpki.Options{Email: "a@example.org"})) || verifies(pool, sign.Issue(t, testpki.Options{Email: "b@example.org"})) {
		t.Error("ScopeAll pool")
	}
}

func TestTrustConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newTrustFixture(t)
	src := f.all()
	extra := testpki.New(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				if i == 0 && j%5 == 0 {
					if _, err := f.book.AddAnchors(ctx, []*x509.Certificate{extra.Root.Cert}); err != nil {
						t.Error(err)
					}
					if _, err := f.book.RemoveAnchors(ctx, []string{Fingerprint(extra.Root.Cert)}); err != nil {
						t.Error(err)
					}
				}
				pool, err := f.book.TrustPool(ctx, src, Scope(1+j%2))
				if err != nil || !verifies(pool, f.leaves["machine"]) {
					t.Errorf("TrustPool = %v", err)
				}
				if _, err := f.book.TrustAnchors(ctx, src); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}
