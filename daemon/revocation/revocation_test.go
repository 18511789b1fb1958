package revocation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

func check(t *testing.T, c *Checker, name string) Result {
	t.Helper()
	f := getFixture(t)
	cert, ok := f.certs[name]
	if !ok {
		t.Fatalf("no test certificate %q", name)
	}
	r := c.Check(context.Background(), cert, f.ca)
	t.Logf("%s: %+v", name, r)
	return r
}

func want(t *testing.T, r Result, st Status, sourcePrefix string) {
	t.Helper()
	if r.Status != st {
		t.Fatalf("status %q, want %q (detail %q)", r.Status, st, r.Detail)
	}
	if !strings.HasPrefix(r.Source, sourcePrefix) {
		t.Fatalf("source %q, want prefix %q", r.Source, sourcePrefix)
	}
}

func wantRevokedKeyCompromise(t *testing.T, r Result) {
	t.Helper()
	f := getFixture(t)
	if r.Reason != "keyCompromise" {
		t.Errorf("reason %q, want keyCompromise", r.Reason)
	}
	if r.RevokedAt.Before(f.revoke.Add(-time.Minute)) || r.RevokedAt.After(time.Now()) {
		t.Errorf("revoked at %v, want about %v", r.RevokedAt, f.revoke)
	}
}

func TestOCSPGood(t *testing.T) {
	f := getFixture(t)
	f.setMode("")
	crl := f.hits("/ca.crl")
	r := check(t, &Checker{}, "good")
	want(t, r, Good, "ocsp "+f.ocspSrv.URL)
	if f.hits("/ca.crl") != crl {
		t.Error("the CRL was fetched although OCSP answered")
	}
}

func TestOCSPRevoked(t *testing.T) {
	f := getFixture(t)
	f.setMode("")
	r := check(t, &Checker{}, "revoked")
	want(t, r, Revoked, "ocsp "+f.ocspSrv.URL)
	wantRevokedKeyCompromise(t, r)
}

func TestOCSPCached(t *testing.T) {
	f := getFixture(t)
	f.setMode("")
	c := &Checker{}
	want(t, check(t, c, "good"), Good, "ocsp ")
	n := f.ocspHits.Load()
	r := check(t, c, "good")
	want(t, r, Good, "ocsp ")
	if !r.Cached || f.ocspHits.Load() != n {
		t.Errorf("second check went to the responder (cached %v, requests %d -> %d)", r.Cached, n, f.ocspHits.Load())
	}
	// openssl ocsp -ndays 1: nextUpdate is a day away; past it, ask again.
	c.Now = func() time.Time { return time.Now().Add(25 * time.Hour) }
	check(t, c, "good")
	if f.ocspHits.Load() == n {
		t.Error("the OCSP answer was used past its nextUpdate")
	}
}

func TestOCSPNonce(t *testing.T) {
	f := getFixture(t)
	nonce := []byte("0123456789abcdef")
	der, ext, err := buildOCSPRequest(f.certs["good"], f.ca, nonce)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := requestNonce(der)
	if !ok || !bytes.Equal(got, ext) {
		t.Fatalf("request nonce extension %x (present %v), want %x", got, ok, ext)
	}
	// Still an OCSP request that x/crypto/ocsp reads.
	req, err := ocsp.ParseRequest(der)
	if err != nil || req.SerialNumber.Cmp(f.certs["good"].SerialNumber) != 0 {
		t.Fatalf("ParseRequest: %v", err)
	}

	// What went over the wire to openssl, and what openssl echoed.
	f.setMode("")
	want(t, check(t, &Checker{}, "good"), Good, "ocsp ")
	sent, ok := requestNonce(*f.lastReq.Load())
	if !ok || len(sent) != 18 { // OCTET STRING header + 16 bytes
		t.Fatalf("the request on the wire has no 16-byte nonce: %x", sent)
	}
	echoed, ok, err := responseNonce(*f.lastResp.Load())
	if err != nil || !ok || !bytes.Equal(echoed, sent) {
		t.Fatalf("openssl's response nonce %x (present %v, %v), want %x", echoed, ok, err, sent)
	}
}

