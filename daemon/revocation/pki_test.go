package revocation

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/ocsp"
)

// fixture is a test CA made with `openssl ca`, its CRL served over HTTP on
// loopback, and `openssl ocsp` responders on loopback behind a recording
// proxy. It is built once per test binary (TestMain) because every test
// reads it only; tests that count requests take deltas.
type fixture struct {
	dir     string
	ca      *x509.Certificate
	otherCA *x509.Certificate
	certs   map[string]*x509.Certificate
	revoke  time.Time // just before the revocations

	crlSrv   *httptest.Server
	crlHits  sync.Map // path -> *atomic.Int64
	badCRL   []byte
	ocspSrv  *httptest.Server // the proxy named in the certificates
	ocspHits atomic.Int64
	// upstream is the host:port of the openssl responder the proxy forwards to.
	upstream   atomic.Pointer[string]
	mode       atomic.Pointer[string] // "", "fail" (HTTP 500) or "replay"
	lastReq    atomic.Pointer[[]byte]
	lastResp   atomic.Pointer[[]byte]
	replayResp atomic.Pointer[[]byte]

	responders map[string]string // name -> host:port of an openssl ocsp process
	procs      []*exec.Cmd
	hang       net.Listener // accepts and never answers
	hangConns  []net.Conn
	hangMu     sync.Mutex
	deadURL    string // nothing listens there
	slapd      *exec.Cmd
	slapdAddr  string
}

var fx *fixture
var fxErr error

func TestMain(m *testing.M) {
	fx, fxErr = newFixture()
	code := m.Run()
	if fx != nil {
		fx.close()
	}
	os.Exit(code)
}

func getFixture(t testing.TB) *fixture {
	t.Helper()
	if fxErr != nil {
		t.Fatalf("test PKI with openssl: %v", fxErr)
	}
	return fx
}

