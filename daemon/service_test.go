package daemon

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/audit"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/prompt/pinentry/pinentrytest"
	"github.com/smimed/smimed/smime"
)

// TestRoundTrip signs, verifies, encrypts (signed and not) and decrypts
// through the Service for RSA and EC identities, with exactly one prompt
// per private-key operation, an audit line for each, and no passphrase in
// any log.
func TestRoundTrip(t *testing.T) {
	for _, kt := range []testpki.KeyType{testpki.RSA2048, testpki.P256} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			ctx := h.ctx()
			alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org", Key: kt})
			bob := h.pki.Issue(t, testpki.Options{Email: "bob@example.org", Key: kt})

			ident := h.importIdentity(alice)
			if ident.ID != digestOf(alice.Cert.Raw) || !ident.CanSign || !ident.CanDecrypt || ident.Source != "file" ||
				!slices.Equal(ident.Emails, []string{"alice@example.org"}) || ident.KeyType != keyType(alice.Cert) {
				t.Errorf("imported identity = %+v", ident)
			}
			if n := len(h.prompts()); n != 2 {
				t.Errorf("import showed %d prompts, want 2 (new passphrase, repeated)", n)
			}
			if ids, _ := h.notes.counts(); ids != 1 {
				t.Errorf("IdentitiesChanged emitted %d times, want 1", ids)
			}
			h.trustRoot()
			if _, err := h.svc.CertsAdd(ctx, testpki.CertPEM(bob.Cert)); err != nil {
				t.Fatal(err)
			}
			msg := newMail("Alice <alice@example.org>", "bob@example.org", "Quarterly report", "Hello Bob, the numbers are in.")

			// Sign: one prompt that says what, for which message, with which key.
			before := len(h.prompts())
			h.setPINs(keyPass)
			var signed bytes.Buffer
			err := h.svc.Sign(ctx, ipc.SignRequest{From: "Alice@Example.ORG", Subject: "Quarterly report", Counterpart: "bob@example.org"},
				bytes.NewReader(msg), &signed)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			sess := sessionsSince(h.prompts(), before)
			if len(sess) != 1 {
				t.Fatalf("Sign showed %d prompts, want 1", len(sess))
			}
			desc := sess[0].Description()
			for _, want := range []string{"sign", "Quarterly report", "bob@example.org", "alice@example.org"} {
				if !strings.Contains(desc, want) {
					t.Errorf("sign prompt %q does not mention %q", desc, want)
				}
			}

			// Verify: no prompt, good signature, content out.
			before = len(h.prompts())
			var content bytes.Buffer
			st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(signed.Bytes()), &content)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if st.Signature != "good" || !st.Signed || st.Encrypted || st.Signer.Email != "alice@example.org" ||
				st.Signer.SHA256 != ident.ID || st.Decryption != "none" || len(st.Layers) != 1 || st.Layers[0].Form != "detached" {
				t.Errorf("Verify status = %+v", st)
			}
			if !strings.Contains(content.String(), "Hello Bob") {
				t.Errorf("Verify wrote %q", content.String())
			}
			if n := len(h.prompts()) - before; n != 0 {
				t.Errorf("Verify showed %d prompts", n)
			}

			// Sign and encrypt to Bob (and Alice's own copy): one prompt.
			before = len(h.prompts())
			h.setPINs(keyPass)
			var enc bytes.Buffer
			if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"BOB@example.org"}, Sign: true, Subject: "Quarterly report"},
				bytes.NewReader(msg), &enc); err != nil {
				t.Fatalf("Encrypt+sign: %v", err)
			}
			if n := len(h.prompts()) - before; n != 1 {
				t.Errorf("Encrypt+sign showed %d prompts, want 1", n)
			}

			// Decrypt the sent copy: one prompt, for decrypting.
			before = len(h.prompts())
			h.setPINs(keyPass)
			var plain bytes.Buffer
			st, err = h.svc.Decrypt(ctx, ipc.OpenRequest{Subject: "Quarterly report", From: "alice@example.org"}, bytes.NewReader(enc.Bytes()), &plain)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !st.Encrypted || !st.Signed || st.Signature != "good" || st.Decryption != "ok" {
				t.Errorf("Decrypt status = %+v", st)
			}
			if !strings.Contains(plain.String(), "Hello Bob") {
				t.Errorf("Decrypt wrote %q", plain.String())
			}
			sess = sessionsSince(h.prompts(), before)
			if len(sess) != 1 || !strings.Contains(sess[0].Description(), "decrypt") || !strings.Contains(sess[0].Description(), "Quarterly report") {
				t.Errorf("Decrypt prompts: %d, %+v", len(sess), sess)
			}

			// Encrypt without signing: no private key, no prompt, no audit.
			before = len(h.prompts())
			var enc2 bytes.Buffer
			if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org"}}, bytes.NewReader(msg), &enc2); err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if n := len(h.prompts()) - before; n != 0 {
				t.Errorf("Encrypt showed %d prompts", n)
			}
			h.setPINs(keyPass)
			plain.Reset()
			before = len(h.prompts())
			st, err = h.svc.Decrypt(ctx, ipc.OpenRequest{}, bytes.NewReader(enc2.Bytes()), &plain)
			if err != nil || st.Signature != "none" || st.Decryption != "ok" || !strings.Contains(plain.String(), "Hello Bob") {
				t.Errorf("Decrypt of unsigned: %v %+v", err, st)
			}
			// Without Subject and From in the request, the prompt uses the
			// message's own header fields.
			sess = sessionsSince(h.prompts(), before)
			if len(sess) != 1 || !strings.Contains(sess[0].Description(), "Quarterly report") || !strings.Contains(sess[0].Description(), "alice@example.org") {
				t.Errorf("Decrypt prompt without request fields: %+v", sess)
			}

			lines := h.auditLines()
			wantOps := []string{audit.OpImport, audit.OpSign, audit.OpSignEncrypt, audit.OpDecrypt, audit.OpDecrypt}
			var ops []string
			for _, l := range lines {
				ops = append(ops, l.Operation)
			}
			if !slices.Equal(ops, wantOps) {
				t.Fatalf("audit operations %v, want %v", ops, wantOps)
			}
			digests := []string{digestOf(alice.PKCS12(t, p12Password, false)), digestOf(msg), digestOf(msg), digestOf(enc.Bytes()), digestOf(enc2.Bytes())}
			for i, l := range lines {
				if l.Outcome != "ok" || l.CallerPID != 4242 || l.CallerExe != "/usr/bin/smimectl" || l.CallerUID != uint32(os.Getuid()) ||
					l.Identity.ID != ident.ID || l.Identity.Subject != alice.Cert.Subject.String() || l.Time.IsZero() || l.Partial {
					t.Errorf("audit line %d = %+v", i, l)
				}
				if i > 0 && l.MessageDigest != digests[i] { // the PKCS #12 encoding is randomised; checked below
					t.Errorf("audit line %d digest %s, want %s", i, l.MessageDigest, digests[i])
				}
			}
			if len(lines[0].MessageDigest) != 64 {
				t.Errorf("import digest %q", lines[0].MessageDigest)
			}
			h.assertNoSecrets()
		})
	}
}

