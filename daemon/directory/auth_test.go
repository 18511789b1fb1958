package directory

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testldap"
	"github.com/smimed/smimed/internal/testpki"
)

// TestParseURLBindname: the RFC 4516 bindname extension, plain or
// critical, percent-decoded; other critical extensions and malformed
// bindnames refuse the URL, other non-critical ones are ignored.
func TestParseURLBindname(t *testing.T) {
	for _, tc := range []struct {
		in, bindDN, origin string
	}{
		{"ldap://h/dc=x", "", "ldap://h:389"},
		{"ldap://h/dc=x??sub??bindname=cn=reader%2cdc=example%2cdc=org", "cn=reader,dc=example,dc=org", "ldap://h:389"},
		{"ldap://h/dc=x??sub??!bindname=cn=reader%2Cdc=example%2Cdc=org", "cn=reader,dc=example,dc=org", "ldap://h:389"},
		{"ldap://h/dc=x????BindName=cn=reader%2cdc=x", "cn=reader,dc=x", "ldap://h:389"},
		// Escapes in the value: a space, a question mark, and an escaped
		// comma inside an RDN value (\2c in the DN, %5c2c in the URL).
		{"ldaps://LDAP.Example.ORG/dc=x??one??bindname=cn=Reader%20One%3f%2cou=svc%2cdc=x", "cn=Reader One?,ou=svc,dc=x", "ldaps://ldap.example.org:636"},
		{"ldap://h:3890/dc=x??sub??bindname=cn=a%5c2cb%2cdc=x", `cn=a\2cb,dc=x`, "ldap://h:3890"},
		// Non-critical unknown extensions are ignored, before or after.
		{"ldap://[::1]:3890/dc=x????x-ext=1,bindname=cn=r%2cdc=x,1.2.3=abc", "cn=r,dc=x", "ldap://[::1]:3890"},
		{"ldap://h/dc=x????x-unknown", "", "ldap://h:389"},
		{"ldap://h/dc=x????", "", "ldap://h:389"},
	} {
		s, err := ParseURL(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if s.BindDN != tc.bindDN || s.Origin() != tc.origin || s.URL != tc.in {
			t.Errorf("%s: BindDN %q, Origin %q; want %q, %q", tc.in, s.BindDN, s.Origin(), tc.bindDN, tc.origin)
		}
	}
	for _, bad := range []string{
		"ldap://h/dc=x????!x-unknown",                                // unknown critical extension
		"ldap://h/dc=x????!1.3.6.1.4.1.1466.20037",                   // StartTLS as a critical extension: not supported
		"ldap://h/dc=x????x-a=1,!x-b=2",                              // the critical one after a harmless one
		"ldap://h/dc=x????bindname",                                  // no DN
		"ldap://h/dc=x????bindname=",                                 // empty DN
		"ldap://h/dc=x????!bindname=",                                // empty DN, critical
		"ldap://h/dc=x????bindname=notadn",                           // not a DN
		"ldap://h/dc=x????bindname=cn=a%2ccn",                        // the second RDN has no value
		"ldap://h/dc=x????bindname=cn=a,dc=x",                        // an unescaped comma splits the DN: "dc=x" is a second extension type
		"ldap://h/dc=x????bindname=cn=a%2cdc=x,bindname=cn=b%2cdc=x", // twice
		"ldap://h/dc=x????bindname=cn=a%zz",                          // bad escape
		"ldap://h/dc=x????=x",                                        // no type
	} {
		if s, err := ParseURL(bad); err == nil {
			t.Errorf("%s: accepted (BindDN %q)", bad, s.BindDN)
		} else {
			t.Logf("%s: %v", bad, err)
		}
	}
}

// recordingCreds returns a CredentialsFunc answering with the URL's
// bindname and pw, and the password buffers it handed out.
func recordingCreds(t *testing.T, pw string) (CredentialsFunc, func() [][]byte) {
	var mu sync.Mutex
	var handed [][]byte
	f := func(ctx context.Context, serverURL string) (string, []byte, error) {
		s, err := ParseURL(serverURL)
		if err != nil {
			t.Errorf("callback: %v", err)
			return "", nil, err
		}
		if s.BindDN == "" {
			return "", nil, nil
		}
		b := []byte(pw)
		mu.Lock()
		handed = append(handed, b)
		mu.Unlock()
		return s.BindDN, b, nil
	}
	return f, func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return append([][]byte(nil), handed...)
	}
}