func (f *fixture) hits(path string) int64 {
	v, _ := f.crlHits.LoadOrStore(path, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

func (f *fixture) setMode(m string)     { f.mode.Store(&m) }
func (f *fixture) setUpstream(n string) { a := f.responders[n]; f.upstream.Store(&a) }

func (f *fixture) close() {
	for _, p := range f.procs {
		p.Process.Kill()
		p.Wait()
	}
	f.procs = nil
	if f.slapd != nil {
		f.slapd.Process.Kill()
		f.slapd.Wait()
	}
	if f.hang != nil {
		f.hang.Close()
	}
	f.hangMu.Lock()
	for _, c := range f.hangConns {
		c.Close()
	}
	f.hangMu.Unlock()
	if f.crlSrv != nil {
		f.crlSrv.Close()
	}
	if f.ocspSrv != nil {
		f.ocspSrv.CloseClientConnections()
		f.ocspSrv.Close()
	}
	os.RemoveAll(f.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

const cnfTemplate = `
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {{DIR}}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 1
policy = policy_anything
unique_subject = no
copy_extensions = none
[ policy_anything ]
commonName = supplied
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = unused
[ v3_ca ]
basicConstraints = critical,CA:true
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ ee ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = emailProtection
[ ext_both ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{CRL}}/ca.crl
authorityInfoAccess = OCSP;URI:{{OCSP}}/
[ ext_crlonly ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{CRL}}/ca.crl
[ ext_ocspdown ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{CRL}}/ca.crl
authorityInfoAccess = OCSP;URI:{{DEAD}}/
[ ext_hang ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{HANG}}/ca.crl
authorityInfoAccess = OCSP;URI:{{HANG}}/
[ ext_failover ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{CRL}}/missing.crl, URI:{{CRL}}/ca.crl
[ ext_badcrl ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{CRL}}/bad.crl
[ ext_ldap ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{LDAP}}/cn=Test%20Revocation%20CA%2Cdc=example%2Cdc=org?certificateRevocationList;binary
[ ext_ldapdead ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{LDAPDEAD}}/cn=Test%20Revocation%20CA%2Cdc=example%2Cdc=org?certificateRevocationList;binary
[ ext_ldaphang ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{LDAPHANG}}/cn=Test%20Revocation%20CA%2Cdc=example%2Cdc=org?certificateRevocationList;binary
[ ext_ldapfailover ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
crlDistributionPoints = URI:{{LDAPDEAD}}/cn=Test%20Revocation%20CA%2Cdc=example%2Cdc=org?certificateRevocationList;binary, URI:{{LDAP}}/cn=Nobody%2Cdc=example%2Cdc=org, URI:{{LDAP}}/cn=Test%20Revocation%20CA%2Cdc=example%2Cdc=org?certificateRevocationList;binary
[ ext_ocspsign ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = OCSPSigning
`

func run(dir string, stdin []byte, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	der, err := pemOrDER(b)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func pemOrDER(b []byte) ([]byte, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes, nil
	}
	return b, nil
}

func newFixture() (f *fixture, err error) {
	if _, err := exec.LookPath("openssl"); err != nil {
		return nil, fmt.Errorf("openssl is not installed: %v", err)
	}
	f = &fixture{certs: map[string]*x509.Certificate{}, responders: map[string]string{}}
	defer func() {
		if err != nil {
			f.close()
			f = nil
		}
	}()
	f.setMode("")
	if f.dir, err = os.MkdirTemp("", "revocation-test-"); err != nil {
		return f, err
	}
	f.crlSrv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := f.crlHits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		switch r.URL.Path {
		case "/ca.crl":
			http.ServeFile(w, r, filepath.Join(f.dir, "ca.crl"))
		case "/bad.crl":
			w.Write(f.badCRL)
		default:
			http.NotFound(w, r)
		}
	}))
	f.ocspSrv = httptest.NewServer(http.HandlerFunc(f.proxy))
	f.hang, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return f, err
	}
	go func() {
		for {
			c, err := f.hang.Accept()
			if err != nil {
				return
			}
			f.hangMu.Lock()
			f.hangConns = append(f.hangConns, c)
			f.hangMu.Unlock()
		}
	}()
	dead, err := freePort()
	if err != nil {
		return f, err
	}
	f.deadURL = fmt.Sprintf("http://127.0.0.1:%d", dead)
	if err := f.startSlapd(); err != nil {
		return f, err
	}

	d := f.dir
	cnf := strings.NewReplacer("{{DIR}}", d, "{{CRL}}", f.crlSrv.URL, "{{OCSP}}", f.ocspSrv.URL,
		"{{DEAD}}", f.deadURL, "{{HANG}}", "http://"+f.hang.Addr().String(),
		"{{LDAP}}", "ldap://"+f.slapdAddr, "{{LDAPHANG}}", "ldap://"+f.hang.Addr().String(), "{{LDAPDEAD}}", strings.Replace(f.deadURL, "http:", "ldap:", 1)).Replace(cnfTemplate)
	if err := os.WriteFile(filepath.Join(d, "openssl.cnf"), []byte(cnf), 0o600); err != nil {
		return f, err
	}
	os.Mkdir(filepath.Join(d, "newcerts"), 0o700)
	os.WriteFile(filepath.Join(d, "index.txt"), nil, 0o600)
	os.WriteFile(filepath.Join(d, "serial"), []byte("1000\n"), 0o600)
	os.WriteFile(filepath.Join(d, "crlnumber"), []byte("01\n"), 0o600)
	ec := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	if err := run(d, nil, "openssl", append(append([]string{"req", "-config", "openssl.cnf", "-x509", "-new"}, ec...),
		"-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Test Revocation CA", "-days", "30", "-extensions", "v3_ca")...); err != nil {
		return f, err
	}
	// Another CA with the same name and a different key.
	if err := run(d, nil, "openssl", append(append([]string{"req", "-config", "openssl.cnf", "-x509", "-new"}, ec...),
		"-keyout", "other.key", "-out", "other.pem", "-subj", "/CN=Test Revocation CA", "-days", "30", "-extensions", "v3_ca")...); err != nil {
		return f, err
	}
	issue := func(name, ext string) error {
		sh := fmt.Sprintf("openssl req -config openssl.cnf -new %s -keyout %s.key -subj /CN=%s | openssl ca -batch -config openssl.cnf -extensions %s -notext -in /dev/stdin -out %s.pem",
			strings.Join(ec, " "), name, name, ext, name)
		return run(d, nil, "sh", "-c", sh)
	}
	for _, c := range [][2]string{
		{"good", "ext_both"}, {"revoked", "ext_both"},
		{"crlgood", "ext_crlonly"}, {"crlrevoked", "ext_crlonly"},
		{"ocspdown", "ext_ocspdown"}, {"hang", "ext_hang"},
		{"failover", "ext_failover"}, {"badcrl", "ext_badcrl"},
		{"ldap", "ext_ldap"}, {"ldaprevoked", "ext_ldap"}, {"ldapfailover", "ext_ldapfailover"}, {"ldapdead", "ext_ldapdead"}, {"ldaphang", "ext_ldaphang"},
		{"responder", "ext_ocspsign"},
	} {
		if err := issue(c[0], c[1]); err != nil {
			return f, err
		}
	}
	f.revoke = time.Now().Add(-time.Second).Truncate(time.Second)
	for _, n := range []string{"revoked", "crlrevoked", "failover", "ldaprevoked"} {
		if err := run(d, nil, "openssl", "ca", "-config", "openssl.cnf", "-revoke", n+".pem", "-crl_reason", "keyCompromise"); err != nil {
			return f, err
		}
	}
	if err := run(d, nil, "openssl", "ca", "-config", "openssl.cnf", "-gencrl", "-out", "ca.crl.pem"); err != nil {
		return f, err
	}
	if err := run(d, nil, "openssl", "crl", "-in", "ca.crl.pem", "-outform", "DER", "-out", "ca.crl"); err != nil {
		return f, err
	}
	crlDER, err := os.ReadFile(filepath.Join(d, "ca.crl"))
	if err != nil {
		return f, err
	}
	if err := f.ldapAdd("cn=Test Revocation CA,dc=example,dc=org", map[string][]string{
		"objectClass": {"cRLDistributionPoint"}, "cn": {"Test Revocation CA"},
		"certificateRevocationList;binary": {string(crlDER)},
	}); err != nil {
		return f, err
	}
	// The same CRL re-signed by the other CA's key: a wrong-key CRL.
	if err := run(d, nil, "openssl", "ca", "-config", "openssl.cnf", "-gencrl", "-keyfile", "other.key", "-cert", "other.pem", "-out", "bad.crl.pem"); err != nil {
		return f, err
	}
	if err := run(d, nil, "openssl", "crl", "-in", "bad.crl.pem", "-outform", "DER", "-out", "bad.crl"); err != nil {
		return f, err
	}
	if f.badCRL, err = os.ReadFile(filepath.Join(d, "bad.crl")); err != nil {
		return f, err
	}
	if f.ca, err = readCert(filepath.Join(d, "ca.pem")); err != nil {
		return f, err
	}
	if f.otherCA, err = readCert(filepath.Join(d, "other.pem")); err != nil {
		return f, err
	}
	for _, n := range []string{"good", "revoked", "crlgood", "crlrevoked", "ocspdown", "hang", "failover", "badcrl", "ldap", "ldaprevoked", "ldapfailover", "ldapdead", "ldaphang", "responder"} {
		if f.certs[n], err = readCert(filepath.Join(d, n+".pem")); err != nil {
			return f, err
		}
	}
	// OCSP responders: signed by the CA itself, by a delegated responder
	// with id-kp-OCSPSigning, and by an end-entity certificate without it.
	for name, signer := range map[string][2]string{
		"ca":        {"ca.pem", "ca.key"},
		"delegated": {"responder.pem", "responder.key"},
		"noeku":     {"good.pem", "good.key"},
	} {
		port, err := freePort()
		if err != nil {
			return f, err
		}
		cmd := exec.Command("openssl", "ocsp", "-index", "index.txt", "-port", fmt.Sprint(port),
			"-rsigner", signer[0], "-rkey", signer[1], "-CA", "ca.pem", "-ndays", "1", "-ignore_err")
		cmd.Dir = d
		logf, err := os.Create(filepath.Join(d, "ocsp-"+name+".log"))
		if err != nil {
			return f, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return f, err
		}
		f.procs = append(f.procs, cmd)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if err := waitResponder(addr, f.certs["good"], f.ca, 10*time.Second); err != nil {
			return f, fmt.Errorf("openssl ocsp (%s): %v", name, err)
		}
		f.responders[name] = addr
	}
	f.setUpstream("ca")
	return f, nil
}

