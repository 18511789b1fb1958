package smime

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// benchSizes are the message sizes of make bench and docs/benchmarks.md.
var benchSizes = []struct {
	name string
	size int
}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}, {"25MiB", 25 << 20}}

// benchMessage is a mail of about size bytes. An "attachment" mail has a
// short text part and a base64 attachment, as a mail client sends it; a
// "text" mail is one 7-bit text/plain body of CRLF lines of 70-76
// characters, as make bench uses (longer than the 64 KiB the signer checks,
// so it is re-encoded as quoted-printable, mostly unchanged).
func benchMessage(size int, kind string) []byte {
	var b bytes.Buffer
	b.WriteString("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: report\r\n" +
		"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n")
	if kind == "text" {
		b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
		words := strings.Fields("the quick brown fox jumps over a lazy dog while seven wizards quietly box jumping zebras")
		for i := 0; b.Len() < size; i++ {
			line := ""
			for j := i; len(line) < 70; j++ {
				line += words[j%len(words)] + " "
			}
			b.WriteString(strings.TrimSpace(line) + "\r\n")
		}
		return b.Bytes()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
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

// benchCases runs fn for every kind and size.
func benchCases(b *testing.B, fn func(b *testing.B, msg []byte)) {
	for _, kind := range []string{"attachment", "text"} {
		for _, s := range benchSizes {
			msg := benchMessage(s.size, kind)
			b.Run(kind+"/"+s.name, func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				fn(b, msg)
			})
		}
	}
}

func BenchmarkSign(b *testing.B) {
	f := getFixture(b)
	benchCases(b, func(b *testing.B, msg []byte) {
		for b.Loop() {
			if err := Sign(context.Background(), io.Discard, bytes.NewReader(msg), signOpts(f.alice)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	f := getFixture(b)
	benchCases(b, func(b *testing.B, msg []byte) {
		signed := signBytes(b, string(msg), signOpts(f.alice))
		b.SetBytes(int64(len(signed)))
		b.ResetTimer()
		for b.Loop() {
			st, err := Open(context.Background(), io.Discard, bytes.NewReader(signed), f.opts())
			if err != nil || st.Signature != OutcomeGood {
				b.Fatal(err, st.Signature)
			}
		}
	})
}

func BenchmarkEncrypt(b *testing.B) {
	f := getFixture(b)
	e := EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}}
	benchCases(b, func(b *testing.B, msg []byte) {
		for b.Loop() {
			if err := Encrypt(context.Background(), io.Discard, bytes.NewReader(msg), e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecrypt(b *testing.B) {
	f := getFixture(b)
	e := EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}}
	o := f.opts()
	o.FindKey = keyFor(f.alice)
	benchCases(b, func(b *testing.B, msg []byte) {
		enc := encryptBytes(b, string(msg), e)
		b.SetBytes(int64(len(enc)))
		b.ResetTimer()
		for b.Loop() {
			st, err := Open(context.Background(), io.Discard, bytes.NewReader(enc), o)
			if err != nil || st.Decryption != DecryptionOK {
				b.Fatal(err, st.Decryption)
			}
		}
	})
}

// TestBenchMessage keeps the benchmark input honest: it must sign and
// verify like any mail.
func TestBenchMessage(t *testing.T) {
	f := getFixture(t)
	for _, kind := range []string{"attachment", "text"} {
		msg := benchMessage(100<<10, kind)
		if len(msg) < 96<<10 || len(msg) > 104<<10 {
			t.Fatalf("%s bench message is %d bytes", kind, len(msg))
		}
		st, inner, err := openBytes(t, signBytes(t, string(msg), signOpts(f.alice)), f.opts())
		if err != nil || st.Signature != OutcomeGood {
			t.Fatal(err, st)
		}
		if len(inner) < 96<<10 {
			t.Fatalf("inner entity is %d bytes", len(inner))
		}
	}
}
