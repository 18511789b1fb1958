// Package testldap runs a real OpenLDAP slapd (Debian packages slapd and
// ldap-utils) for tests, as the current user on a loopback port, with the
// base entries of dc=example,dc=org. Test-only.
package testldap

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// The directory's suffix and accounts.
const (
	Suffix   = "dc=example,dc=org"
	RootDN   = "cn=admin,dc=example,dc=org"
	RootPW   = "rootsecret"
	ReaderDN = "cn=reader,dc=example,dc=org" // exists when bindOnly
	ReaderPW = "reader-Secret-42"
)

// Server is one running slapd.
type Server struct {
	URL  string // ldap://127.0.0.1:PORT/dc=example,dc=org
	Addr string // 127.0.0.1:PORT
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// Start starts a slapd with the base entries (and, when bindOnly,
// without anonymous access, plus the reader account). It is stopped at
// the end of the test.
func Start(tb testing.TB, bindOnly bool) *Server {
	tb.Helper()
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
	if bindOnly {
		acl = `disallow bind_anon
require authc
access to attrs=userPassword
	by anonymous auth
	by * none
access to *
	by users read
	by * none
`
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
	addr := FreeAddr(tb)
	s := &Server{URL: "ldap://" + addr + "/" + Suffix, Addr: addr, log: new(bytes.Buffer)}
	s.cmd = exec.Command(bin, "-f", confPath, "-h", "ldap://"+addr+"/", "-d", "0")
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
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
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
	s.Add(tb, Suffix, map[string][]string{
		"objectClass": {"dcObject", "organization"}, "o": {"Example"}, "dc": {"example"},
	})
	s.Add(tb, "ou=people,"+Suffix, map[string][]string{
		"objectClass": {"organizationalUnit"}, "ou": {"people"},
	})
	if bindOnly {
		s.Add(tb, ReaderDN, map[string][]string{
			"objectClass": {"person"}, "cn": {"reader"}, "sn": {"reader"}, "userPassword": {ReaderPW},
		})
	}
	return s
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
