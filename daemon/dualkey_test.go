package daemon

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/audit"
	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/smime"
	"github.com/smimed/smimed/smime/cms"
)

// recipientsOf reports, for each of certs, whether the encrypted message
// has a RecipientInfo for it, and how many RecipientInfos it has in all.
func recipientsOf(t *testing.T, msg []byte, certs ...*x509.Certificate) ([]bool, int) {
	t.Helper()
	got := make([]bool, len(certs))
	n := -1
	_, _ = smime.Open(context.Background(), io.Discard, bytes.NewReader(msg), smime.OpenOptions{
		Roots: x509.NewCertPool(),
		FindKey: func(_ context.Context, ris []cms.RecipientInfo) (*smime.DecryptionKey, error) {
			n = len(ris)
			for _, ri := range ris {
				for i, c := range certs {
					if ri.Matches(c) {
						got[i] = true
					}
				}
			}
			return nil, smime.ErrNoKey
		},
	})
	if n < 0 {
		t.Fatal("not an encrypted message")
	}
	return got, n
}

// signerOf verifies a signed message against the PKI's root and returns
// its one signer.
func signerOf(t *testing.T, pki *testpki.PKI, msg []byte) (smime.SignerResult, *smime.Status) {
	t.Helper()
	st, err := smime.Verify(context.Background(), io.Discard, bytes.NewReader(msg), smime.OpenOptions{Roots: pki.Roots()})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, l := range st.Layers {
		if len(l.Signers) == 1 && l.Signers[0].Certificate != nil {
			if l.Signers[0].Outcome != smime.OutcomeGood {
				t.Fatalf("signature %s: %s", l.Signers[0].Outcome, l.Signers[0].Reason)
			}
			return l.Signers[0], st
		}
	}
	t.Fatalf("no signer in %+v", st.Layers)
	return smime.SignerResult{}, nil
}

// lastAuditIdentity returns the identity of the last audit line, after
// checking its operation.
func (h *harness) lastAuditIdentity(op string) string {
	h.t.Helper()
	lines := h.auditLines()
	if len(lines) == 0 {
		h.t.Fatal("no audit line")
	}
	l := lines[len(lines)-1]
	if l.Operation != op || l.Outcome != audit.OutcomeOK {
		h.t.Fatalf("last audit line %+v, want %s ok", l, op)
	}
	return l.Identity.ID
}

