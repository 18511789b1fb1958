package daemon

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testrevoke"
	"github.com/smimed/smimed/ipc"
)

// revocationPKI is the PKI of the revocation tests: a root the user trusts,
// an issuing CA that travels only in messages, and leaves whose status the
// real `openssl ocsp` responder and the CRL report.
func revocationPKI(t *testing.T) *testrevoke.PKI {
	return testrevoke.Start(t,
		testrevoke.Spec{Name: "alice", Email: "alice@rev.example"},
		testrevoke.Spec{Name: "mallory", Email: "mallory@rev.example", Revoked: true},
		testrevoke.Spec{Name: "carol", Email: "carol@rev.example", Pointers: testrevoke.CRLOnly, Revoked: true, Reason: "superseded"},
		testrevoke.Spec{Name: "dave", Email: "dave@rev.example", Pointers: testrevoke.DeadResponder},
		testrevoke.Spec{Name: "me", Email: "me@rev.example"},
		testrevoke.Spec{Name: "merevoked", Email: "me-old@rev.example", Revoked: true},
		testrevoke.Spec{Name: "medead", Email: "me-dead@rev.example", Pointers: testrevoke.DeadResponder},
	)
}

// revocationHarness is a daemon under policy (soft-fail, hard-fail or
// off) that trusts the PKI's root only.
func revocationHarness(t *testing.T, p *testrevoke.PKI, policy string) *harness {
	h := newHarness(t, harnessOptions{user: "[trust]\nsystem_roots = false\n[revocation]\npolicy = " + quote(policy) + "\ntimeout = \"2s\"\n"})
	root, err := os.ReadFile(p.RootFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.TrustAdd(h.ctx(), root); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) verifyFrom(p *testrevoke.PKI, name, from string) ipc.MessageStatus {
	h.t.Helper()
	msg := "Content-Type: text/plain\r\n\r\nFrom " + name + ".\r\n"
	signed := p.Sign(h.t, name, []byte(msg))
	st, err := h.svc.Verify(h.ctx(), ipc.OpenRequest{From: from}, bytes.NewReader(signed), io.Discard)
	if err != nil {
		h.t.Fatalf("Verify(%s): %v", name, err)
	}
	return st
}

// TestRevokedSigner: a signer's revocation, found by OCSP or by the CRL,
// makes the signature "revoked"; an unreachable responder is "unknown",
// which soft-fail shows beside a good signature and hard-fail does not
// accept; "off" asks no one. Each message carries the issuing CA, which the
// user does not have: the intermediate delivered only in the message.
func TestRevokedSigner(t *testing.T) {
	p := revocationPKI(t)
	cases := []struct {
		policy, name                   string
		signature, revocation, rReason string
	}{
		{"soft-fail", "alice", "good", "good", ""},
		{"soft-fail", "mallory", "revoked", "revoked", "keyCompromise"},
		{"soft-fail", "carol", "revoked", "revoked", "superseded"},
		{"soft-fail", "dave", "good", "unknown", ""},
		{"hard-fail", "alice", "good", "good", ""},
		{"hard-fail", "mallory", "revoked", "revoked", "keyCompromise"},
		{"hard-fail", "dave", "untrusted", "unknown", ""},
		{"off", "mallory", "good", "not-checked", ""},
	}
	harnesses := map[string]*harness{}
	for _, policy := range []string{"soft-fail", "hard-fail", "off"} {
		harnesses[policy] = revocationHarness(t, p, policy)
	}
	for _, tc := range cases {
		t.Run(tc.policy+"/"+tc.name, func(t *testing.T) {
			h := harnesses[tc.policy]
			h.t = t
			before := p.OCSPRequests() + p.CRLRequests()
			st := h.verifyFrom(p, tc.name, p.Identity(tc.name).Certificate.EmailAddresses[0])
			if st.Signature != tc.signature || st.Revocation != tc.revocation {
				t.Fatalf("signature %q revocation %q, want %q %q; status %+v", st.Signature, st.Revocation, tc.signature, tc.revocation, st)
			}
			sr := st.Layers[0].Signers[0]
			if tc.revocation == "not-checked" {
				if n := p.OCSPRequests() + p.CRLRequests(); n != before {
					t.Errorf("policy off asked the responders %d times", n-before)
				}
				return
			}
			if sr.Revocation == nil || sr.Revocation.Status != tc.revocation || sr.Revocation.Reason != tc.rReason {
				t.Fatalf("signer revocation %+v, want %s %s", sr.Revocation, tc.revocation, tc.rReason)
			}
			if tc.revocation == "revoked" {
				if sr.Revocation.RevokedAt == "" || !strings.Contains(sr.Reason, "revoked") {
					t.Errorf("a revoked signer needs a date and a reason: %+v", sr)
				}
			}
			if tc.revocation == "unknown" && (sr.Revocation.Detail == "" || !strings.Contains(sr.Reason, "revocation")) {
				t.Errorf("an unknown status needs a detail and a reason: %+v", sr)
			}
		})
	}
}

// TestRevokedRecipient: encrypting to a revoked certificate is refused with
// the reason per address; an unknown status is accepted under soft-fail and
// refused under hard-fail. The recipients' certificates were learnt from
// their signed mail, whose issuing CA the daemon kept for this check.
func TestRevokedRecipient(t *testing.T) {
	p := revocationPKI(t)
	for _, tc := range []struct {
		policy string
		to     string
		reason string // "" = encryption works
	}{
		{"soft-fail", "alice", ""},
		{"soft-fail", "mallory", "revoked"},
		{"soft-fail", "dave", ""},
		{"hard-fail", "alice", ""},
		{"hard-fail", "mallory", "revoked"},
		{"hard-fail", "dave", "revocation-unknown"},
	} {
		t.Run(tc.policy+"/"+tc.to, func(t *testing.T) {
			h := revocationHarness(t, p, tc.policy)
			h.importP12(p.PKCS12(t, "me", p12Password))
			addr := p.Identity(tc.to).Certificate.EmailAddresses[0]
			// Learn the certificate from a signed message (the address
			// book keeps it whatever its revocation status: that is
			// checked when composing).
			if _, err := h.svc.CertsAdd(h.ctx(), p.Sign(t, tc.to, []byte("Content-Type: text/plain\r\n\r\nhi\r\n"))); err != nil {
				t.Fatal(err)
			}
			look, err := h.svc.CertsFind(h.ctx(), addr)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = h.svc.Encrypt(h.ctx(), ipc.EncryptRequest{To: []string{addr}, From: "me@rev.example"},
				strings.NewReader("From: me@rev.example\r\nTo: "+addr+"\r\nSubject: x\r\n\r\nsecret\r\n"), &out)
			if tc.reason == "" {
				if err != nil || len(look.Certificates) == 0 {
					t.Fatalf("Encrypt: %v; CertsFind %+v", err, look)
				}
				return
			}
			var ie *ipc.Error
			if !errors.As(err, &ie) || ie.Name != ipc.NoRecipientCertificate || !strings.Contains(ie.Message, addr+" ("+tc.reason+")") {
				t.Fatalf("Encrypt to %s: %v, want NoRecipientCertificate naming (%s)", addr, err, tc.reason)
			}
			if look.Reason != tc.reason || len(look.Certificates) != 0 {
				t.Errorf("CertsFind: %+v, want reason %s", look, tc.reason)
			}
		})
	}
}

// TestRevokedOwnCertificate: signing with one's own revoked certificate,
// or encrypting the sent copy to it, is refused with the reason before any
// prompt; an own certificate whose status cannot be found out is refused
// under hard-fail and used under soft-fail.
func TestRevokedOwnCertificate(t *testing.T) {
	p := revocationPKI(t)
	for _, tc := range []struct {
		policy, name, from string
		refused            string // "" = signing works
	}{
		{"soft-fail", "merevoked", "me-old@rev.example", "keyCompromise"},
		{"hard-fail", "medead", "me-dead@rev.example", "could not be checked"},
		{"soft-fail", "medead", "me-dead@rev.example", ""},
	} {
		t.Run(tc.policy+"/"+tc.name, func(t *testing.T) {
			h := revocationHarness(t, p, tc.policy)
			h.importP12(p.PKCS12(t, tc.name, p12Password))
			prompts := len(h.prompts())
			h.setPINs(keyPass)
			msg := "From: " + tc.from + "\r\nTo: " + tc.from + "\r\nSubject: x\r\n\r\nbody\r\n"
			err := h.svc.Sign(h.ctx(), ipc.SignRequest{From: tc.from}, strings.NewReader(msg), io.Discard)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("Sign under %s: %v", tc.policy, err)
				}
				return
			}
			var ie *ipc.Error
			if !errors.As(err, &ie) || ie.Name != ipc.NoIdentity || !strings.Contains(ie.Message, tc.refused) {
				t.Fatalf("Sign: %v, want NoIdentity saying %q", err, tc.refused)
			}
			// Encrypting to a good recipient: the sent copy would go to
			// the same own certificate, which is refused.
			if _, err := h.svc.CertsAdd(h.ctx(), p.Sign(t, "alice", []byte("Content-Type: text/plain\r\n\r\nhi\r\n"))); err != nil {
				t.Fatal(err)
			}
			err = h.svc.Encrypt(h.ctx(), ipc.EncryptRequest{To: []string{"alice@rev.example"}, From: tc.from}, strings.NewReader(msg), io.Discard)
			if !errors.As(err, &ie) || ie.Name != ipc.NoIdentity || !strings.Contains(ie.Message, "sent copy") || !strings.Contains(ie.Message, tc.refused) {
				t.Fatalf("Encrypt with a refused own certificate: %v, want NoIdentity about the sent copy saying %q", err, tc.refused)
			}
			if n := len(h.prompts()); n != prompts {
				t.Errorf("%d prompts shown for refused operations", n-prompts)
			}
		})
	}
}

// importP12 imports a PKCS #12 file as the user's identity.
func (h *harness) importP12(p12 []byte) ipc.Identity {
	h.t.Helper()
	h.setPINs(keyPass, keyPass)
	got, err := h.svc.ImportPKCS12(h.ctx(), p12, []byte(p12Password))
	if err != nil {
		h.t.Fatalf("ImportPKCS12: %v", err)
	}
	return got
}
