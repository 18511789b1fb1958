package smime

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/peer"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/cms"
)

// tsaFixture holds the time-stamping authorities of the trust tests: one
// under the fixture's PKI (trusted) and one under the other PKI.
type tsaFixture struct {
	trusted, foreign *testpki.Identity
	subCA            *testpki.Identity // a CA below the intermediate
	deep             *testpki.Identity // alice@example.com issued by subCA
}

var (
	tsaOnce sync.Once
	tsaFx   *tsaFixture
)

func getTSAFixture(t testing.TB) (*fixture, *tsaFixture) {
	t.Helper()
	f := getFixture(t)
	tsaOnce.Do(func() {
		x := &tsaFixture{
			trusted: f.pki.IssueTSA(t, testpki.TSAOptions{Name: "smimed test TSA"}),
			foreign: f.other.IssueTSA(t, testpki.TSAOptions{Name: "foreign TSA"}),
		}
		x.subCA = issueSubCA(t, f.pki.Intermediate)
		x.deep = f.pki.Issue(t, testpki.Options{Email: "alice@example.com", Issuer: x.subCA})
		tsaFx = x
	})
	if tsaFx == nil {
		t.Fatal("TSA fixture could not be built")
	}
	return f, tsaFx
}

// issueSubCA makes a CA certificate below issuer (testpki only issues end
// entities below its intermediate).
func issueSubCA(t testing.TB, issuer *testpki.Identity) *testpki.Identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smimed test sub-CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(3 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testpki.Identity{Cert: cert, Key: key, Chain: append([]*x509.Certificate{issuer.Cert}, issuer.Chain...)}
}

// stamper returns a SignOptions.TimeStamp hook asking tsa (run by
// `openssl ts`) for a token over the signature value.
func stamper(t testing.TB, tsa *peer.OpenSSLTSA) func(context.Context, []byte) ([]byte, error) {
	return func(_ context.Context, sig []byte) ([]byte, error) {
		return tsa.Stamp(t, sig, crypto.SHA256), nil
	}
}

// stampedMsg signs plainMsg as id with a time-stamp from tsa.
func stampedMsg(t testing.TB, id *testpki.Identity, tsa *peer.OpenSSLTSA, opaque bool) []byte {
	t.Helper()
	o := signOpts(id)
	o.Opaque = opaque
	o.TimeStamp = stamper(t, tsa)
	return signBytes(t, plainMsg, o)
}

// mutateCMS applies f to the CMS of a signed message of either form.
func mutateCMS(t testing.TB, msg []byte, f func([]byte) []byte) []byte {
	t.Helper()
	if bytes.Contains(msg, []byte("multipart/signed")) {
		return mutateSignaturePart(t, msg, f)
	}
	return mutateOpaque(t, msg, f)
}

// replaceToken swaps the first signer's time-stamp token for another one
// of the same length.
func replaceToken(t testing.TB, der, other []byte) []byte {
	t.Helper()
	sd, _, err := cms.ParseSignedData(der)
	if err != nil {
		t.Fatal(err)
	}
	token := sd.Signers[0].TimeStampToken
	i := bytes.Index(der, token)
	if token == nil || i < 0 || len(other) != len(token) {
		t.Fatalf("token not found or lengths differ (%d, %d)", len(token), len(other))
	}
	out := bytes.Clone(der)
	copy(out[i:], other)
	return out
}

// flipInToken flips a byte in the middle of the first signer's token.
func flipInToken(t testing.TB, der []byte) []byte {
	t.Helper()
	sd, _, err := cms.ParseSignedData(der)
	if err != nil {
		t.Fatal(err)
	}
	token := sd.Signers[0].TimeStampToken
	i := bytes.Index(der, token)
	if token == nil || i < 0 {
		t.Fatal("token not found")
	}
	out := bytes.Clone(der)
	out[i+len(token)-20] ^= 0x08 // inside the TSA's signature value
	return out
}