// TestDualKeyPairOwn: the user has a signing-only certificate
// (digitalSignature) and an encryption-only one (keyEncipherment) for the
// same address, the signing one expiring later. Sign uses the signing one
// and names the encryption one in SMIMEEncryptionKeyPreference; the sent
// copy, Encrypt to oneself and CertsFind use the encryption one, never the
// signing one; Decrypt opens with it.
func TestDualKeyPairOwn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ctx := h.ctx()
	now := time.Now()
	sig := h.pki.Issue(t, testpki.Options{Email: "alice@example.org", KeyUsage: x509.KeyUsageDigitalSignature,
		NotAfter: now.Add(2 * 365 * 24 * time.Hour)})
	enc := h.pki.Issue(t, testpki.Options{Email: "alice@example.org", KeyUsage: x509.KeyUsageKeyEncipherment,
		NotAfter: now.Add(365 * 24 * time.Hour)})
	bob := h.pki.Issue(t, testpki.Options{Email: "bob@example.org"})
	sigID := h.importIdentity(sig)
	encID := h.importIdentity(enc)
	if !sigID.CanSign || sigID.CanDecrypt || encID.CanSign || !encID.CanDecrypt {
		t.Fatalf("identities: signing %+v, encryption %+v", sigID, encID)
	}
	h.trustRoot()
	if _, err := h.svc.CertsAdd(ctx, testpki.CertPEM(bob.Cert)); err != nil {
		t.Fatal(err)
	}
	msg := newMail("Alice <alice@example.org>", "bob@example.org", "Dual", "signed with one key, read with the other")

	// Sign: the signing certificate signs; the encryption one is the
	// preferred encryption key; capabilities are advertised.
	h.setPINs(keyPass)
	var signed bytes.Buffer
	if err := h.svc.Sign(ctx, ipc.SignRequest{}, bytes.NewReader(msg), &signed); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if id := h.lastAuditIdentity(audit.OpSign); id != sigID.ID {
		t.Errorf("signed with %s, want the signing identity %s", id, sigID.ID)
	}
	sr, sst := signerOf(t, h.pki, signed.Bytes())
	if !slices.ContainsFunc(sst.Certificates, enc.Cert.Equal) {
		t.Error("the signed message does not carry the encryption certificate its preference names, so no one can learn it")
	}
	if !sr.Certificate.Equal(sig.Cert) {
		t.Errorf("signer certificate %s, want the signing one", sr.Certificate.Subject)
	}
	if p := sr.EncryptionKeyPreference; p == nil || !p.Matches(enc.Cert) || p.Matches(sig.Cert) {
		t.Errorf("SMIMEEncryptionKeyPreference %+v does not name the encryption certificate", p)
	}
	if len(sr.Capabilities) == 0 {
		t.Error("no SMIMECapabilities")
	}
	// The encryption identity cannot sign, even when named.
	err := h.svc.Sign(ctx, ipc.SignRequest{Identity: encID.ID}, bytes.NewReader(msg), io.Discard)
	if ie := wantName(t, err, ipc.NoIdentity); !strings.Contains(ie.Message, "does not allow signing") {
		t.Errorf("Sign with the encryption identity: %v", ie)
	}

	// Encrypt to oneself (To and From): the encryption certificate only.
	var enc1 bytes.Buffer
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"alice@example.org"}, From: "alice@example.org"},
		bytes.NewReader(msg), &enc1); err != nil {
		t.Fatalf("Encrypt to self: %v", err)
	}
	if got, n := recipientsOf(t, enc1.Bytes(), sig.Cert, enc.Cert); got[0] || !got[1] || n != 1 {
		t.Errorf("Encrypt to self: recipients signing=%v encryption=%v of %d", got[0], got[1], n)
	}

	// Sign and encrypt to Bob: signed with the signing key, the sent copy
	// encrypted to the encryption certificate only.
	h.setPINs(keyPass)
	var enc2 bytes.Buffer
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org"}, Sign: true}, bytes.NewReader(msg), &enc2); err != nil {
		t.Fatalf("Encrypt+sign: %v", err)
	}
	if id := h.lastAuditIdentity(audit.OpSignEncrypt); id != sigID.ID {
		t.Errorf("sign-encrypt used %s, want the signing identity", id)
	}
	if got, n := recipientsOf(t, enc2.Bytes(), sig.Cert, enc.Cert, bob.Cert); got[0] || !got[1] || !got[2] || n != 2 {
		t.Errorf("Encrypt+sign: recipients signing=%v encryption=%v bob=%v of %d", got[0], got[1], got[2], n)
	}

	// Decrypt the sent copy: opened with the encryption identity, the
	// inner signature good.
	h.setPINs(keyPass)
	var plain bytes.Buffer
	st, err := h.svc.Decrypt(ctx, ipc.OpenRequest{}, bytes.NewReader(enc2.Bytes()), &plain)
	if err != nil || st.Decryption != "ok" || st.Signature != "good" || st.Signer.SHA256 != sigID.ID ||
		!strings.Contains(plain.String(), "read with the other") {
		t.Fatalf("Decrypt: %+v, %v", st, err)
	}
	if id := h.lastAuditIdentity(audit.OpDecrypt); id != encID.ID {
		t.Errorf("decrypted with %s, want the encryption identity", id)
	}

	// CertsFind for one's own address: the encryption certificate only.
	look, err := h.svc.CertsFind(ctx, "alice@example.org")
	if err != nil || len(look.Certificates) != 1 || look.Certificates[0].SHA256 != encID.ID {
		t.Fatalf("CertsFind(alice) = %+v, %v", look, err)
	}
	h.assertNoSecrets()
}

