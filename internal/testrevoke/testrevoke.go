// Package testrevoke runs a small S/MIME PKI for revocation tests: a root
// CA and an issuing intermediate CA made and operated with the real
// `openssl req`/`openssl ca`, a CRL made by `openssl ca -gencrl` served over
// HTTP on loopback, and a real `openssl ocsp` responder on loopback.
// Leaf certificates carry e-mail addresses and emailProtection, so they can
// sign and receive mail. Test-only.
package testrevoke

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Pointers says which revocation sources a leaf certificate names.
type Pointers int

// The kinds of leaf certificates.
const (
	// OCSPAndCRL names the OCSP responder and the CRL (the usual case).
	OCSPAndCRL Pointers = iota
	// CRLOnly names only the CRL distribution point.
	CRLOnly
	// DeadResponder names an OCSP responder and a CRL distribution point
	// where nothing listens: revocation cannot be found out.
	DeadResponder
	// NoPointers names neither.
	NoPointers
)

// Spec describes one leaf certificate to issue.
type Spec struct {
	// Name identifies the leaf (a file name: letters and digits).
	Name string
	// Email is its subjectAltName rfc822Name.
	Email string
	// Pointers says where its revocation status is published.
	Pointers Pointers
	// Revoked revokes it (before the responder starts), with Reason
	// ("keyCompromise", "superseded", ...; default keyCompromise).
	Revoked bool
	Reason  string
	// TimeStamping makes it a time-stamping authority's certificate
	// (extendedKeyUsage critical timeStamping, no emailProtection); it
	// needs CRLOnly pointers, and Email may be empty.
	TimeStamping bool
}

// Identity is an issued leaf with its key.
type Identity struct {
	Certificate *x509.Certificate
	Key         crypto.Signer
	CertFile    string // PEM
	KeyFile     string // PEM, unencrypted PKCS #8
}

// PKI is a running test PKI.
type PKI struct {
	// Root is the trust anchor; Intermediate issued every leaf.
	Root, Intermediate *x509.Certificate
	// RootFile and IntermediateFile are their PEM files.
	RootFile, IntermediateFile string
	// Dir is the CA's working directory.
	Dir string
	// RevokedAt is a time just before the revocations.
	RevokedAt time.Time

	ids      map[string]*Identity
	crl      *httptest.Server
	ocsp     *httptest.Server
	upstream string
	ocspHits atomic.Int64
	crlHits  atomic.Int64
	down     atomic.Bool
}