// TestSimpleBindFromURL: against a real slapd whose access rules let only
// authenticated users read certificates, a URL without bindname binds
// anonymously and sees no certificate; with bindname and the right
// password the certificate is found; a wrong password is an ErrBind that
// does not show it; the passwords handed over are zeroed; a URL with a
// bindname is never searched anonymously.
func TestSimpleBindFromURL(t *testing.T) {
	c := certs(t)
	srv := testldap.StartWith(t, testldap.Options{ProtectCertificates: true})
	srv.Person(t, "alice", "alice@example.org", map[string][]string{
		"userCertificate;binary": {string(c.alice1.Raw)},
	})
	ctx := context.Background()
	withBind := srv.URL + "??sub??bindname=" + strings.ReplaceAll(testldap.ReaderDN, ",", "%2c")

	// Anonymous: the entry is found, its certificate is not readable.
	d := mustNew(t, Options{Servers: []string{srv.URL}})
	got, err := d.Lookup(ctx, "alice@example.org")
	if err != nil || len(got) != 0 {
		t.Fatalf("anonymous lookup: %v, %d certificates; want none, no error", err, len(got))
	}

	// bindname and the right password.
	creds, handed := recordingCreds(t, testldap.ReaderPW)
	d = mustNew(t, Options{Servers: []string{withBind}, Credentials: creds})
	got, err = d.Lookup(ctx, "alice@example.org")
	if err != nil {
		t.Fatalf("authenticated lookup: %v", err)
	}
	sameCerts(t, got, c.alice1)

	// The critical form works the same.
	d = mustNew(t, Options{Servers: []string{strings.Replace(withBind, "bindname=", "!bindname=", 1)}, Credentials: creds})
	if got, err = d.Lookup(ctx, "alice@example.org"); err != nil {
		t.Fatalf("critical bindname: %v", err)
	}
	sameCerts(t, got, c.alice1)

	// A wrong password: ErrBind naming the server, no certificate, and
	// the message does not show the password.
	const wrong = "Wrong-Password-77"
	wrongCreds, wrongHanded := recordingCreds(t, wrong)
	d = mustNew(t, Options{Servers: []string{withBind}, Credentials: wrongCreds})
	start := time.Now()
	got, err = d.Lookup(ctx, "alice@example.org")
	var se *ServerError
	if !errors.Is(err, ErrBind) || !errors.As(err, &se) || se.Server != withBind || se.Kind != ErrBind || len(got) != 0 {
		t.Fatalf("wrong password: %v, %d certificates; want ErrBind from %s", err, len(got), withBind)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("wrong password took %v", el)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), testldap.ReaderPW) {
		t.Fatalf("error shows the password: %v", err)
	}
	t.Logf("wrong password: %v", err)
	// A refused bind is not cached: the next lookup asks again.
	if _, err := d.Lookup(ctx, "alice@example.org"); !errors.Is(err, ErrBind) {
		t.Fatalf("second lookup after a refused bind: %v", err)
	}

	for i, b := range append(handed(), wrongHanded()...) {
		if len(b) == 0 || !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("password %d not zeroed: %q", i, b)
		}
	}

	// A bindname but no credentials: ErrBind, and no anonymous search.
	for name, o := range map[string]Options{
		"no callback":           {Servers: []string{withBind}},
		"callback without a DN": {Servers: []string{withBind}, Credentials: func(context.Context, string) (string, []byte, error) { return "", nil, nil }},
	} {
		d := mustNew(t, o)
		if got, err := d.Lookup(ctx, "alice@example.org"); !errors.Is(err, ErrBind) || len(got) != 0 ||
			!strings.Contains(err.Error(), testldap.ReaderDN) {
			t.Errorf("%s: %v, %d certificates; want ErrBind naming the bindname", name, err, len(got))
		}
	}
}