// TestPromptOutcomes: a cancelled prompt gives Cancelled, a wrong
// passphrase PinIncorrect after exactly one prompt (never retried) and the
// next prompt says the last one was wrong; both audited.
func TestPromptOutcomes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ctx := h.ctx()
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	h.importIdentity(alice)
	msg := newMail("alice@example.org", "bob@example.org", "s", "body")
	var enc bytes.Buffer
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{From: "alice@example.org"}, bytes.NewReader(msg), &enc); err != nil {
		t.Fatal(err)
	}
	sign := func() error {
		return h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(msg), io.Discard)
	}
	decrypt := func() error {
		_, err := h.svc.Decrypt(ctx, ipc.OpenRequest{}, bytes.NewReader(enc.Bytes()), io.Discard)
		return err
	}
	tests := []struct {
		name    string
		op      func() error
		audit   string
		pins    []string
		want    ipc.ErrorName
		outcome string
	}{
		{"sign cancelled", sign, audit.OpSign, nil, ipc.Cancelled, "cancelled"},
		{"sign wrong passphrase", sign, audit.OpSign, []string{wrongPass, keyPass}, ipc.PinIncorrect, "wrong-passphrase"},
		{"decrypt cancelled", decrypt, audit.OpDecrypt, nil, ipc.Cancelled, "cancelled"},
		{"decrypt wrong passphrase", decrypt, audit.OpDecrypt, []string{wrongPass, keyPass}, ipc.PinIncorrect, "wrong-passphrase"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.setPINs(tc.pins...)
			before := len(h.prompts())
			auditBefore := len(h.auditLines())
			ie := wantName(t, tc.op(), tc.want)
			if n := len(h.prompts()) - before; n != 1 {
				t.Errorf("%d prompts, want exactly 1 (no retry)", n)
			}
			if tc.want == ipc.PinIncorrect && !strings.Contains(ie.Message, "passphrase") {
				t.Errorf("message %q does not say passphrase", ie.Message)
			}
			lines := h.auditLines()[auditBefore:]
			if len(lines) != 1 || lines[0].Outcome != tc.outcome || lines[0].Operation != tc.audit {
				t.Errorf("audit lines %+v, want one %s %s", lines, tc.audit, tc.outcome)
			}
			if tc.want != ipc.PinIncorrect {
				return
			}
			// The next attempt is a new request, and its prompt says why.
			before = len(h.prompts())
			if err := tc.op(); err != nil {
				t.Fatalf("after a wrong passphrase, the right one: %v", err)
			}
			sess := sessionsSince(h.prompts(), before)
			if len(sess) != 1 {
				t.Fatalf("%d prompts", len(sess))
			}
			if e, ok := sess[0].Arg("SETERROR"); !ok || !strings.Contains(e, "Wrong passphrase") {
				t.Errorf("the prompt after a wrong passphrase has SETERROR %q", e)
			}
			// And the one after a success does not.
			h.setPINs(keyPass)
			before = len(h.prompts())
			if err := tc.op(); err != nil {
				t.Fatal(err)
			}
			if _, ok := sessionsSince(h.prompts(), before)[0].Arg("SETERROR"); ok {
				t.Error("SETERROR after a successful operation")
			}
		})
	}
	h.assertNoSecrets()
}

