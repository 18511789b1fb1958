package daemon

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/smime"
)

// BenchmarkVerify4KiB is the daemon's own work for Verify of a 4 KiB
// multipart/signed message signed as the daemon signs (capabilities and
// encryption-key preference, the intermediate in the message), with the
// default revocation policy and no revocation information in the
// certificates: the in-process half of issue 3's D-Bus overhead. It
// reports time, it asserts nothing about it.
func BenchmarkVerify4KiB(b *testing.B) {
	p := testpki.New(b)
	alice := p.Issue(b, testpki.Options{Email: "alice@example.com"})
	var body strings.Builder
	body.WriteString("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: bench\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := strings.Repeat("the quick brown fox jumps over the lazy dog ", 2)[:70] + "\r\n"
	for body.Len()+len(line) <= 4096 {
		body.WriteString(line)
	}
	var signed bytes.Buffer
	if err := smime.Sign(context.Background(), &signed, strings.NewReader(body.String()),
		smime.SignOptions{Signer: alice.Key, Certificate: alice.Cert, Chain: alice.Chain}); err != nil {
		b.Fatal(err)
	}

	svc := benchService(b, "soft-fail")
	ctx := ipc.WithCaller(context.Background(), ipc.Caller{UID: uint32(os.Getuid())})
	if _, err := svc.TrustAdd(ctx, testpki.CertPEM(p.Root.Cert)); err != nil {
		b.Fatal(err)
	}
	verify := func() {
		st, err := svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(signed.Bytes()), io.Discard)
		if err != nil || st.Signature != "good" {
			b.Fatalf("Verify: %v %+v", err, st)
		}
	}
	verify() // learns alice and the intermediate
	b.ReportAllocs()
	for b.Loop() {
		verify()
	}
}