// TestDualKeyPairCorrespondent: Bob signs with a signing-only certificate
// and names his encryption-only certificate (included in the message) in
// SMIMEEncryptionKeyPreference. Once his mail is verified, CertsFind lists
// the encryption certificate first (before an older ordinary certificate
// of his that expires later) and Encrypt uses it, never the signing one.
// Carol has only a signing-only certificate: wrong-key-usage.
func TestDualKeyPairCorrespondent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ctx := h.ctx()
	now := time.Now()
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	bobOld := h.pki.Issue(t, testpki.Options{Email: "bob@example.org", NotAfter: now.Add(3 * 365 * 24 * time.Hour)})
	bobSig := h.pki.Issue(t, testpki.Options{Email: "bob@example.org", KeyUsage: x509.KeyUsageDigitalSignature})
	bobEnc := h.pki.Issue(t, testpki.Options{Email: "bob@example.org", KeyUsage: x509.KeyUsageKeyEncipherment})
	carolSig := h.pki.Issue(t, testpki.Options{Email: "carol@example.org", KeyUsage: x509.KeyUsageDigitalSignature})
	h.importIdentity(alice)
	h.trustRoot()
	if _, err := h.svc.CertsAdd(ctx, testpki.CertPEM(bobOld.Cert)); err != nil {
		t.Fatal(err)
	}
	if look, _ := h.svc.CertsFind(ctx, "bob@example.org"); len(look.Certificates) != 1 || look.Certificates[0].SHA256 != certbook.Fingerprint(bobOld.Cert) {
		t.Fatalf("CertsFind(bob) before his mail = %+v", look)
	}

	var fromBob bytes.Buffer
	if err := smime.Sign(ctx, &fromBob, bytes.NewReader(newMail("bob@example.org", "alice@example.org", "keys", "my new keys")),
		smime.SignOptions{Signer: bobSig.Key, Certificate: bobSig.Cert, Chain: append(append([]*x509.Certificate(nil), bobSig.Chain...), bobEnc.Cert),
			EncryptionCertificate: bobEnc.Cert}); err != nil {
		t.Fatal(err)
	}
	st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(fromBob.Bytes()), io.Discard)
	if err != nil || st.Signature != "good" || st.Signer.SHA256 != certbook.Fingerprint(bobSig.Cert) {
		t.Fatalf("Verify Bob's mail: %+v, %v", st, err)
	}

	look, err := h.svc.CertsFind(ctx, "bob@example.org")
	if err != nil || look.Reason != "" || len(look.Certificates) != 2 {
		t.Fatalf("CertsFind(bob) = %+v, %v", look, err)
	}
	if look.Certificates[0].SHA256 != certbook.Fingerprint(bobEnc.Cert) || look.Certificates[1].SHA256 != certbook.Fingerprint(bobOld.Cert) {
		t.Errorf("CertsFind(bob) order: %s, %s; want the preferred encryption certificate, then the old one",
			look.Certificates[0].SHA256[:12], look.Certificates[1].SHA256[:12])
	}
	var enc bytes.Buffer
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org"}, From: "alice@example.org"},
		bytes.NewReader(newMail("alice@example.org", "bob@example.org", "s", "to your encryption key")), &enc); err != nil {
		t.Fatalf("Encrypt to Bob: %v", err)
	}
	if got, n := recipientsOf(t, enc.Bytes(), bobEnc.Cert, bobSig.Cert, bobOld.Cert, alice.Cert); !got[0] || got[1] || got[2] || !got[3] || n != 2 {
		t.Errorf("Encrypt to Bob: recipients encryption=%v signing=%v old=%v alice=%v of %d", got[0], got[1], got[2], got[3], n)
	}

	// Carol: signing-only, no encryption certificate named.
	var fromCarol bytes.Buffer
	if err := smime.Sign(ctx, &fromCarol, bytes.NewReader(newMail("carol@example.org", "alice@example.org", "hi", "hi")),
		smime.SignOptions{Signer: carolSig.Key, Certificate: carolSig.Cert, Chain: carolSig.Chain}); err != nil {
		t.Fatal(err)
	}
	if st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(fromCarol.Bytes()), io.Discard); err != nil || st.Signature != "good" {
		t.Fatalf("Verify Carol's mail: %+v, %v", st, err)
	}
	look, err = h.svc.CertsFind(ctx, "carol@example.org")
	if err != nil || look.Reason != "wrong-key-usage" || len(look.Certificates) != 0 {
		t.Fatalf("CertsFind(carol) = %+v, %v", look, err)
	}
	err = h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"carol@example.org"}, From: "alice@example.org"},
		bytes.NewReader(newMail("alice@example.org", "carol@example.org", "s", "b")), io.Discard)
	if ie := wantName(t, err, ipc.NoRecipientCertificate); !strings.Contains(ie.Message, "carol@example.org (wrong-key-usage)") {
		t.Errorf("Encrypt to Carol: %v", ie)
	}
}