// TestTrustedTime checks that a verified time-stamp makes the signer
// judged at the attested time, and that a broken one only adds a note.
func TestTrustedTime(t *testing.T) {
	f, x := getTSAFixture(t)
	tsa := peer.NewOpenSSLTSA(t, x.trusted, peer.OpenSSLTSAOptions{})
	tsaChain := peer.NewOpenSSLTSA(t, x.trusted, peer.OpenSSLTSAOptions{IncludeChain: true})
	foreign := peer.NewOpenSSLTSA(t, x.foreign, peer.OpenSSLTSAOptions{IncludeChain: true})
	later := f.opts()
	later.Now = time.Now().Add(2 * 365 * 24 * time.Hour) // alice's certificate has expired
	start := time.Now().Add(-time.Second)

	type tc struct {
		name       string
		msg        func(t *testing.T, opaque bool) []byte
		opts       OpenOptions
		outcome    string
		outcomeNow string
		trusted    bool
		reason     []string
	}
	stamped := func(t *testing.T, opaque bool) []byte { return stampedMsg(t, f.alice, tsa, opaque) }
	cases := []tc{
		{"good-and-good-now", stamped, f.opts(), OutcomeGood, "", true,
			[]string{"signed by alice@example.com", "time-stamped by smimed test TSA", "valid until"}},
		{"good-when-signed-expired-now", stamped, later, OutcomeGood, OutcomeExpired, true,
			[]string{"valid when signed at", "time-stamped by smimed test TSA", "the certificate has since expired on"}},
		{"no-stamp-expired-now", func(t *testing.T, opaque bool) []byte {
			o := signOpts(f.alice)
			o.Opaque = opaque
			return signBytes(t, plainMsg, o)
		}, later, OutcomeExpired, "", false, []string{"expired on", "which cannot be proven"}},
		{"untrusted-tsa-gives-no-time", func(t *testing.T, opaque bool) []byte { return stampedMsg(t, f.alice, foreign, opaque) },
			f.opts(), OutcomeGood, "", false, []string{"time-stamp that does not verify", "not trusted"}},
		{"untrusted-tsa-expired-now", func(t *testing.T, opaque bool) []byte { return stampedMsg(t, f.alice, foreign, opaque) },
			later, OutcomeExpired, "", false, []string{"expired on", "time-stamp that does not verify"}},
		{"token-of-another-signature", func(t *testing.T, opaque bool) []byte {
			other := tsa.Stamp(t, []byte("another signature value"), crypto.SHA256)
			return mutateCMS(t, stamped(t, opaque), func(d []byte) []byte { return replaceToken(t, d, other) })
		}, later, OutcomeExpired, "", false, []string{"covers other data"}},
		{"tampered-token", func(t *testing.T, opaque bool) []byte {
			return mutateCMS(t, stamped(t, opaque), func(d []byte) []byte { return flipInToken(t, d) })
		}, f.opts(), OutcomeGood, "", false, []string{"time-stamp that does not verify"}},
		{"stamped-email-mismatch", func(t *testing.T, opaque bool) []byte { return stampedMsg(t, f.bob, tsa, opaque) },
			f.opts(), OutcomeEmailMismatch, "", true, []string{"bob@example.org", "signed at", "time-stamped by"}},
		// The token carries the TSA's chain: the message only has the
		// other PKI's intermediate.
		{"stamped-untrusted-signer", func(t *testing.T, opaque bool) []byte { return stampedMsg(t, f.mallory, tsaChain, opaque) },
			f.opts(), OutcomeUntrusted, "", true, []string{"trusted root", "signed at"}},
		{"stamped-weak-signer-stays-weak", func(t *testing.T, opaque bool) []byte { return stampedMsg(t, f.rsa1024, tsa, opaque) },
			f.opts(), OutcomeWeak, "", false, []string{"1024"}},
	}
	for _, c := range cases {
		for _, opaque := range []bool{false, true} {
			form := map[bool]string{false: "detached", true: "opaque"}[opaque]
			t.Run(form+"/"+c.name, func(t *testing.T) {
				st, inner, err := openBytes(t, c.msg(t, opaque), c.opts)
				if err != nil {
					t.Fatal(err)
				}
				if string(inner) != plainInner {
					t.Fatalf("inner %q", inner)
				}
				sr := st.Layers[0].Signers[0]
				t.Logf("%s (now %q): %s", sr.Outcome, sr.OutcomeNow, sr.Reason)
				if sr.Outcome != c.outcome || sr.OutcomeNow != c.outcomeNow || st.Signature != c.outcome {
					t.Fatalf("outcome %q now %q, want %q now %q (%s)", sr.Outcome, sr.OutcomeNow, c.outcome, c.outcomeNow, sr.Reason)
				}
				if c.trusted != !sr.TrustedTime.IsZero() {
					t.Fatalf("trusted time %v (%s)", sr.TrustedTime, sr.Reason)
				}
				if c.trusted {
					if sr.TrustedTime.Before(start.Truncate(time.Second)) || sr.TrustedTime.After(time.Now().Add(time.Second)) ||
						sr.TimeStampAuthority != "smimed test TSA" || sr.TimeStamp == nil {
						t.Fatalf("trusted time %v by %q", sr.TrustedTime, sr.TimeStampAuthority)
					}
				} else if sr.TimeStampAuthority != "" || sr.TimeStamp != nil {
					t.Fatalf("TSA %q without a trusted time", sr.TimeStampAuthority)
				}
				for _, want := range c.reason {
					if !strings.Contains(sr.Reason, want) {
						t.Fatalf("reason %q lacks %q", sr.Reason, want)
					}
				}
			})
		}
	}
}