func TestOCSPReplayRejected(t *testing.T) {
	f := getFixture(t)
	f.setMode("")
	want(t, check(t, &Checker{}, "good"), Good, "ocsp ")
	old := *f.lastResp.Load()
	f.replayResp.Store(&old)
	f.setMode("replay")
	defer f.setMode("")
	// A validly signed answer for this very certificate, but for another
	// request: the nonce does not match, so the CRL decides.
	r := check(t, &Checker{}, "good")
	want(t, r, Good, "crl ")
	if !strings.Contains(r.Detail+r.Source, "crl") {
		t.Fatal("no CRL fallback")
	}
}

func TestOCSPDelegatedResponder(t *testing.T) {
	f := getFixture(t)
	f.setMode("")
	defer f.setUpstream("ca")
	f.setUpstream("delegated")
	want(t, check(t, &Checker{}, "revoked"), Revoked, "ocsp ")
	// Signed by a certificate of the issuer without id-kp-OCSPSigning: not
	// trusted, the CRL decides.
	f.setUpstream("noeku")
	r := check(t, &Checker{}, "revoked")
	want(t, r, Revoked, "crl ")
	r = check(t, &Checker{}, "good")
	want(t, r, Good, "crl ")
}

func TestCRL(t *testing.T) {
	f := getFixture(t)
	want(t, check(t, &Checker{}, "crlgood"), Good, "crl "+f.crlSrv.URL+"/ca.crl")
	r := check(t, &Checker{}, "crlrevoked")
	want(t, r, Revoked, "crl "+f.crlSrv.URL+"/ca.crl")
	wantRevokedKeyCompromise(t, r)
}

func TestOCSPDownFallsBackToCRL(t *testing.T) {
	f := getFixture(t)
	// Nothing listens at the OCSP URL.
	want(t, check(t, &Checker{}, "ocspdown"), Good, "crl ")
	// The responder answers HTTP 500.
	f.setMode("fail")
	defer f.setMode("")
	r := check(t, &Checker{}, "revoked")
	want(t, r, Revoked, "crl ")
	wantRevokedKeyCompromise(t, r)
}

func TestUnreachable(t *testing.T) {
	for _, p := range []Policy{SoftFail, HardFail} {
		c := &Checker{Policy: p, Timeout: time.Second}
		start := time.Now()
		r := check(t, c, "hang")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("check took %v with a 1 s budget", d)
		}
		want(t, r, Unknown, "")
		if !strings.Contains(r.Detail, "ocsp http://") || !strings.Contains(r.Detail, "crl http://") {
			t.Errorf("detail %q does not name both sources", r.Detail)
		}
		if got := c.Fails(r); got != (p == HardFail) {
			t.Errorf("%v: Fails = %v", p, got)
		}
		// The unknown answer is remembered: the next message does not
		// wait for the silent server again.
		f := getFixture(t)
		f.hangMu.Lock()
		conns := len(f.hangConns)
		f.hangMu.Unlock()
		again := check(t, c, "hang")
		f.hangMu.Lock()
		newConns := len(f.hangConns) - conns
		f.hangMu.Unlock()
		if again.Status != Unknown || !again.Cached || again.Detail != r.Detail || newConns != 0 {
			t.Errorf("second check: %+v with %d new connections, want the remembered unknown", again, newConns)
		}
	}
	// The caller's context also ends the check.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := (&Checker{}).Check(ctx, getFixture(t).certs["hang"], getFixture(t).ca)
	if r.Status != Unknown || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled check: %+v after %v", r, time.Since(start))
	}
}

type noNetwork struct{ t *testing.T }

func (n noNetwork) RoundTrip(r *http.Request) (*http.Response, error) {
	n.t.Errorf("network access to %s", r.URL)
	return nil, errors.New("no network")
}