// TestLDAPS: a real slapd serving ldaps:// with a certificate from the
// test PKI. With the test CA as TLSConfig.RootCAs the lookup works (by IP
// address and by host name, anonymous and with a simple bind); with another
// CA, or the system roots, the handshake is refused with ErrTLS carrying
// the verification error, quickly and without a hang.
func TestLDAPS(t *testing.T) {
	c := certs(t)
	srv := testldap.StartWith(t, testldap.Options{ProtectCertificates: true, TLSIssuer: c.pki.Intermediate})
	srv.Person(t, "alice", "alice@example.org", map[string][]string{
		"userCertificate;binary": {string(c.alice2.Raw)},
	})
	srv.Person(t, "bob", "bob@example.org", nil)
	ctx := context.Background()
	trusted := &tls.Config{RootCAs: c.pki.Roots()}
	creds, handed := recordingCreds(t, testldap.ReaderPW)
	bindExt := "??sub??bindname=" + strings.ReplaceAll(testldap.ReaderDN, ",", "%2c")
	_, port, _ := strings.Cut(srv.LDAPSAddr, ":")
	byName := "ldaps://localhost:" + port + "/" + testldap.Suffix

	for _, u := range []string{srv.LDAPSURL + bindExt, byName + bindExt} {
		d := mustNew(t, Options{Servers: []string{u}, Credentials: creds, TLSConfig: trusted})
		got, err := d.Lookup(ctx, "alice@example.org")
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		sameCerts(t, got, c.alice2)
	}
	for i, b := range handed() {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("password %d not zeroed", i)
		}
	}
	// Anonymous over TLS: the entry is readable, its certificate is not.
	d := mustNew(t, Options{Servers: []string{srv.LDAPSURL}, TLSConfig: trusted})
	if got, err := d.Lookup(ctx, "alice@example.org"); err != nil || len(got) != 0 {
		t.Fatalf("anonymous ldaps: %v, %d certificates", err, len(got))
	}

	// Untrusted: another CA's roots, or the system's (which do not hold
	// the test root). The bind is never attempted: the callback's
	// password is not sent.
	other := testpki.New(t)
	for name, cfg := range map[string]*tls.Config{
		"other CA":     {RootCAs: other.Roots()},
		"system roots": nil,
	} {
		d := mustNew(t, Options{Servers: []string{srv.LDAPSURL + bindExt}, Credentials: creds, TLSConfig: cfg, DialTimeout: 2 * time.Second})
		start := time.Now()
		got, err := d.Lookup(ctx, "alice@example.org")
		var verr *tls.CertificateVerificationError
		var se *ServerError
		if !errors.Is(err, ErrTLS) || errors.Is(err, ErrUnreachable) || !errors.As(err, &verr) ||
			!errors.As(err, &se) || se.Kind != ErrTLS || len(got) != 0 {
			t.Fatalf("%s: %v (%T), %d certificates; want ErrTLS with the verification error", name, err, errors.Unwrap(err), len(got))
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("%s: took %v", name, el)
		}
		t.Logf("%s: %v", name, err)
	}

	// The host name must match: the certificate names 127.0.0.1, ::1 and
	// localhost, not another name for the same address.
	d = mustNew(t, Options{Servers: []string{srv.LDAPSURL}, TLSConfig: &tls.Config{RootCAs: c.pki.Roots(), ServerName: "ldap.example.org"}})
	if _, err := d.Lookup(ctx, "bob@example.org"); !errors.Is(err, ErrTLS) {
		t.Fatalf("wrong host name: %v", err)
	}

	// A silent server on an ldaps:// URL: unreachable (the handshake
	// timed out), not a TLS refusal.
	ln, err := listenSilent(t)
	if err != nil {
		t.Fatal(err)
	}
	d = mustNew(t, Options{Servers: []string{"ldaps://" + ln + "/"}, TLSConfig: trusted, DialTimeout: 300 * time.Millisecond})
	start := time.Now()
	if _, err := d.Lookup(ctx, "bob@example.org"); !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrTLS) {
		t.Fatalf("silent ldaps server: %v", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("silent ldaps server took %v", el)
	}
}
