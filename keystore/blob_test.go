package keystore

import (
	"bytes"
	"errors"
	"testing"
)

func TestBlobRoundTripAndBinding(t *testing.T) {
	der := []byte("pretend this is PKCS #8 DER of a private key")
	fp := bytes.Repeat([]byte{0xab}, 32)
	otherFP := bytes.Repeat([]byte{0xcd}, 32)
	blob, err := sealKey(der, []byte("correct horse"), "id1", fp, defaultKDF())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, der) {
		t.Fatal("blob contains the plaintext")
	}
	if string(blob[:6]) != blobMagic || blob[6] != 1 || blob[8] != 15 || blob[9] != 8 || blob[10] != 1 {
		t.Fatalf("unexpected header % x", blob[:12])
	}
	got, err := openKey(blob, []byte("correct horse"), "id1", fp)
	if err != nil || !bytes.Equal(got, der) {
		t.Fatalf("open: %v %q", err, got)
	}

	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name string
		blob []byte
		pass string
		id   string
		fp   []byte
		want error
	}{
		{"wrong passphrase", blob, "correct horsf", "id1", fp, ErrWrongPassphrase},
		{"other identity", blob, "correct horse", "id2", fp, ErrWrongPassphrase},
		{"other certificate", blob, "correct horse", "id1", otherFP, ErrWrongPassphrase},
		{"salt altered", flip(13), "correct horse", "id1", fp, ErrWrongPassphrase},
		{"nonce altered", flip(30), "correct horse", "id1", fp, ErrWrongPassphrase},
		{"ciphertext altered", flip(len(blob) - 20), "correct horse", "id1", fp, ErrWrongPassphrase},
		{"tag altered", flip(len(blob) - 1), "correct horse", "id1", fp, ErrWrongPassphrase},
		{"r altered (bound by AAD)", func() []byte { b := bytes.Clone(blob); b[9] = 9; return b }(), "correct horse", "id1", fp, ErrWrongPassphrase},
		{"magic", flip(0), "correct horse", "id1", fp, errBlobFormat},
		{"future version", func() []byte { b := bytes.Clone(blob); b[6] = 2; return b }(), "correct horse", "id1", fp, errBlobFormat},
		{"unknown KDF", func() []byte { b := bytes.Clone(blob); b[7] = 9; return b }(), "correct horse", "id1", fp, errBlobFormat},
		{"unknown AEAD", func() []byte { b := bytes.Clone(blob); b[11] = 9; return b }(), "correct horse", "id1", fp, errBlobFormat},
		{"huge scrypt N", func() []byte { b := bytes.Clone(blob); b[8] = 30; return b }(), "correct horse", "id1", fp, errBlobFormat},
		{"huge r*N memory", func() []byte { b := bytes.Clone(blob); b[8], b[9] = 20, 32; return b }(), "correct horse", "id1", fp, errBlobFormat},
		{"truncated", blob[:blobHeaderLen+3], "correct horse", "id1", fp, errBlobFormat},
		{"empty", nil, "correct horse", "id1", fp, errBlobFormat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := openKey(tc.blob, []byte(tc.pass), tc.id, tc.fp)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if out != nil {
				t.Fatal("plaintext returned with an error")
			}
		})
	}
}

func TestBlobFreshSaltAndNonce(t *testing.T) {
	fp := make([]byte, 32)
	a, err := sealKey([]byte("k"), []byte("p"), "x", fp, defaultKDF())
	if err != nil {
		t.Fatal(err)
	}
	b, err := sealKey([]byte("k"), []byte("p"), "x", fp, defaultKDF())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[12:blobHeaderLen], b[12:blobHeaderLen]) || bytes.Equal(a, b) {
		t.Fatal("two seals share salt/nonce")
	}
}