func TestOff(t *testing.T) {
	c := &Checker{Policy: Off, HTTPClient: &http.Client{Transport: noNetwork{t}}}
	r := check(t, c, "revoked")
	want(t, r, NotChecked, "")
	if c.Fails(r) {
		t.Error("NotChecked fails")
	}
}

func TestCRLCache(t *testing.T) {
	f := getFixture(t)
	now := time.Now()
	c := &Checker{Now: func() time.Time { return now }}
	n := f.hits("/ca.crl")
	want(t, check(t, c, "crlgood"), Good, "crl ")
	r := check(t, c, "crlrevoked")
	want(t, r, Revoked, "crl ")
	if got := f.hits("/ca.crl") - n; got != 1 || !r.Cached {
		t.Fatalf("%d fetches for two checks before nextUpdate (cached %v), want 1", got, r.Cached)
	}
	// openssl ca: default_crl_days = 1. Past nextUpdate the CRL is fetched
	// again; it is the same (now expired) CRL, so the answer is Unknown, not Good.
	now = now.Add(25 * time.Hour)
	r = check(t, c, "crlgood")
	if got := f.hits("/ca.crl") - n; got != 2 {
		t.Fatalf("%d fetches after nextUpdate, want 2", got)
	}
	want(t, r, Unknown, "")
	if !strings.Contains(r.Detail, "expired") {
		t.Errorf("detail %q", r.Detail)
	}
}

func TestCRLDiskCache(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	n := f.hits("/ca.crl")
	want(t, check(t, &Checker{CacheDir: dir}, "crlgood"), Good, "crl ")
	r := check(t, &Checker{CacheDir: dir}, "crlrevoked")
	want(t, r, Revoked, "crl ")
	if got := f.hits("/ca.crl") - n; got != 1 || !r.Cached {
		t.Fatalf("%d fetches with a disk cache (cached %v), want 1", got, r.Cached)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 || !strings.HasSuffix(files[0].Name(), ".crl") {
		t.Fatalf("cache dir holds %v, want one .crl file", files)
	}
	// A tampered cache file is not trusted: the CRL is fetched again.
	path := filepath.Join(dir, files[0].Name())
	if err := os.WriteFile(path, f.badCRL, 0o600); err != nil {
		t.Fatal(err)
	}
	r = check(t, &Checker{CacheDir: dir}, "crlrevoked")
	want(t, r, Revoked, "crl ")
	if got := f.hits("/ca.crl") - n; got != 2 || r.Cached {
		t.Fatalf("tampered cache: %d fetches (cached %v), want 2", got, r.Cached)
	}
}

func TestClockBehindAnswers(t *testing.T) {
	// Answers from the future (thisUpdate beyond the clock skew) are not used.
	c := &Checker{Now: func() time.Time { return time.Now().Add(-time.Hour) }}
	r := check(t, c, "good")
	want(t, r, Unknown, "")
	if !strings.Contains(r.Detail, "response not yet valid") || !strings.Contains(r.Detail, "CRL not yet valid") {
		t.Errorf("detail %q", r.Detail)
	}
	// Within the skew they are.
	c = &Checker{Now: func() time.Time { return time.Now().Add(-time.Minute) }}
	want(t, check(t, c, "good"), Good, "ocsp ")
}

func TestCRLBadSignature(t *testing.T) {
	r := check(t, &Checker{}, "badcrl")
	want(t, r, Unknown, "")
	if !strings.Contains(r.Detail, "bad signature") {
		t.Errorf("detail %q", r.Detail)
	}
}

func TestCRLFailover(t *testing.T) {
	f := getFixture(t)
	n := f.hits("/missing.crl")
	r := check(t, &Checker{}, "failover")
	want(t, r, Revoked, "crl "+f.crlSrv.URL+"/ca.crl")
	wantRevokedKeyCompromise(t, r)
	if f.hits("/missing.crl") != n+1 {
		t.Error("the first distribution point was not tried")
	}
}

func TestLDAPCRL(t *testing.T) {
	f := getFixture(t)
	src := "crl ldap://" + f.slapdAddr + "/"
	want(t, check(t, &Checker{}, "ldap"), Good, src)
	r := check(t, &Checker{}, "ldaprevoked")
	want(t, r, Revoked, src)
	wantRevokedKeyCompromise(t, r)
	// A dead LDAP server and an entry without a CRL first, then the real one.
	r = check(t, &Checker{}, "ldapfailover")
	want(t, r, Good, src+"cn=Test%20Revocation%20CA")
	// Only an unreachable LDAP server: Unknown with detail, within the budget.
	start := time.Now()
	r = check(t, &Checker{Timeout: time.Second}, "ldapdead")
	want(t, r, Unknown, "")
	if !strings.Contains(r.Detail, "crl ldap://") || time.Since(start) > 3*time.Second {
		t.Errorf("detail %q after %v", r.Detail, time.Since(start))
	}
	// An LDAP server that accepts and never answers.
	start = time.Now()
	r = check(t, &Checker{Timeout: time.Second}, "ldaphang")
	want(t, r, Unknown, "")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("hanging LDAP server: %v", d)
	}
}