// encryptWithOpenSSL encrypts msg to cert with the real `openssl cms
// -encrypt`, which does not look at the certificate's validity: mail sent
// while it was valid.
func encryptWithOpenSSL(t *testing.T, cert *x509.Certificate, msg []byte) []byte {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("this test needs openssl (Debian package openssl): %v", err)
	}
	dir := t.TempDir()
	certPath, in := filepath.Join(dir, "to.pem"), filepath.Join(dir, "msg.eml")
	writeFile(t, certPath, string(testpki.CertPEM(cert)))
	writeFile(t, in, string(msg))
	out, err := exec.Command(bin, "cms", "-encrypt", "-aes256", "-in", in, certPath).Output()
	if err != nil {
		t.Fatalf("openssl cms -encrypt: %v", err)
	}
	// openssl writes the MIME entity; the mail around it has the usual
	// header fields.
	return append([]byte("From: bob@example.org\nTo: alice@example.org\nSubject: Old news\n"), out...)
}

// TestExpiredEncryptionKey: mail encrypted to a certificate that has since
// expired, or been superseded by a newer one for the same address, still
// decrypts with its identity (made by the engine and by openssl, which
// ignore validity). The old identities are never chosen for new
// signatures, as recipients or by CertsFind; with only the expired one,
// signing and encrypting fail with NoIdentity saying it expired.
func TestExpiredEncryptionKey(t *testing.T) {
	t.Parallel()
	pki := testpki.New(t)
	now := time.Now()
	expired := pki.Issue(t, testpki.Options{Email: "alice@example.org", NotBefore: now.Add(-2 * 365 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour)})
	superseded := pki.Issue(t, testpki.Options{Email: "alice@example.org", NotBefore: now.Add(-365 * 24 * time.Hour), NotAfter: now.Add(30 * 24 * time.Hour)})
	current := pki.Issue(t, testpki.Options{Email: "alice@example.org", NotAfter: now.Add(2 * 365 * 24 * time.Hour)})
	bob := pki.Issue(t, testpki.Options{Email: "bob@example.org"})
	oldMsg := newMail("bob@example.org", "alice@example.org", "Old news", "sent while the old key was valid")

	// oldMail returns mail to cert made by the engine and by openssl.
	oldMail := func(t *testing.T, cert *x509.Certificate) map[string][]byte {
		var b bytes.Buffer
		if err := smime.Encrypt(context.Background(), &b, bytes.NewReader(oldMsg),
			smime.EncryptOptions{Recipients: []smime.Recipient{{Certificate: cert}}}); err != nil {
			t.Fatalf("smime.Encrypt to %s: %v", cert.NotAfter, err)
		}
		return map[string][]byte{"engine": b.Bytes(), "openssl": encryptWithOpenSSL(t, cert, oldMsg)}
	}
	decrypts := func(t *testing.T, h *harness, mail map[string][]byte, wantID string) {
		t.Helper()
		for who, m := range mail {
			h.setPINs(keyPass)
			var plain bytes.Buffer
			st, err := h.svc.Decrypt(h.ctx(), ipc.OpenRequest{}, bytes.NewReader(m), &plain)
			if err != nil || st.Decryption != "ok" || !strings.Contains(plain.String(), "sent while the old key was valid") {
				t.Fatalf("Decrypt old mail (%s): %+v, %v", who, st, err)
			}
			if id := h.lastAuditIdentity(audit.OpDecrypt); id != wantID {
				t.Fatalf("old mail (%s) decrypted with %s, want %s", who, id, wantID)
			}
		}
	}

	t.Run("only the expired one", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{pki: pki})
		ctx := h.ctx()
		old := h.importIdentity(expired)
		h.trustRoot()
		if _, err := h.svc.CertsAdd(ctx, testpki.CertPEM(bob.Cert)); err != nil {
			t.Fatal(err)
		}
		decrypts(t, h, oldMail(t, expired.Cert), old.ID)

		msg := newMail("alice@example.org", "bob@example.org", "New", "new mail")
		expiredOn := "your certificate for alice@example.org expired on " + expired.Cert.NotAfter.UTC().Format(time.RFC3339)
		err := h.svc.Sign(ctx, ipc.SignRequest{}, bytes.NewReader(msg), io.Discard)
		if ie := wantName(t, err, ipc.NoIdentity); !strings.Contains(ie.Message, expiredOn) {
			t.Errorf("Sign: %v", ie)
		}
		err = h.svc.Sign(ctx, ipc.SignRequest{Identity: old.ID}, bytes.NewReader(msg), io.Discard)
		if ie := wantName(t, err, ipc.NoIdentity); !strings.Contains(ie.Message, "not valid now") {
			t.Errorf("Sign with the expired identity named: %v", ie)
		}
		for _, sign := range []bool{false, true} {
			err = h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org"}, Sign: sign}, bytes.NewReader(msg), io.Discard)
			if ie := wantName(t, err, ipc.NoIdentity); !strings.Contains(ie.Message, expiredOn) {
				t.Errorf("Encrypt (sign=%v) from the expired identity: %v", sign, ie)
			}
		}
		err = h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"alice@example.org"}, From: "alice@example.org"}, bytes.NewReader(msg), io.Discard)
		if ie := wantName(t, err, ipc.NoRecipientCertificate); !strings.Contains(ie.Message, "alice@example.org (expired)") {
			t.Errorf("Encrypt to the expired identity: %v", ie)
		}
		if look, err := h.svc.CertsFind(ctx, "alice@example.org"); err != nil || look.Reason != "expired" || len(look.Certificates) != 0 {
			t.Errorf("CertsFind(alice) = %+v, %v", look, err)
		}
		for _, l := range h.auditLines() {
			if l.Operation == audit.OpSign || l.Operation == audit.OpSignEncrypt {
				t.Errorf("an expired identity was used to sign: %+v", l)
			}
		}
	})

	t.Run("superseded", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, harnessOptions{pki: pki})
		ctx := h.ctx()
		// Imported newest first, so that the order of import decides nothing.
		cur := h.importIdentity(current)
		mid := h.importIdentity(superseded)
		old := h.importIdentity(expired)
		h.trustRoot()
		if _, err := h.svc.CertsAdd(ctx, testpki.CertPEM(bob.Cert)); err != nil {
			t.Fatal(err)
		}
		decrypts(t, h, oldMail(t, expired.Cert), old.ID)
		decrypts(t, h, oldMail(t, superseded.Cert), mid.ID)

		msg := newMail("alice@example.org", "bob@example.org", "New", "new mail")
		h.setPINs(keyPass)
		var signed bytes.Buffer
		if err := h.svc.Sign(ctx, ipc.SignRequest{}, bytes.NewReader(msg), &signed); err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if id := h.lastAuditIdentity(audit.OpSign); id != cur.ID {
			t.Errorf("signed with %s, want the current identity", id)
		}
		if sr, _ := signerOf(t, pki, signed.Bytes()); !sr.Certificate.Equal(current.Cert) || !sr.EncryptionKeyPreference.Matches(current.Cert) {
			t.Errorf("signed by %s", sr.Certificate.NotAfter)
		}

		for _, sign := range []bool{false, true} {
			h.setPINs(keyPass)
			var enc bytes.Buffer
			if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org", "alice@example.org"}, Sign: sign},
				bytes.NewReader(msg), &enc); err != nil {
				t.Fatalf("Encrypt (sign=%v): %v", sign, err)
			}
			got, n := recipientsOf(t, enc.Bytes(), current.Cert, superseded.Cert, expired.Cert, bob.Cert)
			if !got[0] || got[1] || got[2] || !got[3] || n != 2 {
				t.Errorf("Encrypt (sign=%v): recipients current=%v superseded=%v expired=%v bob=%v of %d", sign, got[0], got[1], got[2], got[3], n)
			}
			if sign {
				if id := h.lastAuditIdentity(audit.OpSignEncrypt); id != cur.ID {
					t.Errorf("sign-encrypt used %s, want the current identity", id)
				}
			}
		}

		look, err := h.svc.CertsFind(ctx, "alice@example.org")
		if err != nil || len(look.Certificates) == 0 || look.Certificates[0].SHA256 != cur.ID {
			t.Fatalf("CertsFind(alice) = %+v, %v", look, err)
		}
		for _, c := range look.Certificates {
			if c.SHA256 == old.ID {
				t.Errorf("CertsFind lists the expired certificate")
			}
		}
		h.assertNoSecrets()
	})
}