// TestErrors: each failure has its contract name and a reason, prompts
// nobody, and leaves the service working.
func TestErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ctx := h.ctx()
	now := time.Now()
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	expired := h.pki.Issue(t, testpki.Options{Email: "old@example.org", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	signOnly := h.pki.Issue(t, testpki.Options{Email: "so@example.org", KeyUsage: x509.KeyUsageDigitalSignature})
	stranger := h.pki.Issue(t, testpki.Options{Email: "stranger@example.org"})
	h.importIdentity(alice)
	for _, c := range []*testpki.Identity{expired, signOnly} {
		if _, err := h.svc.CertsAdd(ctx, testpki.CertPEM(c.Cert)); err != nil {
			t.Fatal(err)
		}
	}
	msg := newMail("alice@example.org", "x@example.org", "s", "body")
	var toStranger bytes.Buffer
	if err := smime.Encrypt(ctx, &toStranger, bytes.NewReader(msg), smime.EncryptOptions{Recipients: []smime.Recipient{{Certificate: stranger.Cert}}}); err != nil {
		t.Fatal(err)
	}
	var signedOK bytes.Buffer
	if err := smime.Sign(ctx, &signedOK, bytes.NewReader(msg), smime.SignOptions{Signer: alice.Key, Certificate: alice.Cert}); err != nil {
		t.Fatal(err)
	}
	truncated := signedOK.Bytes()[:signedOK.Len()*2/3]

	tests := []struct {
		name     string
		call     func() error
		want     ipc.ErrorName
		contains []string
	}{
		{"unknown and expired recipients", func() error {
			return h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"nobody@example.org", "old@example.org", "so@example.org"}, From: "alice@example.org"},
				bytes.NewReader(msg), io.Discard)
		}, ipc.NoRecipientCertificate, []string{"nobody@example.org (none-found)", "old@example.org (expired)", "so@example.org (wrong-key-usage)"}},
		{"sign from an unknown address", func() error {
			return h.svc.Sign(ctx, ipc.SignRequest{From: "mallory@example.org"}, bytes.NewReader(msg), io.Discard)
		}, ipc.NoIdentity, []string{"mallory@example.org"}},
		{"sign with an unknown identity ID", func() error {
			return h.svc.Sign(ctx, ipc.SignRequest{Identity: strings.Repeat("ab", 32)}, bytes.NewReader(msg), io.Discard)
		}, ipc.NoIdentity, nil},
		{"decrypt a message for someone else", func() error {
			_, err := h.svc.Decrypt(ctx, ipc.OpenRequest{}, bytes.NewReader(toStranger.Bytes()), io.Discard)
			return err
		}, ipc.NoIdentity, []string{"none of your identities"}},
		{"verify an encrypted message", func() error {
			_, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(toStranger.Bytes()), io.Discard)
			return err
		}, ipc.NoIdentity, []string{"encrypted"}},
		{"verify a truncated message", func() error {
			st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(truncated), io.Discard)
			if err != nil && st.Error == "" {
				return fmt.Errorf("status has no error text: %w", err)
			}
			return err
		}, ipc.BadMessage, nil},
		{"decrypt garbage pkcs7", func() error {
			junk := "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIBAAAAAAAAAAAA\r\n"
			_, err := h.svc.Decrypt(ctx, ipc.OpenRequest{}, strings.NewReader(junk), io.Discard)
			return err
		}, ipc.BadMessage, nil},
		{"trust add of garbage", func() error {
			_, err := h.svc.TrustAdd(ctx, []byte("not a certificate"))
			return err
		}, ipc.BadMessage, nil},
		{"certs add of a CA only", func() error {
			_, err := h.svc.CertsAdd(ctx, testpki.CertPEM(h.pki.Root.Cert))
			return err
		}, ipc.BadMessage, []string{"e-mail address"}},
		{"import with a wrong PKCS #12 password", func() error {
			_, err := h.svc.ImportPKCS12(ctx, stranger.PKCS12(t, p12Password, false), []byte(wrongPass))
			return err
		}, ipc.PinIncorrect, []string{"passphrase"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.setPINs() // any prompt is cancelled: none is expected
			before := len(h.prompts())
			ie := wantName(t, tc.call(), tc.want)
			for _, c := range tc.contains {
				if !strings.Contains(ie.Message, c) {
					t.Errorf("message %q lacks %q", ie.Message, c)
				}
			}
			if n := len(h.prompts()) - before; n != 0 {
				t.Errorf("%d prompts shown", n)
			}
			// Still serving.
			if _, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(signedOK.Bytes()), io.Discard); err != nil {
				t.Fatalf("Verify after the error: %v", err)
			}
		})
	}
	h.setPINs(keyPass)
	if err := h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(msg), io.Discard); err != nil {
		t.Fatalf("Sign after the errors: %v", err)
	}

	t.Run("plain message is unprotected, not an error", func(t *testing.T) {
		var out bytes.Buffer
		st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(msg), &out)
		if err != nil || st.Signature != "none" || st.Signed || st.Error == "" || out.Len() != 0 {
			t.Errorf("Verify(plain) = %+v, %v, wrote %d bytes", st, err, out.Len())
		}
	})
	t.Run("wrong PKCS #12 password is audited", func(t *testing.T) {
		lines := h.auditLines()
		found := false
		for _, l := range lines {
			if l.Operation == audit.OpImport && l.Outcome == "wrong-passphrase" && l.Identity.ID == "" {
				found = true
			}
		}
		if !found {
			t.Errorf("no failed import in the audit trail: %+v", lines)
		}
	})
	h.assertNoSecrets()
}

