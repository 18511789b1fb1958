package daemon

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/daemon/audit"
	"github.com/smimed/smimed/internal/testhsm"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/tokens"
)

func TestMain(m *testing.M) {
	// The token manager re-executes the test binary as its PKCS#11 worker.
	if tokens.IsWorker(os.Args) {
		tokens.WorkerMain()
	}
	os.Exit(m.Run())
}

const tokenLabel = "smimed-card"

// tokenFixture is a harness whose daemon finds a SoftHSM token (always-auth
// RSA and EC keys with certificates) through a p11-kit module file, with
// OpenSC's module configured too.
type tokenFixture struct {
	*harness
	hsm      *testhsm.HSM
	tokenDir string
	rsa, ec  *x509.Certificate
}

func newTokenFixture(t *testing.T, extraTokensConfig ...string) *tokenFixture {
	t.Helper()
	testhsm.Need(t, testhsm.OpenSCModule())
	pki := testpki.New(t)
	hsm := testhsm.New(t, pki)
	dir := hsm.InitToken(t, tokenLabel)
	f := &tokenFixture{hsm: hsm, tokenDir: dir}
	f.rsa = hsm.AddKey(t, tokenLabel, testhsm.Key{Type: "rsa:2048", ID: "01", Label: "card RSA", Email: "carol@example.org", AlwaysAuth: true})
	f.ec = hsm.AddKey(t, tokenLabel, testhsm.Key{Type: "EC:prime256v1", ID: "02", Label: "card EC", Email: "carol-ec@example.org", AlwaysAuth: true})
	p11 := testhsm.P11KitDirs(t, testhsm.ModuleFiles())
	f.harness = newHarness(t, harnessOptions{pki: pki, tokens: "enabled = true\n" + strings.Join(extraTokensConfig, ""), tokOpts: func(o *tokens.Options) {
		o.P11Kit = p11
		o.WorkerEnv = []string{hsm.Env()}
		o.PollInterval = 200 * time.Millisecond
	}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", f.logs.String())
		}
	})
	return f
}

// identity returns the listed identity with the certificate, or false.
func (f *tokenFixture) identity(c *x509.Certificate) (ipc.Identity, bool) {
	f.t.Helper()
	ids, err := f.svc.Identities(f.ctx())
	if err != nil {
		f.t.Fatalf("Identities: %v", err)
	}
	for _, id := range ids {
		if id.ID == digestOf(c.Raw) {
			return id, true
		}
	}
	return ipc.Identity{}, false
}

// opensslVerify checks a signed message with `openssl cms -verify` against
// the test root.
func (f *tokenFixture) opensslVerify(signed []byte) {
	f.t.Helper()
	testhsm.Need(f.t, "openssl")
	in := filepath.Join(f.dir, "signed.eml")
	writeFile(f.t, in, string(signed))
	out, err := exec.Command("openssl", "cms", "-verify", "-in", in, "-CAfile", f.pki.WriteRoot(f.t), "-out", os.DevNull).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification successful") {
		f.t.Errorf("openssl cms -verify: %v\n%s", err, out)
	}
}

