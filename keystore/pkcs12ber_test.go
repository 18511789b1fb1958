package keystore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// berEncode writes n the way NSS does: every constructed element with an
// indefinite length, long primitive OCTET STRINGs split into constructed
// 100-byte segments. Primitive contents (and so the bytes a PFX MAC covers)
// are unchanged.
func berEncode(n *berNode) []byte {
	id := n.class<<6 | 0x20
	if n.tag >= 0x1f {
		panic("test helper handles low tags only")
	}
	if !n.constructed {
		if n.is(0, tagOctetString) && len(n.value) > 100 {
			out := []byte{id | tagOctetString, 0x80}
			for v := n.value; len(v) > 0; {
				k := min(100, len(v))
				out = appendTLV(out, 0, tagOctetString, false, v[:k])
				v = v[k:]
			}
			return append(out, 0, 0)
		}
		return appendTLV(nil, n.class, n.tag, false, n.value)
	}
	out := []byte{id | byte(n.tag), 0x80}
	for _, c := range n.children {
		out = append(out, berEncode(c)...)
	}
	return append(out, 0, 0)
}

func berify(t *testing.T, der []byte) []byte {
	t.Helper()
	n, err := parseBERAll(der)
	if err != nil {
		t.Fatal(err)
	}
	ber := berEncode(n)
	if !isBER(ber) || isBER(der) {
		t.Fatal("isBER does not tell BER from DER")
	}
	return ber
}

func TestPKCS12BER(t *testing.T) {
	pki := testpki.New(t)
	id := pki.Issue(t, testpki.Options{Email: "ber@example.org", Key: testpki.P256})
	dir := t.TempDir()
	cert, key, chain := id.WriteFiles(t, dir)
	sha512p12 := filepath.Join(dir, "sha512.p12")
	run(t, nil, needTool(t, "openssl"), "pkcs12", "-export", "-inkey", key, "-in", cert, "-certfile", chain,
		"-out", sha512p12, "-passout", "pass:pw", "-macalg", "sha512")
	opensslSHA512, err := os.ReadFile(sha512p12)
	if err != nil {
		t.Fatal(err)
	}
	modernDER := id.PKCS12(t, "pw", false)
	modern := berify(t, modernDER)
	// Flip one byte of the authenticated safe (what the MAC covers).
	pfx, err := parseBERAll(modernDER)
	if err != nil {
		t.Fatal(err)
	}
	content := pfx.children[1].children[1].children[0]
	content.value = bytes.Clone(content.value)
	content.value[len(content.value)/2] ^= 0x01
	tampered := berEncode(pfx)

	tests := []struct {
		name string
		data []byte
		pw   string
		want error
	}{
		{"PBES2, SHA-256 MAC", modern, "pw", nil},
		{"3DES, SHA-1 MAC", berify(t, id.PKCS12(t, "pw", true)), "pw", nil},
		{"OpenSSL, SHA-512 MAC", berify(t, opensslSHA512), "pw", nil},
		{"wrong password", modern, "px", ErrWrongPassphrase},
		{"tampered content", tampered, "pw", ErrWrongPassphrase},
		{"truncated", modern[:len(modern)-40], "pw", ErrBadInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newFileStore(t, &fakePrompter{}, 0)
			fastKDF(s)
			ident, err := s.ImportPKCS12(context.Background(), tc.data, secret(tc.pw), ImportOptions{NewPassphrase: secret("n")})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && !ident.Certificate.Equal(id.Cert) {
				t.Fatal("wrong certificate")
			}
		})
	}
}

func TestPKCS12KDFEmptyAndUnicodePasswords(t *testing.T) {
	pki := testpki.New(t)
	id := pki.Issue(t, testpki.Options{Email: "kdf@example.org", Key: testpki.P256})
	for _, pw := range []string{"", "pässwörd"} {
		data := berify(t, id.PKCS12(t, pw, false))
		der, err := derPKCS12(data, []byte(pw))
		if err != nil {
			t.Fatalf("password %q: %v", pw, err)
		}
		if _, _, _, err := decodePKCS12(der, []byte(pw)); err != nil {
			t.Fatalf("password %q: go-pkcs12 on the DER result: %v", pw, err)
		}
	}
	if _, err := bmpPassword([]byte{0xff, 0xfe}); err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
}

func FuzzPKCS12BER(f *testing.F) {
	pki := testpki.New(f)
	id := pki.Issue(f, testpki.Options{Email: "fuzz@example.org", Key: testpki.P256})
	der := id.PKCS12(f, "pw", false)
	n, err := parseBERAll(der)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(berEncode(n))
	f.Add(der)
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Everything but the MAC check (whose cost the input chooses).
		if authSafe, mac, err := parsePFX(data); err == nil {
			_, _ = mac.der()
			_, _ = authSafeToDER(authSafe)
		}
		_ = isBER(data)
		if n, err := parseBERAll(data); err == nil {
			_, _ = n.der()
		}
	})
}