// revHook is a CheckRevocation hook for tests: it answers r for signers
// and tsa for time-stamping authorities, and records its calls.
type revHook struct {
	r        Revocation
	tsa      Revocation // zero: not checked
	calls    atomic.Int32
	tsaCalls atomic.Int32
	chain    []*x509.Certificate
	tsaChain []*x509.Certificate
	ctxOK    atomic.Bool
}

type ctxKey struct{}

func (h *revHook) check(ctx context.Context, chain []*x509.Certificate) Revocation {
	h.ctxOK.Store(ctx.Value(ctxKey{}) == "open")
	if slices.Contains(chain[0].ExtKeyUsage, x509.ExtKeyUsageTimeStamping) {
		h.tsaCalls.Add(1)
		h.tsaChain = chain
		return h.tsa
	}
	h.calls.Add(1)
	h.chain = chain
	return h.r
}

// TestTimeStampAuthorityRevocation: the TSA's certificate is checked with
// the same hook; a revocation that voids its tokens, or an unknown status
// under hard-fail, takes the trusted time away (the signer is then judged
// now), and a benign revocation after the token leaves it.
func TestTimeStampAuthorityRevocation(t *testing.T) {
	f, x := getTSAFixture(t)
	tsa := peer.NewOpenSSLTSA(t, x.trusted, peer.OpenSSLTSAOptions{})
	msg := stampedMsg(t, f.alice, tsa, false)
	past, future := time.Now().Add(-24*time.Hour), time.Now().Add(24*time.Hour)
	revoked := func(at time.Time, reason string) Revocation {
		return Revocation{Status: RevocationRevoked, RevokedAt: at, Reason: reason, Fails: true}
	}
	tests := []struct {
		name    string
		tsa     Revocation
		trusted bool     // the token still gives the trusted time
		reason  []string // in the signer's reason
	}{
		{"good", Revocation{Status: RevocationGood}, true, []string{"time-stamped by smimed test TSA"}},
		{"not-checked", Revocation{}, true, []string{"time-stamped by smimed test TSA"}},
		{"superseded-after-the-token", revoked(future, "superseded"), true, []string{"time-stamped by smimed test TSA"}},
		{"superseded-before-the-token", revoked(past, "superseded"), false,
			[]string{"time-stamp by smimed test TSA, but the time-stamping authority's certificate was revoked on " + past.UTC().Format(dateFormat) + " (superseded), so its signing time is not proven"}},
		{"key-compromise-after-the-token", revoked(future, "keyCompromise"), false, []string{"(keyCompromise), so its signing time is not proven"}},
		{"no-reason-after-the-token", revoked(future, ""), false, []string{"certificate was revoked on", "not proven"}},
		{"unknown-soft-fail", Revocation{Status: RevocationUnknown, Detail: "timeout"}, true, []string{"time-stamped by smimed test TSA"}},
		{"unknown-hard-fail", Revocation{Status: RevocationUnknown, Detail: "timeout", Fails: true}, false,
			[]string{"the revocation status of the time-stamping authority's certificate could not be checked: timeout, so its signing time is not proven"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := f.opts()
			h := &revHook{r: Revocation{Status: RevocationGood}, tsa: tt.tsa}
			opts.CheckRevocation = h.check
			ctx := context.WithValue(context.Background(), ctxKey{}, "open")
			st, err := Open(ctx, io.Discard, bytes.NewReader(msg), opts)
			if err != nil {
				t.Fatal(err)
			}
			sr := st.Layers[0].Signers[0]
			t.Logf("%s: %s", sr.Outcome, sr.Reason)
			if sr.Outcome != OutcomeGood || h.calls.Load() != 1 || h.tsaCalls.Load() != 1 {
				t.Fatalf("outcome %q, %d signer and %d TSA checks; want good, 1 and 1", sr.Outcome, h.calls.Load(), h.tsaCalls.Load())
			}
			if len(h.tsaChain) != 3 || !h.tsaChain[0].Equal(x.trusted.Cert) || !h.tsaChain[2].Equal(f.pki.Root.Cert) {
				t.Fatalf("TSA chain of %d certificates, not the TSA to the root", len(h.tsaChain))
			}
			if got := !sr.TrustedTime.IsZero(); got != tt.trusted || (sr.TimeStamp != nil) != tt.trusted {
				t.Fatalf("trusted time %v (token %v), want %v", sr.TrustedTime, sr.TimeStamp != nil, tt.trusted)
			}
			for _, want := range tt.reason {
				if !strings.Contains(sr.Reason, want) {
					t.Fatalf("reason %q lacks %q", sr.Reason, want)
				}
			}
		})
	}
}

