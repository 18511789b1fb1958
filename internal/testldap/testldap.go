// Package testldap runs a real OpenLDAP slapd (Debian packages slapd and
// ldap-utils) for tests, as the current user on a loopback port, with the
// base entries of dc=example,dc=org; optionally with a reader account and
// access rules that need it, and an ldaps:// listener. Test-only.
package testldap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/smimed/smimed/internal/testpki"
)

// The directory's suffix and accounts.
const (
	Suffix   = "dc=example,dc=org"
	RootDN   = "cn=admin,dc=example,dc=org"
	RootPW   = "rootsecret"
	ReaderDN = "cn=reader,dc=example,dc=org" // exists when BindOnly or ProtectCertificates
	ReaderPW = "reader-Secret-42"
)

// Server is one running slapd.
type Server struct {
	URL  string // ldap://127.0.0.1:PORT/dc=example,dc=org
	Addr string // 127.0.0.1:PORT
	// LDAPSURL and LDAPSAddr are the ldaps:// listener's, when
	// Options.TLSIssuer was set: ldaps://127.0.0.1:PORT2/dc=example,dc=org.
	LDAPSURL  string
	LDAPSAddr string
	// ServerCert is the certificate of the ldaps:// listener (for
	// 127.0.0.1, ::1 and localhost), issued by Options.TLSIssuer.
	ServerCert *x509.Certificate
	cmd        *exec.Cmd
	log        *bytes.Buffer
}

// Options configure StartWith.
type Options struct {
	// BindOnly refuses anonymous binds and lets only authenticated users
	// read; the reader account (ReaderDN, ReaderPW) exists.
	BindOnly bool
	// ProtectCertificates allows anonymous binds and searches, but only
	// authenticated users may read userCertificate and
	// userSMIMECertificate (an anonymous search finds the entries without
	// them); the reader account exists.
	ProtectCertificates bool
	// TLSIssuer, when set, adds an ldaps:// listener whose server
	// certificate (for 127.0.0.1, ::1 and localhost; chain included) is
	// issued by this CA, e.g. a testpki PKI's Intermediate.
	TLSIssuer *testpki.Identity
}

// Start starts a slapd with the base entries (and, when bindOnly,
// without anonymous access, plus the reader account). It is stopped at
// the end of the test.
func Start(tb testing.TB, bindOnly bool) *Server {
	tb.Helper()
	return StartWith(tb, Options{BindOnly: bindOnly})
}

// StartWith starts a slapd configured by o, with the base entries. It is
// stopped at the end of the test.
func StartWith(tb testing.TB, o Options) *Server {
	tb.Helper()
	if o.BindOnly && o.ProtectCertificates {
		tb.Fatal("testldap: BindOnly and ProtectCertificates exclude each other")
	}
	bin, err := exec.LookPath("slapd")
	if err != nil {
		if _, err2 := os.Stat("/usr/sbin/slapd"); err2 != nil {
			tb.Fatalf("slapd not found (apt-get install -y slapd ldap-utils): %v", err)
		}
		bin = "/usr/sbin/slapd"
	}
	dir := tb.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		tb.Fatal(err)
	}
	acl := ""
	switch {
	case o.BindOnly:
		acl = `disallow bind_anon
require authc
access to attrs=userPassword
	by anonymous auth
	by * none
access to *
	by users read
	by * none
`
	case o.ProtectCertificates:
		acl = `access to attrs=userPassword
	by anonymous auth
	by * none
access to attrs=userCertificate,userSMIMECertificate
	by users read
	by * none
access to *
	by * read
`
	}
	addr := FreeAddr(tb)
	s := &Server{URL: "ldap://" + addr + "/" + Suffix, Addr: addr, log: new(bytes.Buffer)}
	listeners := "ldap://" + addr + "/"
	if o.TLSIssuer != nil {
		certPath, keyPath := s.serverCertificate(tb, dir, o.TLSIssuer)
		acl = fmt.Sprintf("TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", certPath, keyPath) + acl
		s.LDAPSAddr = FreeAddr(tb)
		s.LDAPSURL = "ldaps://" + s.LDAPSAddr + "/" + Suffix
		listeners += " ldaps://" + s.LDAPSAddr + "/"
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
%[2]s
database mdb
maxsize 16777216
suffix "%[3]s"
rootdn "%[4]s"
rootpw %[5]s
directory %[6]s
`, dir, acl, Suffix, RootDN, RootPW, db)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-f", confPath, "-h", listeners, "-d", "0")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("starting slapd: %v", err)
	}
	exited := make(chan struct{})
	go func() { s.cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		s.cmd.Process.Kill()
		<-exited
	})
	s.waitListening(tb, addr, exited)
	if s.LDAPSAddr != "" {
		s.waitListening(tb, s.LDAPSAddr, exited)
	}
	s.Add(tb, Suffix, map[string][]string{
		"objectClass": {"dcObject", "organization"}, "o": {"Example"}, "dc": {"example"},
	})
	s.Add(tb, "ou=people,"+Suffix, map[string][]string{
		"objectClass": {"organizationalUnit"}, "ou": {"people"},
	})
	if o.BindOnly || o.ProtectCertificates {
		s.Add(tb, ReaderDN, map[string][]string{
			"objectClass": {"person"}, "cn": {"reader"}, "sn": {"reader"}, "userPassword": {ReaderPW},
		})
	}
	return s
}

// waitListening waits until slapd accepts connections on addr.
func (s *Server) waitListening(tb testing.TB, addr string, exited <-chan struct{}) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			tb.Fatalf("slapd exited: %v\n%s", s.cmd.ProcessState, s.log)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("slapd did not listen on %s: %s", addr, s.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serverCertificate issues the ldaps:// listener's certificate (P-256,
// serverAuth, for 127.0.0.1, ::1 and localhost) from issuer and writes it
// with the issuer's chain, and its PKCS #8 key, under dir.
func (s *Server) serverCertificate(tb testing.TB, dir string, issuer *testpki.Identity) (certPath, keyPath string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost", Organization: []string{"smimed tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		tb.Fatalf("testldap: server certificate: %v", err)
	}
	if s.ServerCert, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if issuer.Cert.CheckSignatureFrom(issuer.Cert) != nil { // not a root: send it along
		chain = append(chain, testpki.CertPEM(issuer.Cert)...)
		for _, c := range issuer.Chain {
			chain = append(chain, testpki.CertPEM(c)...)
		}
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for path, data := range map[string][]byte{
		certPath: chain,
		keyPath:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return certPath, keyPath
}

// Stop kills slapd now (the cleanup then has nothing left to do).
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.cmd.Process.Kill()
	for range 100 {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("slapd still listens after kill")
}

// Add adds one entry as the root DN. Attribute values are strings; binary
// ones are converted with string(der).
func (s *Server) Add(tb testing.TB, dn string, attrs map[string][]string) {
	tb.Helper()
	l, err := ldap.DialURL("ldap://" + s.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind(RootDN, RootPW); err != nil {
		tb.Fatal(err)
	}
	req := ldap.NewAddRequest(dn, nil)
	for name, vals := range attrs {
		req.Attribute(name, vals)
	}
	if err := l.Add(req); err != nil {
		tb.Fatalf("adding %s: %v", dn, err)
	}
}

// Person adds an inetOrgPerson under ou=people.
func (s *Server) Person(tb testing.TB, uid, mail string, extra map[string][]string) {
	tb.Helper()
	attrs := map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid}, "mail": {mail},
	}
	for k, v := range extra {
		attrs[k] = v
	}
	s.Add(tb, "uid="+uid+",ou=people,"+Suffix, attrs)
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
