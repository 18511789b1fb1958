package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/peer"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/internal/testrevoke"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/smime"
)

// TestTimeStampedSignatureRevokedLater: a signature time-stamped by a real
// `openssl ts` authority before its certificate was revoked is judged at
// the stamped time — good when the revocation reason is benign
// (superseded), with outcome_now "revoked" beside it — and revoked when
// the key was compromised. A signature without a time-stamp is revoked
// either way.
func TestTimeStampedSignatureRevokedLater(t *testing.T) {
	p := testrevoke.Start(t,
		testrevoke.Spec{Name: "superseded", Email: "sup@rev.example", Pointers: testrevoke.CRLOnly},
		testrevoke.Spec{Name: "compromised", Email: "comp@rev.example", Pointers: testrevoke.CRLOnly},
	)
	tsaPKI := testpki.New(t)
	tsa := peer.NewOpenSSLTSA(t, tsaPKI.IssueTSA(t, testpki.TSAOptions{}), peer.OpenSSLTSAOptions{IncludeChain: true})
	h := revocationHarness(t, p, "soft-fail")
	if _, err := h.svc.TrustAdd(h.ctx(), testpki.CertPEM(tsaPKI.Root.Cert)); err != nil { // the TSA's root
		t.Fatal(err)
	}
	sign := func(name string, stamp bool) []byte {
		id := p.Identity(name)
		opts := smime.SignOptions{Signer: id.Key, Certificate: id.Certificate, Chain: []*x509.Certificate{p.Intermediate}}
		if stamp {
			opts.TimeStamp = func(_ context.Context, sig []byte) ([]byte, error) { return tsa.Stamp(t, sig, crypto.SHA256), nil }
		}
		var out bytes.Buffer
		if err := smime.Sign(context.Background(), &out, strings.NewReader("Content-Type: text/plain\r\n\r\nsigned before the revocation\r\n"), opts); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	msgs := map[string][]byte{}
	for _, name := range []string{"superseded", "compromised"} {
		msgs[name+"/stamped"], msgs[name+"/plain"] = sign(name, true), sign(name, false)
	}
	time.Sleep(1100 * time.Millisecond) // revocation times have one-second resolution
	p.Revoke(t, "superseded", "superseded")
	p.Revoke(t, "compromised", "keyCompromise")

	for _, tc := range []struct{ msg, outcome, now string }{
		{"superseded/stamped", "good", "revoked"},
		{"superseded/plain", "revoked", ""},
		{"compromised/stamped", "revoked", ""},
		{"compromised/plain", "revoked", ""},
	} {
		t.Run(tc.msg, func(t *testing.T) {
			h.t = t
			name := strings.Split(tc.msg, "/")[0]
			st, err := h.svc.Verify(h.ctx(), ipc.OpenRequest{From: p.Identity(name).Certificate.EmailAddresses[0]}, bytes.NewReader(msgs[tc.msg]), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			sr := st.Layers[0].Signers[0]
			if sr.Outcome != tc.outcome || sr.OutcomeNow != tc.now || st.Revocation != "revoked" {
				t.Fatalf("outcome %q now %q revocation %q, want %q %q revoked: %s", sr.Outcome, sr.OutcomeNow, st.Revocation, tc.outcome, tc.now, sr.Reason)
			}
			if stamped := strings.HasSuffix(tc.msg, "/stamped"); stamped != (sr.TrustedTime != "" && sr.TimeStampAuthority != "") {
				t.Errorf("trusted time %q by %q for %s", sr.TrustedTime, sr.TimeStampAuthority, tc.msg)
			}
		})
	}
}

// TestTimeStampAuthorityRevoked: the time-stamping authority's own
// certificate is checked too (here by a CRL made by `openssl ca`). A token
// from a TSA revoked for key compromise proves no signing time: the signer
// is judged now, and the reason says why the stamp does not count. A token
// from a TSA in good standing still does.
func TestTimeStampAuthorityRevoked(t *testing.T) {
	p := testrevoke.Start(t,
		testrevoke.Spec{Name: "signer", Email: "signer@rev.example", Pointers: testrevoke.CRLOnly},
		testrevoke.Spec{Name: "goodtsa", Pointers: testrevoke.CRLOnly, TimeStamping: true},
		testrevoke.Spec{Name: "badtsa", Pointers: testrevoke.CRLOnly, TimeStamping: true},
	)
	h := revocationHarness(t, p, "soft-fail")
	signer := p.Identity("signer")
	stamped := func(tsaName string) []byte {
		id := p.Identity(tsaName)
		tsa := peer.NewOpenSSLTSA(t, &testpki.Identity{Cert: id.Certificate, Key: id.Key, Chain: []*x509.Certificate{p.Intermediate}},
			peer.OpenSSLTSAOptions{IncludeChain: true})
		opts := smime.SignOptions{Signer: signer.Key, Certificate: signer.Certificate, Chain: []*x509.Certificate{p.Intermediate},
			TimeStamp: func(_ context.Context, sig []byte) ([]byte, error) { return tsa.Stamp(t, sig, crypto.SHA256), nil }}
		var out bytes.Buffer
		if err := smime.Sign(context.Background(), &out, strings.NewReader("Content-Type: text/plain\r\n\r\nstamped\r\n"), opts); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	msgs := map[string][]byte{"goodtsa": stamped("goodtsa"), "badtsa": stamped("badtsa")}
	p.Revoke(t, "badtsa", "keyCompromise")

	for _, tc := range []struct {
		tsa     string
		trusted bool
		reason  string
	}{
		{"goodtsa", true, "time-stamped by goodtsa"},
		{"badtsa", false, "time-stamp by badtsa, but the time-stamping authority's certificate was revoked on"},
	} {
		t.Run(tc.tsa, func(t *testing.T) {
			h.t = t
			st, err := h.svc.Verify(h.ctx(), ipc.OpenRequest{From: "signer@rev.example"}, bytes.NewReader(msgs[tc.tsa]), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			sr := st.Layers[0].Signers[0]
			t.Logf("%s: %s", sr.Outcome, sr.Reason)
			if sr.Outcome != "good" || (sr.TrustedTime != "") != tc.trusted || !strings.Contains(sr.Reason, tc.reason) {
				t.Fatalf("outcome %q, trusted time %q; want good, trusted %v, reason with %q: %s", sr.Outcome, sr.TrustedTime, tc.trusted, tc.reason, sr.Reason)
			}
		})
	}
}
