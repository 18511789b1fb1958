package daemon

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/smime"
)

// TestPolicyAnchors: a policy that pins the organisation's CA (machine
// directory, no system roots, no user anchors) refuses TrustAdd, lists its
// anchor with scope and source, and verifies signatures only with an
// anchor whose scope covers signing.
func TestPolicyAnchors(t *testing.T) {
	pki := testpki.New(t)
	h := newHarness(t, harnessOptions{pki: pki,
		policy: "[trust]\nlocked = true\nsystem_roots = false\nuser_anchors = false\n"})
	machine := filepath.Join(h.dir, "trust") // beside the harness's policy.toml
	if h.cfg.Trust.MachineDir != machine {
		t.Fatalf("machine anchor directory %q, want %q", h.cfg.Trust.MachineDir, machine)
	}
	place := func(sub string) {
		t.Helper()
		os.RemoveAll(machine)
		if err := os.MkdirAll(filepath.Join(machine, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(machine, sub, "org-root.pem"), string(testpki.CertPEM(pki.Root.Cert)))
	}
	ctx := h.ctx()

	_, err := h.svc.TrustAdd(ctx, testpki.CertPEM(pki.Root.Cert))
	wantName(t, err, ipc.NotAuthorized)

	alice := pki.Issue(t, testpki.Options{Email: "alice@example.org", Key: testpki.P256})
	var signed bytes.Buffer
	if err := smime.Sign(context.Background(), &signed, bytes.NewReader(newMail("alice@example.org", "me@example.org", "s", "b")),
		smime.SignOptions{Signer: alice.Key, Certificate: alice.Cert, Chain: alice.Chain}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sub       string
		scope     []string
		signature string
	}{
		{"signing", []string{"signing"}, "good"},
		{"encryption", []string{"encryption"}, "untrusted"},
		{".", []string{"signing", "encryption"}, "good"},
	} {
		place(tc.sub)
		list, err := h.svc.TrustList(ctx)
		if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0].Scope, tc.scope) || !reflect.DeepEqual(list[0].Sources, []string{"policy"}) {
			t.Fatalf("%s: TrustList %+v, %v; want the org root with scope %v from policy", tc.sub, list, err, tc.scope)
		}
		st, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(signed.Bytes()), io.Discard)
		if err != nil || st.Signature != tc.signature {
			t.Errorf("%s: signature %q (%v), want %q: %+v", tc.sub, st.Signature, err, tc.signature, st.Layers)
		}
	}
}