// Start builds the PKI, issues specs and starts the responders; all stop at
// the end of the test. It fails the test when openssl is missing.
func Start(tb testing.TB, specs ...Spec) *PKI {
	tb.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		tb.Fatalf("openssl not found (apt-get install -y openssl): %v", err)
	}
	p := &PKI{Dir: tb.TempDir(), ids: map[string]*Identity{}}
	p.crl = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.crlHits.Add(1)
		if p.down.Load() || r.URL.Path != "/ca.crl" {
			http.NotFound(w, r)
			return
		}
		http.ServeFile(w, r, filepath.Join(p.Dir, "ca.crl"))
	}))
	tb.Cleanup(p.crl.Close)
	p.ocsp = httptest.NewServer(http.HandlerFunc(p.proxy))
	tb.Cleanup(func() { p.ocsp.CloseClientConnections(); p.ocsp.Close() })

	dead := "http://" + freeAddr(tb)
	cnf := strings.NewReplacer("{{DIR}}", p.Dir, "{{CRL}}", p.crl.URL+"/ca.crl", "{{OCSP}}", p.ocsp.URL+"/",
		"{{DEAD}}", dead).Replace(config)
	p.write(tb, "openssl.cnf", []byte(cnf))
	p.write(tb, "index.txt", nil)
	p.write(tb, "serial", []byte("1000\n"))
	p.write(tb, "crlnumber", []byte("01\n"))
	if err := os.Mkdir(filepath.Join(p.Dir, "newcerts"), 0o700); err != nil {
		tb.Fatal(err)
	}
	ec := "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
	p.sh(tb, "openssl req -config openssl.cnf -x509 -new "+ec+" -keyout root.key -out root.pem -subj '/O=Revocation Test/CN=Test Root CA' -days 30 -extensions v3_ca")
	p.sh(tb, "openssl req -config openssl.cnf -new "+ec+" -keyout ca.key -subj '/O=Revocation Test/CN=Test Issuing CA' -out ca.csr")
	p.sh(tb, "openssl x509 -req -in ca.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 -extfile openssl.cnf -extensions v3_ca -out ca.pem")
	p.Root = readCert(tb, filepath.Join(p.Dir, "root.pem"))
	p.Intermediate = readCert(tb, filepath.Join(p.Dir, "ca.pem"))
	p.RootFile, p.IntermediateFile = filepath.Join(p.Dir, "root.pem"), filepath.Join(p.Dir, "ca.pem")
	for _, s := range specs {
		ext := [...]string{OCSPAndCRL: "ee_both", CRLOnly: "ee_crl", DeadResponder: "ee_dead", NoPointers: "ee_none"}[s.Pointers]
		if s.TimeStamping {
			if s.Pointers != CRLOnly {
				tb.Fatalf("testrevoke: %s: a time-stamping certificate needs CRLOnly pointers", s.Name)
			}
			ext = "tsa_crl"
		}
		san := ""
		if s.Email != "" {
			san = "-addext 'subjectAltName=email:" + s.Email + "'"
		}
		p.sh(tb, fmt.Sprintf("openssl req -config openssl.cnf -new %s -keyout %[2]s.key -subj '/O=Revocation Test/CN=%[2]s' %[3]s -out %[2]s.csr && "+
			"openssl ca -batch -config openssl.cnf -extensions %[4]s -notext -in %[2]s.csr -out %[2]s.pem", ec, s.Name, san, ext))
		p.ids[s.Name] = &Identity{
			Certificate: readCert(tb, filepath.Join(p.Dir, s.Name+".pem")),
			Key:         readKey(tb, filepath.Join(p.Dir, s.Name+".key")),
			CertFile:    filepath.Join(p.Dir, s.Name+".pem"),
			KeyFile:     filepath.Join(p.Dir, s.Name+".key"),
		}
	}
	p.RevokedAt = time.Now().Add(-time.Second).Truncate(time.Second)
	for _, s := range specs {
		if s.Revoked {
			reason := s.Reason
			if reason == "" {
				reason = "keyCompromise"
			}
			p.sh(tb, fmt.Sprintf("openssl ca -config openssl.cnf -revoke %s.pem -crl_reason %s", s.Name, reason))
		}
	}
	p.sh(tb, "openssl ca -config openssl.cnf -gencrl -out ca.crl.pem && openssl crl -in ca.crl.pem -outform DER -out ca.crl")
	p.startResponder(tb)
	return p
}

// Identity returns the leaf issued for the spec named name.
func (p *PKI) Identity(name string) *Identity {
	id, ok := p.ids[name]
	if !ok {
		panic("testrevoke: no identity " + name)
	}
	return id
}

// OCSPRequests and CRLRequests count the requests the responders got.
func (p *PKI) OCSPRequests() int64 { return p.ocspHits.Load() }

// CRLRequests counts the CRL downloads.
func (p *PKI) CRLRequests() int64 { return p.crlHits.Load() }

// SetDown makes the OCSP responder answer HTTP 503 and the CRL server 404
// (true) or serve again (false): the responders are unreachable for
// certificates that name only them.
func (p *PKI) SetDown(down bool) { p.down.Store(down) }

// proxy forwards OCSP requests to the openssl responder and counts them.
func (p *PKI) proxy(w http.ResponseWriter, r *http.Request) {
	p.ocspHits.Add(1)
	if p.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	body, err := readAll(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := oneShot.Post("http://"+p.upstream+"/", "application/ocsp-request", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.WriteHeader(resp.StatusCode)
	buf := new(bytes.Buffer)
	buf.ReadFrom(resp.Body)
	w.Write(buf.Bytes())
}

func readAll(r *http.Request) ([]byte, error) {
	buf := new(bytes.Buffer)
	_, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, 1<<20))
	return buf.Bytes(), err
}

