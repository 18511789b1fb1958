package smime

import (
	"bytes"
	"context"
	"io"
	"testing"
)

// benchSizes are the message sizes of make bench and docs/benchmarks.md.
var benchSizes = []struct {
	name string
	size int
}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}, {"25MiB", 25 << 20}}

// benchMessage is a mail of about size bytes: a short text part and a
// base64 attachment, as a mail client would send it.
func benchMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: report\r\n" +
		"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		"Here is the report.\r\n--mix\r\nContent-Type: application/octet-stream; name=\"report.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"report.bin\"\r\n\r\n")
	raw := make([]byte, max(size*3/4-b.Len(), 16))
	for i := range raw {
		raw[i] = byte(i*31 + i>>8)
	}
	w := newBase64Writer(&b)
	w.Write(raw)
	w.Close()
	b.WriteString("--mix--\r\n")
	return b.Bytes()
}

func BenchmarkSign(b *testing.B) {
	f := getFixture(b)
	for _, s := range benchSizes {
		msg := benchMessage(s.size)
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Sign(context.Background(), io.Discard, bytes.NewReader(msg), signOpts(f.alice)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	f := getFixture(b)
	for _, s := range benchSizes {
		msg := signBytes(b, string(benchMessage(s.size)), signOpts(f.alice))
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				st, err := Open(context.Background(), io.Discard, bytes.NewReader(msg), f.opts())
				if err != nil || st.Signature != OutcomeGood {
					b.Fatal(err, st.Signature)
				}
			}
		})
	}
}

func BenchmarkEncrypt(b *testing.B) {
	f := getFixture(b)
	e := EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}}
	for _, s := range benchSizes {
		msg := benchMessage(s.size)
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Encrypt(context.Background(), io.Discard, bytes.NewReader(msg), e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	f := getFixture(b)
	e := EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}}
	for _, s := range benchSizes {
		msg := encryptBytes(b, string(benchMessage(s.size)), e)
		b.Run(s.name, func(b *testing.B) {
			o := f.opts()
			o.FindKey = keyFor(f.alice)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				st, err := Open(context.Background(), io.Discard, bytes.NewReader(msg), o)
				if err != nil || st.Decryption != DecryptionOK {
					b.Fatal(err, st.Decryption)
				}
			}
		})
	}
}

// TestBenchMessage keeps the benchmark input honest: it must sign and
// verify like any mail.
func TestBenchMessage(t *testing.T) {
	f := getFixture(t)
	msg := benchMessage(64 << 10)
	if len(msg) < 60<<10 || len(msg) > 70<<10 {
		t.Fatalf("bench message is %d bytes", len(msg))
	}
	st, inner, err := openBytes(t, signBytes(t, string(msg), signOpts(f.alice)), f.opts())
	if err != nil || st.Signature != OutcomeGood {
		t.Fatal(err, st)
	}
	if len(inner) < 60<<10 {
		t.Fatalf("inner entity is %d bytes", len(inner))
	}
}