// TestTokenIdentities: a token's identities are listed next to the key
// store's, sign and decrypt through the daemon with one PIN prompt naming
// the token, a wrong PIN is PinIncorrect with no retry, removal and
// re-insertion are signalled and need no restart, and every key use is
// audited.
func TestTokenIdentities(t *testing.T) {
	f := newTokenFixture(t)
	ctx := f.ctx()
	f.trustRoot()

	toks, err := f.svc.Tokens(ctx)
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	if len(toks) != 1 || toks[0].Label != tokenLabel || toks[0].Module != testhsm.SoftHSMModule ||
		toks[0].Manufacturer == "" || toks[0].Serial == "" || toks[0].PINState == "" || toks[0].PINPad {
		t.Errorf("Tokens = %+v", toks)
	}
	id, ok := f.identity(f.rsa)
	if !ok {
		t.Fatal("the token's RSA identity is not listed")
	}
	if id.Source != "token:"+tokenLabel || !id.CanSign || !id.CanDecrypt || id.KeyType != "rsa2048" ||
		len(id.Emails) != 1 || id.Emails[0] != "carol@example.org" {
		t.Errorf("token identity = %+v", id)
	}
	if st, err := f.svc.Status(ctx); err != nil || st.Tokens != 1 || st.Identities != 2 {
		t.Errorf("Status = %+v, %v", st, err)
	}

	sign := func(req ipc.SignRequest, pin string) ([]byte, error) {
		from := "carol@example.org"
		if req.Identity == digestOf(f.ec.Raw) {
			from = "carol-ec@example.org"
		}
		msg := newMail("Carol <"+from+">", "bob@example.org", "Card report", "Signed on the card.")
		f.setPINs(pin)
		var out bytes.Buffer
		err := f.svc.Sign(ctx, req, bytes.NewReader(msg), &out)
		return out.Bytes(), err
	}

	// Sign by From address: one PIN prompt naming the token; good
	// signature for the engine and for OpenSSL.
	for _, c := range []struct {
		name string
		req  ipc.SignRequest
		cert *x509.Certificate
	}{
		{"rsa by address", ipc.SignRequest{From: "carol@example.org"}, f.rsa},
		{"ec by id", ipc.SignRequest{Identity: digestOf(f.ec.Raw)}, f.ec},
	} {
		before := len(f.prompts())
		signed, err := sign(c.req, testhsm.PIN)
		if err != nil {
			t.Fatalf("%s: Sign: %v", c.name, err)
		}
		sess := sessionsSince(f.prompts(), before)
		if len(sess) != 1 {
			t.Fatalf("%s: Sign showed %d prompts, want 1", c.name, len(sess))
		}
		if d := sess[0].Description(); !strings.Contains(d, "Token: "+tokenLabel) || !strings.Contains(d, "PIN") || !strings.Contains(d, "Card report") {
			t.Errorf("%s: prompt %q does not name the token, the PIN and the message", c.name, d)
		}
		st, err := f.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(signed), new(bytes.Buffer))
		if err != nil || st.Signature != "good" || st.Signer.SHA256 != digestOf(c.cert.Raw) {
			t.Errorf("%s: Verify = %+v, %v", c.name, st, err)
		}
		f.opensslVerify(signed)
	}

	// Decrypt a message encrypted to the token identities (RSA v1.5 and
	// ECDH): one prompt each.
	for _, c := range []struct{ from string }{{"carol@example.org"}, {"carol-ec@example.org"}} {
		var enc bytes.Buffer
		m := newMail(c.from, c.from, "Secret", "For the card only.")
		if err := f.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{c.from}, From: c.from}, bytes.NewReader(m), &enc); err != nil {
			t.Fatalf("Encrypt to %s: %v", c.from, err)
		}
		before := len(f.prompts())
		f.setPINs(testhsm.PIN)
		var plain bytes.Buffer
		st, err := f.svc.Decrypt(ctx, ipc.OpenRequest{}, bytes.NewReader(enc.Bytes()), &plain)
		if err != nil || st.Decryption != "ok" || !strings.Contains(plain.String(), "For the card only.") {
			t.Fatalf("Decrypt for %s: %v %+v", c.from, err, st)
		}
		sess := sessionsSince(f.prompts(), before)
		if len(sess) != 1 || !strings.Contains(sess[0].Description(), "Token: "+tokenLabel) || !strings.Contains(sess[0].Description(), "decrypt") {
			t.Errorf("Decrypt for %s prompts: %+v", c.from, sess)
		}
	}

	// A wrong PIN: PinIncorrect after one prompt, no retry.
	before := len(f.prompts())
	_, err = sign(ipc.SignRequest{From: "carol@example.org"}, "9999")
	wantName(t, err, ipc.PinIncorrect)
	if n := len(f.prompts()) - before; n != 1 {
		t.Errorf("wrong PIN: %d prompts, want 1", n)
	}

	// Every key use audited, with the token identity.
	lines := f.auditLines()
	want := []struct{ op, id, outcome string }{
		{audit.OpSign, digestOf(f.rsa.Raw), "ok"},
		{audit.OpSign, digestOf(f.ec.Raw), "ok"},
		{audit.OpDecrypt, digestOf(f.rsa.Raw), "ok"},
		{audit.OpDecrypt, digestOf(f.ec.Raw), "ok"},
		{audit.OpSign, digestOf(f.rsa.Raw), audit.OutcomeWrongPassphrase},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d audit lines, want %d: %+v", len(lines), len(want), lines)
	}
	for i, w := range want {
		if l := lines[i]; l.Operation != w.op || l.Identity.ID != w.id || l.Outcome != w.outcome || l.CallerPID != 4242 {
			t.Errorf("audit line %d = %+v, want %+v", i, l, w)
		}
	}

	// Removal: the identity goes, IdentitiesChanged is emitted.
	away := filepath.Join(f.hsm.Dir, "pulled")
	changed, _ := f.notes.counts()
	if err := os.Rename(f.tokenDir, away); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal to be signalled", func() bool { n, _ := f.notes.counts(); return n > changed })
	if _, ok := f.identity(f.rsa); ok {
		t.Error("the token identity is still listed after removal")
	}
	if toks, _ := f.svc.Tokens(ctx); len(toks) != 0 {
		t.Errorf("Tokens after removal = %+v", toks)
	}
	_, err = sign(ipc.SignRequest{Identity: digestOf(f.rsa.Raw)}, testhsm.PIN)
	wantName(t, err, ipc.NoIdentity)

	// Re-insertion: signalled, and signing works without a restart.
	changed, _ = f.notes.counts()
	if err := os.Rename(away, f.tokenDir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the insertion to be signalled", func() bool { n, _ := f.notes.counts(); return n > changed })
	signed, err := sign(ipc.SignRequest{From: "carol@example.org"}, testhsm.PIN)
	if err != nil {
		t.Fatalf("Sign after re-insertion: %v", err)
	}
	f.opensslVerify(signed)
	f.assertNoSecrets()
}

