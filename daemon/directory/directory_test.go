package directory

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"github.com/smimed/smimed/internal/testldap"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/cms"
)

// fixture is a slapd with alice (userCertificate;binary, two certificates),
// bob (userSMIMECertificate) and carol (the same certificate in both
// attributes).
type fixture struct {
	srv                 *testldap.Server
	alice1, alice2, bob *x509.Certificate
	carol               *x509.Certificate
	pki                 *testpki.PKI
}

var (
	pkiOnce sync.Once
	pkiVal  *fixturePKI
)

type fixturePKI struct {
	pki                        *testpki.PKI
	alice1, alice2, bob, carol *x509.Certificate
}

// certs issues the test certificates once per test binary (RSA keys are
// slow to make).
func certs(tb testing.TB) *fixturePKI {
	pkiOnce.Do(func() {
		p := testpki.New(tb)
		pkiVal = &fixturePKI{
			pki:    p,
			alice1: p.Issue(tb, testpki.Options{Email: "alice@example.org", Key: testpki.P256}).Cert,
			alice2: p.Issue(tb, testpki.Options{Email: "alice@example.org", Key: testpki.P256}).Cert,
			bob:    p.Issue(tb, testpki.Options{Email: "bob@example.org", Key: testpki.P256}).Cert,
			carol:  p.Issue(tb, testpki.Options{Email: "carol@example.org", Key: testpki.P256}).Cert,
		}
	})
	return pkiVal
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	c := certs(tb)
	f := &fixture{srv: testldap.Start(tb, false), alice1: c.alice1, alice2: c.alice2, bob: c.bob, carol: c.carol, pki: c.pki}
	f.srv.Person(tb, "alice", "alice@example.org", map[string][]string{
		"userCertificate;binary": {string(f.alice1.Raw), string(f.alice2.Raw)},
	})
	bobBlob, err := cms.MarshalCertsOnly([]*x509.Certificate{f.bob})
	if err != nil {
		tb.Fatal(err)
	}
	f.srv.Person(tb, "bob", "bob@example.org", map[string][]string{
		"userSMIMECertificate": {string(bobBlob)},
	})
	carolBlob, err := cms.MarshalCertsOnly([]*x509.Certificate{f.carol})
	if err != nil {
		tb.Fatal(err)
	}
	f.srv.Person(tb, "carol", "Carol@Example.org", map[string][]string{
		"userCertificate;binary": {string(f.carol.Raw)},
		"userSMIMECertificate":   {string(carolBlob)},
	})
	f.srv.Person(tb, "dave", "dave@example.org", nil)
	return f
}

func mustNew(tb testing.TB, o Options) *Directory {
	tb.Helper()
	d, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func sameCerts(t *testing.T, got []*x509.Certificate, want ...*x509.Certificate) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d certificates, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Raw, want[i].Raw) {
			t.Fatalf("certificate %d: got %s, want %s", i, got[i].Subject, want[i].Subject)
		}
	}
}

func TestLookupOpenLDAP(t *testing.T) {
	f := newFixture(t)
	d := mustNew(t, Options{Servers: []string{f.srv.URL}})
	ctx := context.Background()
	for _, tc := range []struct {
		email string
		want  []*x509.Certificate
	}{
		{"alice@example.org", []*x509.Certificate{f.alice1, f.alice2}},
		{"ALICE@example.org", []*x509.Certificate{f.alice1, f.alice2}},
		{"bob@example.org", []*x509.Certificate{f.bob}},
		{"carol@example.org", []*x509.Certificate{f.carol}}, // both attributes, one certificate
		{"dave@example.org", nil},
		{"nobody@example.org", nil},
		{"*)(|(mail=*@example.org", nil}, // filter injection
		{"*@example.org", nil},
	} {
		t.Run(tc.email, func(t *testing.T) {
			got, err := d.Lookup(ctx, tc.email)
			if err != nil && !errors.Is(err, ErrInvalidAddress) {
				t.Fatal(err)
			}
			sameCerts(t, got, tc.want...)
		})
	}
}

