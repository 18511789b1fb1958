package daemon

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/internal/testrevoke"
	"github.com/smimed/smimed/ipc"
)

// BenchmarkVerifyRevocation is the latency of Verify of a signed message
// (openssl cms -sign, P-256, the issuing CA in the message) with revocation
// checking off, with a cold cache (a fresh checker: an OCSP request to the
// real `openssl ocsp` responder on loopback per message) and with a warm
// one (the cached answer).
func BenchmarkVerifyRevocation(b *testing.B) {
	p := testrevoke.Start(b, testrevoke.Spec{Name: "alice", Email: "alice@rev.example"})
	signed := p.Sign(b, "alice", []byte("Content-Type: text/plain\r\n\r\nbenchmark\r\n"))
	root, err := os.ReadFile(p.RootFile)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, policy string }{{"off", "off"}, {"cold", "soft-fail"}, {"warm", "soft-fail"}} {
		b.Run(bc.name, func(b *testing.B) {
			svc := benchService(b, bc.policy)
			ctx := ipc.WithCaller(context.Background(), ipc.Caller{UID: uint32(os.Getuid())})
			if _, err := svc.TrustAdd(ctx, root); err != nil {
				b.Fatal(err)
			}
			want := map[string]string{"off": "not-checked", "cold": "good", "warm": "good"}[bc.name]
			verify := func() {
				st, err := svc.Verify(ctx, ipc.OpenRequest{From: "alice@rev.example"}, bytes.NewReader(signed), io.Discard)
				if err != nil || st.Signature != "good" || st.Revocation != want {
					b.Fatalf("Verify: %v %+v", err, st)
				}
			}
			verify()
			for b.Loop() {
				if bc.name == "cold" {
					svc.revoker, _ = newRevocationChecker(svc.cfg.Revocation, "")
				}
				verify()
			}
		})
	}
}

// benchService is a Service with the file vault and no identities under
// revocation.policy.
func benchService(b *testing.B, policy string) *Service {
	b.Helper()
	cfg, err := config.Parse(nil, "", []byte("[trust]\nsystem_roots = false\n[audit]\nsyslog = false\n[keystore]\nbackend = \"file\"\n[tokens]\nenabled = false\n[revocation]\npolicy = "+quote(policy)+"\n"), "bench.toml")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	svc, err := New(context.Background(), Options{Config: cfg, DataDir: filepath.Join(dir, "data"), AuditPath: filepath.Join(dir, "audit.log"),
		SpoolDir: filepath.Join(dir, "spool"), CacheDir: filepath.Join(dir, "cache"), Env: []string{}, Version: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { svc.Close() })
	return svc
}
