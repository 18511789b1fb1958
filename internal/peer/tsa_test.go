package peer

import (
	"crypto"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// TestOpenSSLTSA checks the TSA wrapper against `openssl ts -verify`.
func TestOpenSSLTSA(t *testing.T) {
	pki := testpki.New(t)
	id := pki.IssueTSA(t, testpki.TSAOptions{})
	tsa := NewOpenSSLTSA(t, id, OpenSSLTSAOptions{IncludeChain: true, Accuracy: "secs:1", PrecisionDigits: 3})
	data := []byte("a signature value")
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA512} {
		token := tsa.Stamp(t, data, h)
		d := t.TempDir()
		in, dataFile := filepath.Join(d, "token.der"), filepath.Join(d, "data")
		writeFile(t, in, token)
		writeFile(t, dataFile, data)
		root := pki.WriteRoot(t)
		mustRun(t, command{name: tsa.bin, args: []string{"ts", "-verify", "-token_in", "-in", in, "-data", dataFile, "-CAfile", root}})
		if _, _, err := run(t, command{name: tsa.bin, args: []string{"ts", "-verify", "-token_in", "-in", in,
			"-data", root, "-CAfile", root}}); err == nil {
			t.Fatal("openssl ts -verify accepted a token over other data")
		}
		if len(tsa.TSTInfo(t, token)) == 0 {
			t.Fatal("empty TSTInfo")
		}
	}
}
