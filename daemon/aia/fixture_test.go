package aia

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/smimed/smimed/internal/testpki"
)

// fixture is a root → intermediate chain from testpki, an impostor CA with
// the intermediate's name but another key, and the response bodies a
// caIssuers server may send, the PKCS #7 ones made by OpenSSL.
type fixture struct {
	root, inter *testpki.Identity
	impostor    *testpki.Identity // same subject as inter, other key, issued by root

	interDER    []byte
	chainPEM    []byte // root then intermediate, PEM
	mixedP7C    []byte // openssl crl2pkcs7 -outform DER: root, impostor, intermediate
	interP7B    []byte // openssl crl2pkcs7 (PEM "PKCS7"): the intermediate
	mixedBER    []byte // mixedP7C with indefinite lengths
	impostorP7C []byte // openssl crl2pkcs7 -outform DER: the impostor
}

var (
	fixtureOnce sync.Once
	theFixture  *fixture
)

// getFixture builds the shared fixture once (RSA keys are slow to make).
func getFixture(tb testing.TB) *fixture {
	tb.Helper()
	fixtureOnce.Do(func() { theFixture = newFixture(tb) })
	if theFixture == nil {
		tb.Fatal("the fixture could not be built (see the first test that failed)")
	}
	return theFixture
}

func newFixture(tb testing.TB) *fixture {
	tb.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		tb.Fatalf("openssl is not installed (apt-get install -y openssl): %v", err)
	}
	pki := testpki.New(tb)
	f := &fixture{root: pki.Root, inter: pki.Intermediate}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	f.impostor = &testpki.Identity{Key: key, Cert: issue(tb, &x509.Certificate{
		RawSubject:            f.inter.Cert.RawSubject,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, key.Public(), f.root)}
	f.interDER = f.inter.Cert.Raw
	f.chainPEM = append(testpki.CertPEM(f.root.Cert), testpki.CertPEM(f.inter.Cert)...)

	dir, err := os.MkdirTemp("", "aia-fixture-")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(dir)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	rootPEM := write("root.pem", testpki.CertPEM(f.root.Cert))
	interPEM := write("inter.pem", testpki.CertPEM(f.inter.Cert))
	impPEM := write("impostor.pem", testpki.CertPEM(f.impostor.Cert))
	run := func(out string, args ...string) []byte {
		cmd := exec.Command(openssl, append(args, "-out", filepath.Join(dir, out))...)
		if b, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("%s: %v\n%s", cmd, err, b)
		}
		data, err := os.ReadFile(filepath.Join(dir, out))
		if err != nil {
			tb.Fatal(err)
		}
		return data
	}
	f.mixedP7C = run("mixed.p7c", "crl2pkcs7", "-nocrl", "-certfile", rootPEM, "-certfile", impPEM, "-certfile", interPEM, "-outform", "DER")
	f.interP7B = run("inter.p7b", "crl2pkcs7", "-nocrl", "-certfile", interPEM)
	f.impostorP7C = run("impostor.p7c", "crl2pkcs7", "-nocrl", "-certfile", impPEM, "-outform", "DER")
	if !strings.HasPrefix(string(f.interP7B), "-----BEGIN PKCS7-----") {
		tb.Fatalf("openssl crl2pkcs7 wrote %.40q, want PEM PKCS7", f.interP7B)
	}
	f.mixedBER = indefinite(tb, f.mixedP7C, 3)
	return f
}

// issue makes a certificate from tmpl for pub, signed by issuer.
func issue(tb testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, issuer *testpki.Identity) *x509.Certificate {
	tb.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 96))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, pub, issuer.Key)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// leaf makes an end-entity certificate issued by issuer (the intermediate
// when nil) whose AIA extension names urls as caIssuers. testpki has no
// option for the extension, so crypto/x509 builds it here.
func (f *fixture) leaf(tb testing.TB, issuer *testpki.Identity, urls ...string) *x509.Certificate {
	tb.Helper()
	if issuer == nil {
		issuer = f.inter
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return issue(tb, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "alice@example.org"},
		EmailAddresses:        []string{"alice@example.org"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		IssuingCertificateURL: urls,
	}, key.Public(), issuer)
}

// indefinite re-encodes the outer depth levels of the DER element der with
// indefinite lengths, as BER encoders that stream do.
func indefinite(tb testing.TB, der []byte, depth int) []byte {
	tb.Helper()
	s := cryptobyte.String(der)
	var (
		elem cryptobyte.String
		tag  cbasn1.Tag
	)
	if !s.ReadAnyASN1Element(&elem, &tag) || !s.Empty() {
		tb.Fatalf("indefinite: not one DER element")
	}
	if depth == 0 || tag&0x20 == 0 {
		return elem
	}
	var content cryptobyte.String
	if !elem.ReadAnyASN1(&content, &tag) {
		tb.Fatal("indefinite: bad element")
	}
	out := []byte{byte(tag), 0x80}
	for !content.Empty() {
		var child cryptobyte.String
		var ct cbasn1.Tag
		if !content.ReadAnyASN1Element(&child, &ct) {
			tb.Fatal("indefinite: bad child")
		}
		out = append(out, indefinite(tb, child, depth-1)...)
	}
	return append(out, 0, 0)
}

// route is what the test server answers on one path.
type route struct {
	status  int    // 200 when zero
	body    []byte //
	chunked bool   // no Content-Length: the body is flushed in pieces
	hang    bool   // never answer (until the client goes away)
	// gate, when set, holds the answer until it is closed.
	gate chan struct{}
}

// server is a caIssuers HTTP server on loopback that counts requests.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	routes map[string]route
	hits   map[string]int
	total  atomic.Int64
	// abandoned counts the requests to hanging routes that the client
	// gave up on.
	abandoned atomic.Int64
}

func newServer(tb testing.TB, routes map[string]route) *server {
	tb.Helper()
	s := &server{routes: routes, hits: map[string]int{}}
	if s.routes == nil {
		s.routes = map[string]route{}
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	s.total.Add(1)
	s.mu.Lock()
	s.hits[r.URL.Path]++
	rt, ok := s.routes[r.URL.Path]
	s.mu.Unlock()
	if ok && rt.gate != nil {
		select {
		case <-rt.gate:
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case !ok:
		http.NotFound(w, r)
	case rt.hang:
		select {
		case <-r.Context().Done():
			s.abandoned.Add(1)
		case <-time.After(30 * time.Second):
		}
	case rt.chunked:
		w.WriteHeader(http.StatusOK)
		for b := rt.body; len(b) > 0; {
			n := min(len(b), 1000)
			w.Write(b[:n])
			w.(http.Flusher).Flush()
			b = b[n:]
		}
	default:
		if rt.status == 0 {
			rt.status = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Header().Set("Content-Length", strconv.Itoa(len(rt.body)))
		w.WriteHeader(rt.status)
		w.Write(rt.body)
	}
}

func (s *server) set(path string, rt route) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[path] = rt
}

func (s *server) hitsOf(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// clock is a settable clock for Fetcher.Now.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// silentListener returns the address of a loopback listener that accepts
// connections and never answers.
func silentListener(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