// startResponder runs `openssl ocsp` over the CA's index, signed by the
// issuing CA, and waits until it answers.
func (p *PKI) startResponder(tb testing.TB) {
	tb.Helper()
	p.upstream = freeAddr(tb)
	_, port, _ := net.SplitHostPort(p.upstream)
	log := new(bytes.Buffer)
	cmd := exec.Command("openssl", "ocsp", "-index", "index.txt", "-port", port,
		"-rsigner", "ca.pem", "-rkey", "ca.key", "-CA", "ca.pem", "-ndays", "1", "-ignore_err")
	cmd.Dir, cmd.Stdout, cmd.Stderr = p.Dir, log, log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("openssl ocsp: %v", err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Probe with a real request: openssl ocsp spins on a connection that
	// closes without one, so a bare TCP probe would wedge it.
	probe, err := ocsp.CreateRequest(&x509.Certificate{SerialNumber: big.NewInt(1)}, p.Intermediate, nil)
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := oneShot.Post("http://"+p.upstream+"/", "application/ocsp-request", bytes.NewReader(probe))
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("openssl ocsp did not answer on %s: %v\n%s", p.upstream, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// oneShot sends each request on a new connection: openssl ocsp serves one
// connection at a time and would stall on a kept-alive one.
var oneShot = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func (p *PKI) write(tb testing.TB, name string, data []byte) {
	tb.Helper()
	if err := os.WriteFile(filepath.Join(p.Dir, name), data, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func (p *PKI) sh(tb testing.TB, script string) {
	tb.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = p.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func readCert(tb testing.TB, path string) *x509.Certificate {
	tb.Helper()
	c, err := x509.ParseCertificate(pemBytes(tb, path))
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return c
}

func readKey(tb testing.TB, path string) crypto.Signer {
	tb.Helper()
	k, err := x509.ParsePKCS8PrivateKey(pemBytes(tb, path))
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return k.(crypto.Signer)
}

// pemBytes returns the DER of the first PEM block of the file.
func pemBytes(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatalf("%s: no PEM", path)
	}
	return blk.Bytes
}

const config = `
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
copy_extensions = copy
[ policy_anything ]
organizationName = optional
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
authorityKeyIdentifier = keyid
[ ee_both ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = emailProtection
crlDistributionPoints = URI:{{CRL}}
authorityInfoAccess = OCSP;URI:{{OCSP}}
[ ee_crl ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = emailProtection
crlDistributionPoints = URI:{{CRL}}
[ ee_dead ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = emailProtection
crlDistributionPoints = URI:{{DEAD}}/ca.crl
authorityInfoAccess = OCSP;URI:{{DEAD}}/
[ ee_none ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = emailProtection
[ tsa_crl ]
basicConstraints = CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
crlDistributionPoints = URI:{{CRL}}
`

// PKCS12 exports the identity with the issuing CA's certificate as a
// PKCS #12 file protected by password, made by the real `openssl pkcs12`.
func (p *PKI) PKCS12(tb testing.TB, name, password string) []byte {
	tb.Helper()
	id := p.Identity(name)
	out := filepath.Join(tb.TempDir(), name+".p12")
	cmd := exec.Command("openssl", "pkcs12", "-export", "-in", id.CertFile, "-inkey", id.KeyFile,
		"-certfile", p.IntermediateFile, "-passout", "env:P12PASS", "-out", out)
	cmd.Env = append(os.Environ(), "P12PASS="+password)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("openssl pkcs12 -export: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Sign signs msg (a MIME entity) as the identity named name with the real
// `openssl cms -sign`, detached, including the issuing CA's certificate
// (the intermediate travels only in the message).
func (p *PKI) Sign(tb testing.TB, name string, msg []byte) []byte {
	tb.Helper()
	id := p.Identity(name)
	cmd := exec.Command("openssl", "cms", "-sign", "-signer", id.CertFile, "-inkey", id.KeyFile,
		"-certfile", p.IntermediateFile, "-md", "sha256")
	cmd.Stdin = bytes.NewReader(msg)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		tb.Fatalf("openssl cms -sign: %v\n%s", err, errb.Bytes())
	}
	return out.Bytes()
}

// Revoke revokes the leaf named name now, with reason, and publishes a new
// CRL. The OCSP responder read the CA's index when it started, so only
// CRLOnly leaves see a revocation made after Start.
func (p *PKI) Revoke(tb testing.TB, name, reason string) {
	tb.Helper()
	p.sh(tb, fmt.Sprintf("openssl ca -config openssl.cnf -revoke %s.pem -crl_reason %s && "+
		"openssl ca -config openssl.cnf -gencrl -out ca.crl.pem && openssl crl -in ca.crl.pem -outform DER -out ca.crl", name, reason))
}