// TestRevocationHook covers the revocation rules with a hook: revoked,
// unknown with and without hard-fail, good, with and without a trusted
// time, and the signers it must not be called for.
func TestRevocationHook(t *testing.T) {
	f, x := getTSAFixture(t)
	tsa := peer.NewOpenSSLTSA(t, x.trusted, peer.OpenSSLTSAOptions{})
	later := time.Now().Add(2 * 365 * 24 * time.Hour)
	past, future := time.Now().Add(-24*time.Hour), time.Now().Add(24*time.Hour)
	fromBob := strings.Replace(plainMsg, "From: Alice <alice@example.com>", "From: Bob <bob@example.org>", 1)

	plain := func(id *testpki.Identity, msg string) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return signBytes(t, msg, signOpts(id)) }
	}
	stamped := func(id *testpki.Identity) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return stampedMsg(t, id, tsa, false) }
	}
	revoked := func(at time.Time, reason string) Revocation {
		return Revocation{Status: RevocationRevoked, RevokedAt: at, Reason: reason, Detail: "test CRL", Fails: true}
	}
	type tc struct {
		name       string
		msg        func(t *testing.T) []byte
		rev        *Revocation // nil: no hook
		now        time.Time
		calls      int32
		outcome    string
		outcomeNow string
		summary    string // Status.Revocation
		reason     []string
	}
	cases := []tc{
		{"no-hook", plain(f.alice, plainMsg), nil, time.Time{}, 0, OutcomeGood, "", RevocationNotChecked, nil},
		{"good", plain(f.alice, plainMsg), &Revocation{Status: RevocationGood, Detail: "OCSP responder http://ocsp.example"}, time.Time{}, 1,
			OutcomeGood, "", RevocationGood, []string{"has not been revoked (OCSP responder http://ocsp.example)"}},
		{"hook-says-not-checked", plain(f.alice, plainMsg), &Revocation{}, time.Time{}, 1, OutcomeGood, "", RevocationNotChecked, nil},
		{"revoked-key-compromise", plain(f.alice, plainMsg), ptr(revoked(past, "keyCompromise")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"was revoked on " + past.UTC().Format(dateFormat), "keyCompromise"}},
		{"revoked-superseded-without-trusted-time", plain(f.alice, plainMsg), ptr(revoked(future, "superseded")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"superseded"}},
		{"revoked-email-mismatch", plain(f.alice, fromBob), ptr(revoked(past, "keyCompromise")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"revoked"}},
		{"unknown-hard-fail", plain(f.alice, plainMsg), &Revocation{Status: RevocationUnknown, Detail: "OCSP responder unreachable", Fails: true}, time.Time{}, 1,
			OutcomeUntrusted, "", RevocationUnknown, []string{"the revocation status of alice@example.com could not be checked: OCSP responder unreachable"}},
		{"unknown-soft-fail", plain(f.alice, plainMsg), &Revocation{Status: RevocationUnknown, Detail: "no CRL reachable"}, time.Time{}, 1,
			OutcomeGood, "", RevocationUnknown, []string{"signed by alice@example.com", "revocation status is unknown: no CRL reachable"}},
		{"stamped-good", stamped(f.alice), &Revocation{Status: RevocationGood}, time.Time{}, 1,
			OutcomeGood, "", RevocationGood, []string{"time-stamped by", "not been revoked"}},
		{"stamped-superseded-after-signing", stamped(f.alice), ptr(revoked(future, "superseded")), time.Time{}, 1,
			OutcomeGood, OutcomeRevoked, RevocationRevoked, []string{"valid when signed at", "was revoked on " + future.UTC().Format(dateFormat) + " (superseded), after it was signed"}},
		{"stamped-cessation-after-signing-expired-now", stamped(f.alice), ptr(revoked(future, "cessationOfOperation")), later, 1,
			OutcomeGood, OutcomeExpired, RevocationRevoked, []string{"valid when signed at", "has since expired", "(cessationOfOperation), after it was signed"}},
		{"stamped-key-compromise-expired-now", stamped(f.alice), ptr(revoked(future, "keyCompromise")), later, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"keyCompromise"}},
		{"stamped-superseded-before-signing", stamped(f.alice), ptr(revoked(past, "superseded")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"superseded", "before it was used to sign"}},
		{"stamped-key-compromise-after-signing", stamped(f.alice), ptr(revoked(future, "keyCompromise")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"keyCompromise", "puts earlier signatures in doubt"}},
		{"stamped-unspecified-after-signing", stamped(f.alice), ptr(revoked(future, "unspecified")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"without a stated reason puts earlier signatures in doubt"}},
		{"stamped-no-reason-after-signing", stamped(f.alice), ptr(revoked(future, "")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"without a stated reason"}},
		{"stamped-no-date", stamped(f.alice), ptr(revoked(time.Time{}, "superseded")), time.Time{}, 1,
			OutcomeRevoked, "", RevocationRevoked, []string{"revocation date is not known"}},
		{"stamped-unknown-hard-fail", stamped(f.alice), &Revocation{Status: RevocationUnknown, Detail: "timeout", Fails: true}, time.Time{}, 1,
			OutcomeUntrusted, "", RevocationUnknown, []string{"could not be checked: timeout", "signed at"}},
		{"stamped-unknown-soft-fail", stamped(f.alice), &Revocation{Status: RevocationUnknown, Detail: "timeout"}, time.Time{}, 1,
			OutcomeGood, "", RevocationUnknown, []string{"revocation status is unknown: timeout"}},
		// Never checked for expired, untrusted, bad or weak signers.
		{"not-for-expired", plain(f.expired, plainMsg), ptr(revoked(past, "keyCompromise")), time.Time{}, 0,
			OutcomeExpired, "", RevocationNotChecked, nil},
		{"not-for-expired-now-unstamped", plain(f.alice, plainMsg), ptr(revoked(past, "keyCompromise")), later, 0,
			OutcomeExpired, "", RevocationNotChecked, nil},
		{"not-for-untrusted", plain(f.mallory, plainMsg), ptr(revoked(past, "keyCompromise")), time.Time{}, 0,
			OutcomeUntrusted, "", RevocationNotChecked, nil},
		{"not-for-weak", plain(f.rsa1024, plainMsg), ptr(revoked(past, "keyCompromise")), time.Time{}, 0,
			OutcomeWeak, "", RevocationNotChecked, nil},
		{"not-for-bad", func(t *testing.T) []byte {
			return bytes.Replace(signBytes(t, plainMsg, signOpts(f.alice)), []byte("noon"), []byte("nine"), 1)
		}, ptr(revoked(past, "keyCompromise")), time.Time{}, 0, OutcomeBad, "", RevocationNotChecked, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := f.opts()
			opts.Now = c.now
			var h *revHook
			if c.rev != nil {
				h = &revHook{r: *c.rev}
				opts.CheckRevocation = h.check
			}
			ctx := context.WithValue(context.Background(), ctxKey{}, "open")
			st, err := Open(ctx, &bytes.Buffer{}, bytes.NewReader(c.msg(t)), opts)
			if err != nil {
				t.Fatal(err)
			}
			sr := st.Layers[0].Signers[0]
			t.Logf("%s (now %q): %s", sr.Outcome, sr.OutcomeNow, sr.Reason)
			if sr.Outcome != c.outcome || sr.OutcomeNow != c.outcomeNow || st.Signature != c.outcome {
				t.Fatalf("outcome %q now %q, want %q now %q (%s)", sr.Outcome, sr.OutcomeNow, c.outcome, c.outcomeNow, sr.Reason)
			}
			if st.Revocation != c.summary {
				t.Fatalf("Status.Revocation %q, want %q", st.Revocation, c.summary)
			}
			if h != nil {
				if n := h.calls.Load(); n != c.calls {
					t.Fatalf("hook called %d times, want %d", n, c.calls)
				}
				if n := h.calls.Load(); n > 0 {
					if sr.Revocation == nil || sr.Revocation.Status != st.Revocation {
						t.Fatalf("SignerResult.Revocation %+v", sr.Revocation)
					}
					if !h.ctxOK.Load() {
						t.Fatal("the hook did not get Open's context")
					}
					if len(h.chain) != 3 || !h.chain[0].Equal(sr.Certificate) || !h.chain[2].Equal(f.pki.Root.Cert) {
						t.Fatalf("chain of %d certificates, not leaf to root", len(h.chain))
					}
				} else if sr.Revocation != nil {
					t.Fatalf("Revocation %+v without a call", sr.Revocation)
				}
			}
			for _, want := range c.reason {
				if !strings.Contains(sr.Reason, want) {
					t.Fatalf("reason %q lacks %q", sr.Reason, want)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestSignerResultJSON checks the JSON names of the new signer fields.
func TestSignerResultJSON(t *testing.T) {
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	b, err := json.Marshal(SignerResult{Outcome: OutcomeGood, OutcomeNow: OutcomeExpired, TrustedTime: at, TimeStampAuthority: "TSA",
		Revocation: &Revocation{Status: RevocationRevoked, RevokedAt: at, Reason: "superseded", Detail: "CRL", Fails: true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"trusted_time":"2026-11-23T12:00:00Z"`, `"tsa":"TSA"`, `"outcome_now":"expired"`,
		`"revocation":{"status":"revoked","revoked_at":"2026-11-23T12:00:00Z","reason":"superseded","detail":"CRL"}`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("%s lacks %s", b, want)
		}
	}
	b, _ = json.Marshal(SignerResult{Outcome: OutcomeGood})
	for _, absent := range []string{"trusted_time", "tsa", "outcome_now", "revocation", "Fails"} {
		if strings.Contains(string(b), absent) {
			t.Fatalf("%s has %s", b, absent)
		}
	}
}

// TestFetchIssuers checks that missing intermediates are asked for, level
// by level, and that the asking is bounded.
func TestFetchIssuers(t *testing.T) {
	f, x := getTSAFixture(t)
	noChain := func(id *testpki.Identity) []byte {
		o := signOpts(id)
		o.Chain = nil
		return signBytes(t, plainMsg, o)
	}
	byIssuer := map[string]*x509.Certificate{
		string(f.pki.Intermediate.Cert.RawSubject): f.pki.Intermediate.Cert,
		string(x.subCA.Cert.RawSubject):            x.subCA.Cert,
	}
	directory := func(_ context.Context, c *x509.Certificate) []*x509.Certificate {
		if i := byIssuer[string(c.RawIssuer)]; i != nil {
			return []*x509.Certificate{i}
		}
		return nil
	}
	// unrelated hands out a new, useless certificate on every call.
	unrelated := []*x509.Certificate{f.bob.Cert, f.carol.Cert, f.mallory.Cert, f.tlsEKU.Cert, f.noSignKU.Cert, f.expired.Cert}
	var next atomic.Int32
	endless := func(context.Context, *x509.Certificate) []*x509.Certificate {
		return []*x509.Certificate{unrelated[int(next.Add(1)-1)%len(unrelated)]}
	}
	cases := []struct {
		name    string
		msg     []byte
		fetch   func(context.Context, *x509.Certificate) []*x509.Certificate
		outcome string
		asked   []*x509.Certificate // the certificates FetchIssuers is asked about, in order
	}{
		{"no-hook", noChain(f.alice), nil, OutcomeUntrusted, nil},
		{"one-level", noChain(f.alice), directory, OutcomeGood, []*x509.Certificate{f.alice.Cert}},
		{"two-levels", noChain(x.deep), directory, OutcomeGood, []*x509.Certificate{x.deep.Cert, x.subCA.Cert}},
		{"chain-in-message-no-call", signBytes(t, plainMsg, signOpts(x.deep)), directory, OutcomeGood, nil},
		{"nothing-found", noChain(f.alice), func(context.Context, *x509.Certificate) []*x509.Certificate { return nil }, OutcomeUntrusted,
			[]*x509.Certificate{f.alice.Cert}},
		{"bounded", noChain(f.alice), endless, OutcomeUntrusted, nil},
		{"foreign-root-not-fetched", noChain(f.mallory), func(_ context.Context, c *x509.Certificate) []*x509.Certificate {
			return []*x509.Certificate{f.other.Intermediate.Cert, f.other.Root.Cert}
		}, OutcomeUntrusted, []*x509.Certificate{f.mallory.Cert, f.other.Intermediate.Cert}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var asked []*x509.Certificate
			opts := f.opts()
			if c.fetch != nil {
				opts.FetchIssuers = func(ctx context.Context, cert *x509.Certificate) []*x509.Certificate {
					if ctx.Value(ctxKey{}) != "open" {
						t.Error("FetchIssuers did not get Open's context")
					}
					mu.Lock()
					asked = append(asked, cert)
					mu.Unlock()
					return c.fetch(ctx, cert)
				}
			}
			ctx := context.WithValue(context.Background(), ctxKey{}, "open")
			st, err := Open(ctx, &bytes.Buffer{}, bytes.NewReader(c.msg), opts)
			if err != nil {
				t.Fatal(err)
			}
			sr := st.Layers[0].Signers[0]
			if sr.Outcome != c.outcome {
				t.Fatalf("outcome %s (%s), want %s", sr.Outcome, sr.Reason, c.outcome)
			}
			if c.name == "bounded" {
				if len(asked) != maxIssuerFetches {
					t.Fatalf("FetchIssuers called %d times, want the bound %d", len(asked), maxIssuerFetches)
				}
				return
			}
			if len(asked) != len(c.asked) {
				t.Fatalf("FetchIssuers asked about %d certificates, want %d", len(asked), len(c.asked))
			}
			for i := range asked {
				if !asked[i].Equal(c.asked[i]) {
					t.Fatalf("call %d asked about %s, want %s", i, asked[i].Subject, c.asked[i].Subject)
				}
			}
		})
	}
}

// TestSignTimeStampHook checks the signing side of the hook: the context
// reaches it, and its failures fail Sign.
func TestSignTimeStampHook(t *testing.T) {
	f, x := getTSAFixture(t)
	tsa := peer.NewOpenSSLTSA(t, x.trusted, peer.OpenSSLTSAOptions{})
	ctx := context.WithValue(context.Background(), ctxKey{}, "sign")
	for _, opaque := range []bool{false, true} {
		o := signOpts(f.alice)
		o.Opaque = opaque
		calls := 0
		o.TimeStamp = func(c context.Context, sig []byte) ([]byte, error) {
			calls++
			if c.Value(ctxKey{}) != "sign" {
				t.Error("TimeStamp did not get Sign's context")
			}
			return tsa.Stamp(t, sig, crypto.SHA512), nil
		}
		var out bytes.Buffer
		if err := SignAndEncrypt(ctx, &out, strings.NewReader(plainMsg), o, EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}}); err != nil {
			t.Fatal(err)
		}
		opts := f.opts()
		opts.FindKey = keyFor(f.alice)
		st, _, err := openBytes(t, out.Bytes(), opts)
		if err != nil || calls != 1 {
			t.Fatalf("%v, %d calls", err, calls)
		}
		if sr := st.Layers[1].Signers[0]; sr.Outcome != OutcomeGood || sr.TrustedTime.IsZero() || sr.TimeStamp.Hash != crypto.SHA512 {
			t.Fatalf("%+v", sr)
		}
	}
	errTSA := errors.New("TSA unreachable")
	o := signOpts(f.alice)
	o.TimeStamp = func(context.Context, []byte) ([]byte, error) { return nil, errTSA }
	if err := Sign(ctx, &bytes.Buffer{}, strings.NewReader(plainMsg), o); !errors.Is(err, errTSA) {
		t.Fatalf("Sign with a failing TSA: %v", err)
	}
	o.TimeStamp = func(context.Context, []byte) ([]byte, error) {
		return tsa.Stamp(t, []byte("something else"), crypto.SHA256), nil
	}
	err := Sign(ctx, &bytes.Buffer{}, strings.NewReader(plainMsg), o)
	if err == nil || !strings.Contains(err.Error(), "unusable token") || errors.Is(err, ErrBadMessage) {
		t.Fatalf("Sign with a token over other data: %v", err)
	}
	o.TimeStamp = func(context.Context, []byte) ([]byte, error) { return []byte("garbage"), nil }
	err = Sign(ctx, &bytes.Buffer{}, strings.NewReader(plainMsg), o)
	if err == nil || !strings.Contains(err.Error(), "unusable token") || errors.Is(err, ErrBadMessage) {
		t.Fatalf("Sign with a garbage token: %v", err)
	}
}