func TestWrongIssuer(t *testing.T) {
	f := getFixture(t)
	r := (&Checker{}).Check(context.Background(), f.certs["good"], f.otherCA)
	if r.Status != Unknown {
		t.Fatalf("%+v", r)
	}
	// Same name, other key: OCSP and CRL signatures do not verify.
	r = (&Checker{}).Check(context.Background(), f.certs["crlgood"], f.otherCA)
	if r.Status != Unknown || !strings.Contains(r.Detail, "bad signature") {
		t.Fatalf("%+v", r)
	}
}

func TestPolicyAndJSON(t *testing.T) {
	for s, p := range map[string]Policy{"": SoftFail, "soft-fail": SoftFail, "hard-fail": HardFail, "off": Off} {
		got, err := ParsePolicy(s)
		if err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParsePolicy("maybe"); err == nil {
		t.Error("ParsePolicy accepted nonsense")
	}
	b, _ := json.Marshal(Result{Status: Revoked, RevokedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Reason: "keyCompromise", Source: "crl x"})
	if string(b) != `{"status":"revoked","revokedAt":"2026-01-02T03:04:05Z","reason":"keyCompromise","source":"crl x"}` {
		t.Errorf("JSON %s", b)
	}
}

func BenchmarkCheck(b *testing.B) {
	f := getFixture(b)
	f.setMode("")
	for _, bc := range []struct{ name, cert string }{{"ocsp", "good"}, {"crl", "crlgood"}} {
		cert := f.certs[bc.cert]
		b.Run(bc.name+"/cold", func(b *testing.B) {
			for b.Loop() {
				if r := (&Checker{}).Check(context.Background(), cert, f.ca); r.Status != Good {
					b.Fatalf("%+v", r)
				}
			}
		})
		b.Run(bc.name+"/warm", func(b *testing.B) {
			c := &Checker{}
			c.Check(context.Background(), cert, f.ca)
			for b.Loop() {
				if r := c.Check(context.Background(), cert, f.ca); r.Status != Good || !r.Cached {
					b.Fatalf("%+v", r)
				}
			}
		})
	}
}

func TestConcurrentChecks(t *testing.T) {
	f := getFixture(t)
	f.setMode("")
	c := &Checker{}
	names := []string{"good", "revoked", "crlgood", "crlrevoked", "failover", "ldap"}
	wantSt := map[string]Status{"good": Good, "revoked": Revoked, "crlgood": Good, "crlrevoked": Revoked, "failover": Revoked, "ldap": Good}
	var wg sync.WaitGroup
	for i := range 24 {
		n := names[i%len(names)]
		wg.Go(func() {
			if r := c.Check(context.Background(), f.certs[n], f.ca); r.Status != wantSt[n] {
				t.Errorf("%s: %+v", n, r)
			}
		})
	}
	wg.Wait()
}
