package cms

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

var envBenchSizes = []int{1 << 20, 25 << 20}

// BenchmarkEncrypt measures NewEncrypter's throughput for one P-256
// recipient (the key agreement is a negligible part).
func BenchmarkEncrypt(b *testing.B) {
	f := envPKI(b)
	for _, c := range []ContentCipher{AES256CBC, AES256GCM} {
		for _, n := range envBenchSizes {
			b.Run(fmt.Sprintf("%v/%dMiB", c, n>>20), func(b *testing.B) {
				content := envContent(n)
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					w, err := NewEncrypter(io.Discard, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := w.Write(content); err != nil {
						b.Fatal(err)
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecrypt measures parsing and decryption; GCM includes writing
// and reading back the spool file.
func BenchmarkDecrypt(b *testing.B) {
	f := envPKI(b)
	for _, c := range []ContentCipher{AES256CBC, AES256GCM} {
		for _, n := range envBenchSizes {
			b.Run(fmt.Sprintf("%v/%dMiB", c, n>>20), func(b *testing.B) {
				msg := envEncrypt(b, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c}, envContent(n))
				spool := b.TempDir()
				b.SetBytes(int64(n))
				b.ReportAllocs()
				for b.Loop() {
					er, err := NewEnvelopedReader(bytes.NewReader(msg))
					if err != nil {
						b.Fatal(err)
					}
					rc, err := er.Decrypt(f.p256.Key, f.p256.Cert, DecryptOptions{SpoolDir: spool})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
			})
		}
	}
}