// waitResponder waits until an OCSP request to addr gets an answer. (A
// bare TCP probe is not used: openssl ocsp -ignore_err spins on a connection
// closed without a request.)
func waitResponder(addr string, cert, issuer *x509.Certificate, d time.Duration) error {
	req, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := client.Post("http://"+addr+"/", "application/ocsp-request", bytes.NewReader(req))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no OCSP answer from %s after %v", addr, d)
}

// proxy forwards OCSP requests to the selected openssl responder and records
// them; it can also fail or replay an earlier response.
func (f *fixture) proxy(w http.ResponseWriter, r *http.Request) {
	f.ocspHits.Add(1)
	body, _ := io.ReadAll(r.Body)
	f.lastReq.Store(&body)
	switch *f.mode.Load() {
	case "fail":
		http.Error(w, "down for the test", http.StatusInternalServerError)
		return
	case "replay":
		if p := f.replayResp.Load(); p != nil {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(*p)
			return
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Post("http://"+*f.upstream.Load()+"/", "application/ocsp-request", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	f.lastResp.Store(&out)
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// startSlapd runs a real OpenLDAP slapd on loopback with dc=example,dc=org.
func (f *fixture) startSlapd() error {
	bin, err := exec.LookPath("slapd")
	if err != nil {
		bin = "/usr/sbin/slapd"
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("slapd is not installed (apt-get install -y slapd ldap-utils): %v", err)
		}
	}
	dir := filepath.Join(f.dir, "slapd")
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
pidfile %[1]s/slapd.pid
argsfile %[1]s/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 16777216
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw adminpw
directory %[1]s/db
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	f.slapdAddr = fmt.Sprintf("127.0.0.1:%d", port)
	var log bytes.Buffer
	cmd := exec.Command(bin, "-f", filepath.Join(dir, "slapd.conf"), "-h", "ldap://"+f.slapdAddr+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		return err
	}
	f.slapd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f.ldapAdd("dc=example,dc=org", map[string][]string{
			"objectClass": {"dcObject", "organization"}, "o": {"Example"}, "dc": {"example"},
		})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("slapd on %s: %v\n%s", f.slapdAddr, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *fixture) ldapAdd(dn string, attrs map[string][]string) error {
	l, err := ldap.DialURL("ldap://" + f.slapdAddr)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Bind("cn=admin,dc=example,dc=org", "adminpw"); err != nil {
		return err
	}
	req := ldap.NewAddRequest(dn, nil)
	for name, vals := range attrs {
		req.Attribute(name, vals)
	}
	return l.Add(req)
}