// TestPolicyOverridesUserConfig: the machine policy's locked size limit
// wins over the user's, and a request over it fails with TooLarge (the
// audit line saying its digest is partial).
func TestPolicyOverridesUserConfig(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{
		user:   "[limits]\nmax_message_bytes = 1048576\n",
		policy: "[limits]\nlocked = true\nmax_message_bytes = 4096\n",
	})
	if h.cfg.Limits.MaxMessageBytes != 4096 || len(h.cfg.Warnings) != 1 {
		t.Fatalf("limit %d, warnings %q", h.cfg.Limits.MaxMessageBytes, h.cfg.Warnings)
	}
	ctx := h.ctx()
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	h.importIdentity(alice)
	small := newMail("alice@example.org", "b@example.org", "s", "short")
	big := newMail("alice@example.org", "b@example.org", "s", strings.Repeat("0123456789abcdef\r\n", 400))

	h.setPINs(keyPass)
	var signed bytes.Buffer
	if err := h.svc.Sign(ctx, ipc.SignRequest{}, bytes.NewReader(small), &signed); err != nil {
		t.Fatalf("small message: %v", err)
	}
	h.setPINs()
	before := len(h.prompts())
	ie := wantName(t, h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(big), io.Discard), ipc.TooLarge)
	if !strings.Contains(ie.Message, "4096") {
		t.Errorf("message %q does not give the limit", ie.Message)
	}
	if n := len(h.prompts()) - before; n != 0 {
		t.Errorf("%d prompts for a message over the limit", n)
	}
	lines := h.auditLines()
	last := lines[len(lines)-1]
	if last.Outcome != "error:TooLarge" || !last.Partial || last.MessageBytes != 4096 {
		t.Errorf("audit line %+v", last)
	}
	_, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(append(signed.Bytes(), big...)), io.Discard)
	wantName(t, err, ipc.TooLarge)
	_, err = h.svc.CertsAdd(ctx, big)
	wantName(t, err, ipc.TooLarge)
}