func TestLookupURLFilterAndScope(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// The URL's filter narrows the search: only bob is a match.
	d := mustNew(t, Options{Servers: []string{f.srv.URL + "??sub?(uid=bob)"}})
	got, err := d.Lookup(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	sameCerts(t, got)
	got, err = d.Lookup(ctx, "bob@example.org")
	if err != nil {
		t.Fatal(err)
	}
	sameCerts(t, got, f.bob)
	// Scope one below the suffix sees only ou=people, not the people.
	d = mustNew(t, Options{Servers: []string{f.srv.URL + "??one"}})
	got, err = d.Lookup(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	sameCerts(t, got)
}

func TestBindOnlyServer(t *testing.T) {
	c := certs(t)
	srv := testldap.Start(t, true)
	srv.Person(t, "alice", "alice@example.org", map[string][]string{
		"userCertificate;binary": {string(c.alice1.Raw)},
	})
	ctx := context.Background()

	// Anonymous: refused.
	d := mustNew(t, Options{Servers: []string{srv.URL}})
	got, err := d.Lookup(ctx, "alice@example.org")
	if !errors.Is(err, ErrSearch) || len(got) != 0 {
		t.Fatalf("anonymous lookup: %v, %d certificates; want ErrSearch", err, len(got))
	}

	// The right password, from the callback; zeroed afterwards.
	var handed [][]byte
	var mu sync.Mutex
	creds := func(pw string) CredentialsFunc {
		return func(ctx context.Context, serverURL string) (string, []byte, error) {
			if serverURL != srv.URL {
				t.Errorf("callback for %q", serverURL)
			}
			b := []byte(pw)
			mu.Lock()
			handed = append(handed, b)
			mu.Unlock()
			return testldap.ReaderDN, b, nil
		}
	}
	d = mustNew(t, Options{Servers: []string{srv.URL}, Credentials: creds(testldap.ReaderPW)})
	got, err = d.Lookup(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	sameCerts(t, got, c.alice1)

	// A wrong password: ErrBind, and the message does not show it.
	const wrong = "Wrong-Password-99"
	d = mustNew(t, Options{Servers: []string{srv.URL}, Credentials: creds(wrong)})
	got, err = d.Lookup(ctx, "alice@example.org")
	var se *ServerError
	if !errors.Is(err, ErrBind) || !errors.As(err, &se) || se.Server != srv.URL || len(got) != 0 {
		t.Fatalf("wrong password: %v, %d certificates; want ErrBind from %s", err, len(got), srv.URL)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), testldap.ReaderPW) {
		t.Fatalf("error shows the password: %v", err)
	}
	t.Logf("wrong password: %v", err)
	for i, b := range handed {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("password %d not zeroed: %q", i, b)
		}
	}

	// A failing callback: ErrBind with its cause.
	boom := errors.New("key store locked")
	d = mustNew(t, Options{Servers: []string{srv.URL}, Credentials: func(context.Context, string) (string, []byte, error) {
		return "", nil, boom
	}})
	if _, err := d.Lookup(ctx, "alice@example.org"); !errors.Is(err, ErrBind) || !errors.Is(err, boom) {
		t.Fatalf("failing callback: %v", err)
	}
}

func TestSeveralServersMergeAndPartialFailure(t *testing.T) {
	f := newFixture(t)
	second := testldap.Start(t, true)
	second.Person(t, "alice", "alice@example.org", map[string][]string{
		"userCertificate;binary": {string(f.alice2.Raw), string(f.carol.Raw)},
	})
	down := "ldap://" + freeAddr(t) + "/" + testldap.Suffix
	creds := func(_ context.Context, u string) (string, []byte, error) {
		if u == second.URL {
			return testldap.ReaderDN, []byte(testldap.ReaderPW), nil
		}
		return "", nil, nil
	}
	d := mustNew(t, Options{Servers: []string{down, f.srv.URL, second.URL}, Credentials: creds})
	got, err := d.Lookup(context.Background(), "alice@example.org")
	// alice2 is on both servers: once.
	sameCerts(t, got, f.alice1, f.alice2, f.carol)
	var le *LookupError
	if !errors.As(err, &le) || le.Address != "alice@example.org" || len(le.Servers) != 1 ||
		le.Servers[0].Server != down || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v; want a LookupError with %s unreachable", err, down)
	}
	// An answer with an error is not cached: the next lookup asks again.
	if _, err := d.Lookup(context.Background(), "alice@example.org"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("second lookup: %v", err)
	}
}

