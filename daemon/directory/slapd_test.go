package directory

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

// The test directory: OpenLDAP's slapd (Debian packages slapd and
// ldap-utils) run by the test as the current user on a loopback port.
const (
	testSuffix = "dc=example,dc=org"
	testRootDN = "cn=admin,dc=example,dc=org"
	testRootPW = "rootsecret"
	readerDN   = "cn=reader,dc=example,dc=org"
	readerPW   = "reader-Secret-42"
)

type slapd struct {
	url  string // ldap://127.0.0.1:PORT/dc=example,dc=org
	addr string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// startSlapd starts a slapd with the base entries (and, when bindOnly,
// without anonymous access, plus the reader account). It is stopped at
// the end of the test.
func startSlapd(tb testing.TB, bindOnly bool) *slapd {
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
`, dir, acl, testSuffix, testRootDN, testRootPW, db)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	addr := freeAddr(tb)
	s := &slapd{url: "ldap://" + addr + "/" + testSuffix, addr: addr, log: new(bytes.Buffer)}
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
	s.add(tb, testSuffix, map[string][]string{
		"objectClass": {"dcObject", "organization"}, "o": {"Example"}, "dc": {"example"},
	})
	s.add(tb, "ou=people,"+testSuffix, map[string][]string{
		"objectClass": {"organizationalUnit"}, "ou": {"people"},
	})
	if bindOnly {
		s.add(tb, readerDN, map[string][]string{
			"objectClass": {"person"}, "cn": {"reader"}, "sn": {"reader"}, "userPassword": {readerPW},
		})
	}
	return s
}

// stop kills slapd now (the cleanup then has nothing left to do).
func (s *slapd) stop(tb testing.TB) {
	tb.Helper()
	s.cmd.Process.Kill()
	for range 100 {
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatal("slapd still listens after kill")
}

// add adds one entry as the root DN. Attribute values are strings; binary
// ones are converted with string(der).
func (s *slapd) add(tb testing.TB, dn string, attrs map[string][]string) {
	tb.Helper()
	l, err := ldap.DialURL("ldap://" + s.addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind(testRootDN, testRootPW); err != nil {
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

// person adds an inetOrgPerson under ou=people.
func (s *slapd) person(tb testing.TB, uid, mail string, extra map[string][]string) {
	tb.Helper()
	attrs := map[string][]string{
		"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {uid}, "sn": {uid}, "mail": {mail},
	}
	for k, v := range extra {
		attrs[k] = v
	}
	s.add(tb, "uid="+uid+",ou=people,"+testSuffix, attrs)
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// listenSilent returns the address of a loopback listener that accepts
// connections and never answers.
func listenSilent(tb testing.TB) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), nil
}