// TestLearnFromSignedMail: a verified signer's certificate and capabilities
// go to the address book (only when it chains to a trust anchor), and so do
// certs-only messages; the capabilities then choose the cipher.
func TestLearnFromSignedMail(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ctx := h.ctx()
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	bob := h.pki.Issue(t, testpki.Options{Email: "bob@example.org"})
	carol := h.pki.Issue(t, testpki.Options{Email: "carol@example.org"})
	h.importIdentity(alice)

	var fromBob bytes.Buffer
	if err := smime.Sign(ctx, &fromBob, bytes.NewReader(newMail("bob@example.org", "alice@example.org", "hi", "hi Alice")),
		smime.SignOptions{Signer: bob.Key, Certificate: bob.Cert, Chain: bob.Chain}); err != nil {
		t.Fatal(err)
	}
	var carolCerts bytes.Buffer
	if err := smime.CertsOnly(&carolCerts, append([]*x509.Certificate{carol.Cert}, carol.Chain...)); err != nil {
		t.Fatal(err)
	}

	// Not trusted yet: nothing learnt.
	st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(fromBob.Bytes()), io.Discard)
	if err != nil || st.Signature != "untrusted" {
		t.Fatalf("Verify before trusting: %+v, %v", st, err)
	}
	if look, _ := h.svc.CertsFind(ctx, "bob@example.org"); len(look.Certificates) != 0 || look.Reason != "none-found" {
		t.Fatalf("an untrusted signer was added: %+v", look)
	}

	h.trustRoot()
	_, certsBefore := h.notes.counts()
	st, err = h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(fromBob.Bytes()), io.Discard)
	if err != nil || st.Signature != "good" {
		t.Fatalf("Verify: %+v, %v", st, err)
	}
	look, err := h.svc.CertsFind(ctx, "BOB@example.org")
	if err != nil || len(look.Certificates) != 1 || look.Certificates[0].SHA256 != digestOf(bob.Cert.Raw) || look.Reason != "" {
		t.Fatalf("CertsFind(bob) = %+v, %v", look, err)
	}
	if _, certs := h.notes.counts(); certs != certsBefore+1 {
		t.Errorf("CertificatesChanged emitted %d times, want 1", certs-certsBefore)
	}
	// Verifying again changes nothing.
	if _, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(fromBob.Bytes()), io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, certs := h.notes.counts(); certs != certsBefore+1 {
		t.Error("an unchanged address book was signalled")
	}

	// Certs-only.
	if _, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(carolCerts.Bytes()), io.Discard); err != nil {
		t.Fatalf("Verify(certs-only): %v", err)
	}
	if look, _ := h.svc.CertsFind(ctx, "carol@example.org"); len(look.Certificates) != 1 {
		t.Fatalf("certs-only certificate not learnt: %+v", look)
	}

	// Bob advertised AES-256-GCM (smimed's default capabilities), Alice's
	// own copy too: GCM. Carol's capabilities are unknown: CBC.
	cipherFor := func(to string) string {
		var enc bytes.Buffer
		if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{to}, From: "alice@example.org"},
			bytes.NewReader(newMail("alice@example.org", to, "s", "b")), &enc); err != nil {
			t.Fatalf("Encrypt to %s: %v", to, err)
		}
		st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(enc.Bytes()), io.Discard)
		if err == nil || len(st.Layers) != 1 {
			t.Fatalf("layers of the encrypted message: %+v %v", st, err)
		}
		return st.Layers[0].Type + " " + st.Layers[0].Cipher
	}
	if got := cipherFor("bob@example.org"); !strings.HasPrefix(got, "auth-enveloped") {
		t.Errorf("to Bob (advertised GCM): %s", got)
	}
	if got := cipherFor("carol@example.org"); !strings.HasPrefix(got, "enveloped") {
		t.Errorf("to Carol (unknown capabilities): %s", got)
	}

	list, err := h.svc.CertsList(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("CertsList = %d, %v", len(list), err)
	}
}