// TestTokenErrorsMapped: the token manager's errors reach clients with
// their own names and a message saying what to do.
func TestTokenErrorsMapped(t *testing.T) {
	for _, c := range []struct {
		err  error
		name ipc.ErrorName
		want string
	}{
		{tokens.ErrPinIncorrect, ipc.PinIncorrect, "not retried"},
		{tokens.ErrPinLocked, ipc.PinLocked, "PIN is locked"},
		{tokens.ErrTokenRemoved, ipc.TokenRemoved, "insert it again"},
		{tokens.ErrUnsupported, ipc.Unsupported, "not supported"},
		{tokens.ErrModuleFailed, ipc.Internal, "PKCS#11 module failed"},
		{tokens.ErrNotFound, ipc.NoIdentity, "no such identity"},
	} {
		s := &Service{}
		got := s.mapError(c.err)
		ie := wantName(t, got, c.name)
		if !strings.Contains(ie.Message, c.want) {
			t.Errorf("%v → %q, want it to mention %q", c.err, ie.Message, c.want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTokenCancelledPromptAndMissingModule: a cancelled PIN prompt for a
// card key is Cancelled (one prompt, audited, nothing signed), and a module
// named in the configuration that does not exist leaves the others working.
func TestTokenCancelledPromptAndMissingModule(t *testing.T) {
	f := newTokenFixture(t, "modules = [\"/nonexistent/libsmimed-no-such-module.so\"]\n")
	ctx := f.ctx()
	f.trustRoot()
	toks, err := f.svc.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Label != tokenLabel {
		t.Fatalf("Tokens with a missing module configured = %+v, %v", toks, err)
	}
	if _, ok := f.identity(f.rsa); !ok {
		t.Fatal("token identity not listed beside a missing module")
	}

	f.setPINs() // the next prompt is cancelled
	before, auditBefore := len(f.prompts()), len(f.auditLines())
	var out bytes.Buffer
	err = f.svc.Sign(ctx, ipc.SignRequest{From: "carol@example.org"},
		bytes.NewReader(newMail("carol@example.org", "bob@example.org", "s", "never signed")), &out)
	if ipc.NameOf(err) != ipc.Cancelled {
		t.Fatalf("Sign with a cancelled PIN prompt: %v, want Cancelled", err)
	}
	if n := len(f.prompts()) - before; n != 1 {
		t.Fatalf("%d prompts, want exactly 1 (no retry after cancel)", n)
	}
	if out.Len() != 0 {
		t.Fatalf("%d bytes written for a cancelled signature", out.Len())
	}
	lines := f.auditLines()
	if len(lines) != auditBefore+1 || lines[len(lines)-1].Outcome != "cancelled" {
		t.Fatalf("audit after cancel: %+v", lines[auditBefore:])
	}

	// The daemon keeps serving: the next signature with the right PIN works.
	f.setPINs(testhsm.PIN)
	out.Reset()
	if err := f.svc.Sign(ctx, ipc.SignRequest{From: "carol@example.org"},
		bytes.NewReader(newMail("carol@example.org", "bob@example.org", "s", "signed")), &out); err != nil {
		t.Fatalf("Sign after a cancel: %v", err)
	}
	f.opensslVerify(out.Bytes())
}
