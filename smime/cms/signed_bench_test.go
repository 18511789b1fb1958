package cms

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

var sigBenchSizes = []int{1 << 20, 25 << 20}

// BenchmarkOpaqueSign streams content through NewOpaqueSigner (RSA 2048,
// SHA-256) into io.Discard, writing 64 KiB at a time.
func BenchmarkOpaqueSign(b *testing.B) {
	id := sigPKI(b).identity(b, testpki.RSA2048, false)
	chunk := sigContent(64 << 10)
	for _, size := range sigBenchSizes {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				w, err := NewOpaqueSigner(io.Discard, sigOpts(id))
				if err != nil {
					b.Fatal(err)
				}
				for n := 0; n < size; n += len(chunk) {
					w.Write(chunk)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignedDataReader reads an opaque message held in memory,
// streaming its content to io.Discard, and verifies the signature.
func BenchmarkSignedDataReader(b *testing.B) {
	id := sigPKI(b).identity(b, testpki.RSA2048, false)
	for _, size := range sigBenchSizes {
		msg := sigOpaque(b, sigOpts(id), sigContent(size))
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r, err := NewSignedDataReader(bytes.NewReader(msg))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r.Content()); err != nil {
					b.Fatal(err)
				}
				sd, digests, err := r.Finish()
				if err != nil {
					b.Fatal(err)
				}
				if err := sigVerifyAll(sd, digests); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