// TestRestartKeepsState: identities, trust anchors and the address book
// survive a restart; anchors can be removed by fingerprint.
func TestRestartKeepsState(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ctx := h.ctx()
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org", Key: testpki.P384})
	bob := h.pki.Issue(t, testpki.Options{Email: "bob@example.org"})
	ident := h.importIdentity(alice)
	h.trustRoot()
	if _, err := h.svc.CertsAdd(ctx, testpki.CertPEM(bob.Cert)); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.Close(); err != nil {
		t.Fatal(err)
	}
	h.start()

	st, err := h.svc.Status(ctx)
	if err != nil || st.Identities != 1 || st.Keystore != "file" || st.Version != "test" || st.PID != os.Getpid() || st.Tokens != 0 || st.Config == "" || st.Uptime == "" {
		t.Errorf("Status = %+v, %v", st, err)
	}
	ids, err := h.svc.Identities(ctx)
	if err != nil || len(ids) != 1 || ids[0].ID != ident.ID || ids[0].KeyType != "p384" {
		t.Errorf("Identities = %+v, %v", ids, err)
	}
	toks, err := h.svc.Tokens(ctx)
	if err != nil || toks == nil || len(toks) != 0 {
		t.Errorf("Tokens = %#v, %v (want an empty list until issue 4)", toks, err)
	}
	anchors, err := h.svc.TrustList(ctx)
	if err != nil || len(anchors) != 1 || anchors[0].SHA256 != digestOf(h.pki.Root.Cert.Raw) || !strings.Contains(anchors[0].PEM, "BEGIN CERTIFICATE") {
		t.Errorf("TrustList = %+v, %v", anchors, err)
	}
	certs, err := h.svc.CertsList(ctx)
	if err != nil || len(certs) != 1 || certs[0].Emails[0] != "bob@example.org" {
		t.Errorf("CertsList = %+v, %v", certs, err)
	}
	// The restored identity still signs.
	h.setPINs(keyPass)
	if err := h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(newMail("alice@example.org", "b@x", "s", "b")), io.Discard); err != nil {
		t.Fatal(err)
	}
	fp := strings.ToUpper(anchors[0].SHA256[:2]) + ":" + anchors[0].SHA256[2:]
	removed, err := h.svc.TrustRemove(ctx, []byte(fp+"\n"))
	if err != nil || len(removed) != 1 {
		t.Fatalf("TrustRemove = %+v, %v", removed, err)
	}
	if anchors, _ := h.svc.TrustList(ctx); len(anchors) != 0 {
		t.Errorf("anchors left: %d", len(anchors))
	}
}

// TestNoGlobalLock: while one request waits at its passphrase prompt,
// others that need no prompt go through, and a caller that goes away
// cancels its own request only.
func TestNoGlobalLock(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{env: []string{pinentrytest.EnvDelay + "=1500ms"}})
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org", Key: testpki.P256})
	h.importIdentity(alice)
	msg := newMail("alice@example.org", "b@example.org", "s", "body")
	ctx := h.ctx()

	h.setPINs(keyPass, keyPass)
	signCtx, cancelSign := context.WithCancel(ctx)
	defer cancelSign()
	signDone := make(chan error, 1)
	go func() {
		signDone <- h.svc.Sign(signCtx, ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(msg), io.Discard)
	}()
	time.Sleep(300 * time.Millisecond) // the sign request is at its prompt now
	var enc bytes.Buffer
	start := time.Now()
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{From: "alice@example.org"}, bytes.NewReader(msg), &enc); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Identities(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("requests without a prompt took %v while a prompt was open", d)
	}
	select {
	case err := <-signDone:
		t.Fatalf("the sign request finished before its prompt was answered: %v", err)
	default:
	}
	cancelSign() // the caller left the bus
	select {
	case err := <-signDone:
		wantName(t, err, ipc.Cancelled)
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled request did not return")
	}
	lines := h.auditLines()
	if last := lines[len(lines)-1]; last.Operation != audit.OpSign || last.Outcome != "cancelled" {
		t.Errorf("audit line %+v", last)
	}
}

