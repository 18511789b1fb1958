//go:build linux

package e2e_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testhsm"
	"github.com/smimed/smimed/internal/testpki"
)

const (
	cardLabel = "e2e-card"
	cardEmail = "carol@example.net"
)

// tokenSandbox is a sandbox whose smimed finds a SoftHSM token with an
// always-auth RSA key (and its certificate) through p11-kit module files
// in the sandbox's HOME, as a desktop has them; OpenSC's module is
// configured too. pin, when set, answers every prompt.
func tokenSandbox(tb testing.TB, pin string) (*sandbox, *testhsm.HSM, *testpki.PKI, *x509.Certificate) {
	tb.Helper()
	testhsm.Need(tb, testhsm.OpenSCModule())
	pki := testpki.New(tb)
	hsm := testhsm.New(tb, pki)
	hsm.InitToken(tb, cardLabel)
	cert := hsm.AddKey(tb, cardLabel, testhsm.Key{Type: "rsa:2048", ID: "01", Label: "card RSA", Email: cardEmail, AlwaysAuth: true})
	s := newSandbox(tb, options{noDaemon: true, pin: pin, env: []string{hsm.Env()}})
	dir := filepath.Join(s.home, ".config", "pkcs11", "modules")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	for name, content := range testhsm.ModuleFiles() {
		if err := os.WriteFile(filepath.Join(dir, name+".module"), []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	s.start()
	s.trustRoot(pki)
	return s, hsm, pki, cert
}

// TestSmartCard: through the bus and the real binaries, smimectl lists the
// SoftHSM token and its identity, signs with it (one PIN prompt naming the
// token; the signature verifies) and a wrong PIN fails with PinIncorrect.
func TestSmartCard(t *testing.T) {
	t.Parallel()
	s, _, _, cert := tokenSandbox(t, "")

	var toks []struct {
		Label, Module, Serial, Manufacturer string
		PINState                            string `json:"pin_state"`
	}
	decodeJSON(t, []byte(s.must("tokens", "--json").stdout), &toks)
	found := false
	for _, tk := range toks {
		if tk.Label == cardLabel && tk.Module == testhsm.SoftHSMModule && tk.Serial != "" && tk.PINState != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("smimectl tokens --json does not show the SoftHSM token: %+v", toks)
	}

	var ids []struct {
		ID, Source string
		Emails     []string
		CanSign    bool `json:"can_sign"`
	}
	decodeJSON(t, []byte(s.must("identities", "--json").stdout), &ids)
	found = false
	for _, id := range ids {
		if id.ID == fingerprint(cert.Raw) && id.Source == "token:"+cardLabel && id.CanSign && len(id.Emails) == 1 && id.Emails[0] == cardEmail {
			found = true
		}
	}
	if !found {
		t.Fatalf("smimectl identities --json does not show the token identity: %+v", ids)
	}

	msg := s.file("card.eml", []byte("From: Carol <"+cardEmail+">\r\nTo: bob@example.org\r\nSubject: card mail\r\n\r\nSigned on the card.\r\n"))
	signed := filepath.Join(s.root, "card-signed.eml")
	s.setPINs(testhsm.PIN)
	n := len(s.sessions())
	s.must("sign", "--from", cardEmail, "--in", msg, "--out", signed)
	sess := s.sessions()[n:]
	if len(sess) != 1 || sess[0].Outcome != "pin" || !strings.Contains(sess[0].Description(), "Token: "+cardLabel) {
		t.Errorf("sign showed %d prompts (%+v), want exactly one naming the token", len(sess), sess)
	}
	r := s.must("verify", "--in", signed)
	if !strings.Contains(r.stderr, "signature good") || !strings.Contains(r.stdout, "Signed on the card.") {
		t.Errorf("verify: %v", r)
	}

	// A wrong PIN: exit 1, PinIncorrect, one prompt, no retry.
	s.setPINs(wrongPIN, testhsm.PIN)
	n = len(s.sessions())
	s.want(1, "PinIncorrect", "sign", "--from", cardEmail, "--in", msg, "--out", signed)
	if got := len(s.sessions()) - n; got != 1 {
		t.Errorf("wrong PIN: %d prompts, want 1", got)
	}
	s.checkNoSecrets()
}