func TestUnreachable(t *testing.T) {
	down := "ldap://" + freeAddr(t) + "/" + testldap.Suffix
	d := mustNew(t, Options{Servers: []string{down}, DialTimeout: 500 * time.Millisecond})
	start := time.Now()
	got, err := d.Lookup(context.Background(), "alice@example.org")
	var se *ServerError
	if !errors.Is(err, ErrUnreachable) || !errors.As(err, &se) || se.Server != down || len(got) != 0 {
		t.Fatalf("closed port: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("closed port took %v", el)
	}

	// A server that accepts and never answers: the search time limit.
	ln, err := listenSilent(t)
	if err != nil {
		t.Fatal(err)
	}
	d = mustNew(t, Options{Servers: []string{"ldap://" + ln + "/"}, SearchTimeout: 500 * time.Millisecond})
	start = time.Now()
	_, err = d.Lookup(context.Background(), "alice@example.org")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("silent server: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("silent server took %v", el)
	}

	// The caller's context ends first.
	d = mustNew(t, Options{Servers: []string{"ldap://" + ln + "/"}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = d.Lookup(ctx, "alice@example.org")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("cancelled lookup took %v", el)
	}
}

func TestCacheAndExpiry(t *testing.T) {
	f := newFixture(t)
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	d := mustNew(t, Options{Servers: []string{f.srv.URL}, Now: clock, DialTimeout: 500 * time.Millisecond})
	ctx := context.Background()
	if got, err := d.Lookup(ctx, "bob@example.org"); err != nil || len(got) != 1 {
		t.Fatalf("%v %d", err, len(got))
	}
	if got, err := d.Lookup(ctx, "nobody@example.org"); err != nil || len(got) != 0 {
		t.Fatalf("%v %d", err, len(got))
	}
	f.srv.Stop(t)

	// Within the TTL: from the cache, positive (case-insensitive) and negative.
	now.Add(int64(30 * time.Minute))
	got, err := d.Lookup(ctx, "Bob@Example.org")
	if err != nil {
		t.Fatalf("cached: %v", err)
	}
	sameCerts(t, got, f.bob)
	now.Store(time.Date(2026, 1, 1, 0, 4, 0, 0, time.UTC).UnixNano())
	if got, err := d.Lookup(ctx, "nobody@example.org"); err != nil || len(got) != 0 {
		t.Fatalf("negative cache: %v %d", err, len(got))
	}
	// Negative answer expired after 5 minutes, positive after an hour.
	now.Store(time.Date(2026, 1, 1, 0, 6, 0, 0, time.UTC).UnixNano())
	if _, err := d.Lookup(ctx, "nobody@example.org"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("negative expiry: %v", err)
	}
	if _, err := d.Lookup(ctx, "bob@example.org"); err != nil {
		t.Fatalf("positive still cached: %v", err)
	}
	now.Store(time.Date(2026, 1, 1, 1, 0, 1, 0, time.UTC).UnixNano())
	if _, err := d.Lookup(ctx, "bob@example.org"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("positive expiry: %v", err)
	}
	// A separate Directory has its own (empty) cache.
	d2 := mustNew(t, Options{Servers: []string{f.srv.URL}, DialTimeout: 500 * time.Millisecond})
	if _, err := d2.Lookup(ctx, "bob@example.org"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("second directory: %v", err)
	}
}

func TestConcurrentLookupsShareOneSearch(t *testing.T) {
	f := newFixture(t)
	var calls atomic.Int32
	release := make(chan struct{})
	d := mustNew(t, Options{Servers: []string{f.srv.URL}, Credentials: func(context.Context, string) (string, []byte, error) {
		calls.Add(1)
		<-release
		return "", nil, nil
	}})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			got, err := d.Lookup(context.Background(), "alice@example.org")
			if err == nil && len(got) != 2 {
				err = errors.New("wrong number of certificates")
			}
			errs <- err
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d searches, want 1", n)
	}
}

func TestEntryCertificatesActiveDirectory(t *testing.T) {
	c := certs(t)
	blob, err := cms.MarshalCertsOnly([]*x509.Certificate{c.bob, c.carol})
	if err != nil {
		t.Fatal(err)
	}
	// Active Directory: userCertificate without ;binary, names in any case,
	// a value that is no certificate (skipped).
	e := &ldap.Entry{DN: "CN=Alice,OU=Users,DC=corp,DC=example", Attributes: []*ldap.EntryAttribute{
		{Name: "mail", Values: []string{"alice@example.org"}, ByteValues: [][]byte{[]byte("alice@example.org")}},
		{Name: "userCertificate", ByteValues: [][]byte{c.alice1.Raw, []byte("junk")}},
		{Name: "USERCERTIFICATE;binary", ByteValues: [][]byte{c.alice2.Raw}},
		{Name: "userSMIMECertificate", ByteValues: [][]byte{blob, []byte("junk")}},
	}}
	sameCerts(t, entryCertificates(e), c.alice1, c.alice2, c.bob, c.carol)
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in     string
		addr   string
		base   string
		scope  int
		filter string
		tls    bool
	}{
		{"ldap://127.0.0.1:3890/dc=example,dc=org", "127.0.0.1:3890", "dc=example,dc=org", ldap.ScopeWholeSubtree, "", false},
		{"ldaps://ldap.example.org", "ldap.example.org:636", "", ldap.ScopeWholeSubtree, "", true},
		{"ldap://h/ou=a%20b,dc=x??one", "h:389", "ou=a b,dc=x", ldap.ScopeSingleLevel, "", false},
		{"ldap://h/dc=x?cn?base?(objectClass=person)", "h:389", "dc=x", ldap.ScopeBaseObject, "(objectClass=person)", false},
		{"ldap://h/dc=x??sub?objectClass=person?x-ext", "h:389", "dc=x", ldap.ScopeWholeSubtree, "(objectClass=person)", false},
		{"ldap://[::1]:3890/dc=x", "[::1]:3890", "dc=x", ldap.ScopeWholeSubtree, "", false},
	} {
		s, err := ParseURL(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if s.Addr != tc.addr || s.BaseDN != tc.base || s.Scope != tc.scope || s.Filter != tc.filter || s.TLS != tc.tls {
			t.Fatalf("%s: %+v", tc.in, s)
		}
	}
	for _, bad := range []string{
		"http://h/", "ldap:///dc=x", "ldap://h/dc=x??deep", "ldap://h/dc=x??sub?(cn=", "ldap://h/dc=x????!bindname=x",
		"ldap://u:p@h/", "ldap://h/notadn",
	} {
		if _, err := ParseURL(bad); err == nil {
			t.Fatalf("%s: accepted", bad)
		}
	}
	if _, err := New(Options{Servers: []string{"ldap:///"}}); err == nil {
		t.Fatal("New accepted a URL without host")
	}
}

func TestInvalidAddress(t *testing.T) {
	d := mustNew(t, Options{})
	for _, a := range []string{"", "  ", "no-at-sign", "a@b\r\nx"} {
		if _, err := d.Lookup(context.Background(), a); !errors.Is(err, ErrInvalidAddress) {
			t.Fatalf("%q: %v", a, err)
		}
	}
}