// TestNoPinentry: without a pinentry, private-key operations fail with
// KeystoreLocked and the rest works.
func TestNoPinentry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	h.importIdentity(alice)
	h.svc.Close()
	h.cfg.Prompt.Program = "/nonexistent/pinentry"
	h.start()
	ctx := h.ctx()
	msg := newMail("alice@example.org", "b@example.org", "s", "body")
	err := h.svc.Sign(ctx, ipc.SignRequest{From: "alice@example.org"}, bytes.NewReader(msg), io.Discard)
	wantName(t, err, ipc.KeystoreLocked)
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{From: "alice@example.org"}, bytes.NewReader(msg), io.Discard); err != nil {
		t.Errorf("Encrypt without a pinentry: %v", err)
	}
}

func TestMapError(t *testing.T) {
	s := &Service{cfg: config.Default()}
	tests := []struct {
		err  error
		want ipc.ErrorName
	}{
		{context.Canceled, ipc.Cancelled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), ipc.Cancelled},
		{smime.ErrBadMessage, ipc.BadMessage},
		{fmt.Errorf("%w: junk", smime.ErrUnsupported), ipc.Unsupported},
		{smime.ErrNoKey, ipc.NoIdentity},
		{&tooLargeError{max: 1}, ipc.TooLarge},
		{fmt.Errorf("sign: %w", keystore.ErrWrongPassphrase), ipc.PinIncorrect},
		{fmt.Errorf("x: %w", keystore.ErrLocked), ipc.KeystoreLocked},
		{keystore.ErrUnavailable, ipc.KeystoreLocked},
		{fmt.Errorf("x: %w", prompt.ErrNoPrompter), ipc.KeystoreLocked},
		{fmt.Errorf("x: %w", prompt.ErrCancelled), ipc.Cancelled},
		{keystore.ErrNotFound, ipc.NoIdentity},
		{errors.New("disk on fire"), ipc.Internal},
		{&ipc.Error{Name: ipc.PinLocked, Message: "m"}, ipc.PinLocked},
	}
	for _, tc := range tests {
		got := s.mapError(tc.err)
		if ipc.NameOf(got) != tc.want {
			t.Errorf("mapError(%v) = %v, want %s", tc.err, got, tc.want)
		}
	}
	if got := s.mapError(errors.New("secret detail")); strings.Contains(got.Error(), "secret detail") {
		t.Errorf("an Internal error shows its cause to the client: %v", got)
	}
}

// TestDecryptDamagedMessage: a message for our key whose ciphertext was
// changed is processed, not refused: status decryption "failed" with a
// reason, no error, no content, and the key use is still audited.
func TestDecryptDamagedMessage(t *testing.T) {
	h := newHarness(t, harnessOptions{user: "[crypto]\nallow_modern = true\n"})
	ctx := h.ctx()
	alice := h.pki.Issue(t, testpki.Options{Email: "alice@example.org"})
	h.importIdentity(alice)
	body := strings.Repeat("The numbers are in and they are good. ", 600)
	var enc bytes.Buffer
	if err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"alice@example.org"}, From: "alice@example.org"},
		bytes.NewReader(newMail("alice@example.org", "alice@example.org", "s", body)), &enc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(enc.Bytes(), []byte("authEnveloped-data")) {
		t.Fatal("allow_modern did not give AES-GCM")
	}
	damaged := bytes.Clone(enc.Bytes())
	i := len(damaged) / 2
	for damaged[i] < 'A' || damaged[i] > 'Y' { // a base64 letter deep inside the ciphertext
		i++
	}
	damaged[i]++
	h.setPINs(keyPass)
	auditBefore := len(h.auditLines())
	var out bytes.Buffer
	st, err := h.svc.Decrypt(ctx, ipc.OpenRequest{}, bytes.NewReader(damaged), &out)
	if err != nil {
		t.Fatalf("Decrypt of a damaged message returned an error (want a status): %v", err)
	}
	if st.Decryption != "failed" || !st.Encrypted || st.Error == "" {
		t.Fatalf("status = %+v", st)
	}
	if out.Len() != 0 {
		t.Fatalf("%d bytes of unauthenticated content released", out.Len())
	}
	if got := len(h.auditLines()) - auditBefore; got != 1 {
		t.Fatalf("%d audit lines for the key use, want 1", got)
	}
}
