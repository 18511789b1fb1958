package keystore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/prompt"
)

// p12File is a PKCS #12 file made by a real peer.
type p12File struct {
	name     string
	data     []byte
	password string
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// opensslP12s exports id with `openssl pkcs12 -export` in every encryption
// the brief names, and checks with `openssl pkcs12 -info` that each file
// really uses it.
func opensslP12s(t *testing.T, id *testpki.Identity, dir string) []p12File {
	t.Helper()
	openssl := needTool(t, "openssl")
	cert, key, chain := id.WriteFiles(t, dir)
	variants := []struct {
		name     string
		args     []string
		password string
		expect   []string // in `openssl pkcs12 -info` output
	}{
		{"default PBES2 AES-256", nil, "p12-pass",
			[]string{"Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC", "PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC"}},
		{"-legacy (3DES key, RC2-40 certs)", []string{"-legacy"}, "p12-pass",
			[]string{"Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC", "PKCS7 Encrypted data: pbeWithSHA1And40BitRC2-CBC"}},
		{"3DES key and certs, SHA-1 MAC", []string{"-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1"}, "p12-pass",
			[]string{"MAC: sha1", "Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC", "PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC"}},
		{"RC2-40 key and certs", []string{"-legacy", "-keypbe", "PBE-SHA1-RC2-40", "-certpbe", "PBE-SHA1-RC2-40"}, "p12-pass",
			[]string{"Shrouded Keybag: pbeWithSHA1And40BitRC2-CBC", "PKCS7 Encrypted data: pbeWithSHA1And40BitRC2-CBC"}},
		{"RC2-128 key and certs", []string{"-legacy", "-keypbe", "PBE-SHA1-RC2-128", "-certpbe", "PBE-SHA1-RC2-128"}, "p12-pass",
			[]string{"Shrouded Keybag: pbeWithSHA1And128BitRC2-CBC", "PKCS7 Encrypted data: pbeWithSHA1And128BitRC2-CBC"}},
		{"non-ASCII password", nil, "pässwörd-€",
			[]string{"Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"}},
	}
	var files []p12File
	for i, v := range variants {
		out := filepath.Join(dir, "openssl-"+string(rune('a'+i))+".p12")
		args := append([]string{"pkcs12", "-export", "-inkey", key, "-in", cert, "-certfile", chain,
			"-name", id.Email, "-out", out, "-passout", "pass:" + v.password}, v.args...)
		run(t, nil, openssl, args...)
		infoArgs := []string{"pkcs12", "-info", "-noout", "-in", out, "-passin", "pass:" + v.password}
		if len(v.args) > 0 && v.args[0] == "-legacy" || strings.Contains(strings.Join(v.args, " "), "RC2") {
			infoArgs = append(infoArgs, "-legacy")
		}
		info := run(t, nil, openssl, infoArgs...)
		for _, e := range v.expect {
			if !strings.Contains(info, e) {
				t.Fatalf("openssl %s: file does not use %q:\n%s", v.name, e, info)
			}
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p12File{name: "openssl " + v.name, data: data, password: v.password})
	}
	return files
}

// nssP12s imports id into a fresh NSS database with Thunderbird's NSS and
// exports it with `pk12util -o`, in NSS's default encryption and in the
// legacy 3DES/RC2 one.
func nssP12s(t *testing.T, id *testpki.Identity, dir string) []p12File {
	t.Helper()
	pk12util := needTool(t, "pk12util")
	certutil := needTool(t, "certutil")
	const tbird = "/usr/lib/thunderbird"
	if _, err := os.Stat(filepath.Join(tbird, "libnss3.so")); err != nil {
		t.Fatalf("Thunderbird's NSS is not installed (%v); it is a real peer of this test", err)
	}
	env := []string{"LD_LIBRARY_PATH=" + tbird}
	db := filepath.Join(dir, "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, env, certutil, "-N", "-d", "sql:"+db, "--empty-password")
	in := filepath.Join(dir, "in.p12")
	if err := os.WriteFile(in, id.PKCS12(t, "in-pass", false), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, env, pk12util, "-i", in, "-d", "sql:"+db, "-W", "in-pass")
	list := run(t, env, certutil, "-L", "-d", "sql:"+db)
	nick := ""
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "u,u,u") {
			nick = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "u,u,u"))
		}
	}
	if nick == "" {
		t.Fatalf("no user certificate in the NSS database:\n%s", list)
	}
	variants := []struct {
		name string
		args []string
	}{
		{"pk12util default (PBES2 AES)", nil},
		{"pk12util 3DES key, RC2-40 certs", []string{"-c", "PKCS #12 V2 PBE With SHA-1 And 3KEY Triple DES-CBC",
			"-C", "PKCS #12 V2 PBE With SHA-1 And 40 Bit RC2 CBC"}},
	}
	var files []p12File
	for i, v := range variants {
		out := filepath.Join(dir, "nss-"+string(rune('a'+i))+".p12")
		args := append([]string{"-o", out, "-n", nick, "-d", "sql:" + db, "-W", "nss-pass"}, v.args...)
		run(t, env, pk12util, args...)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, p12File{name: v.name, data: data, password: "nss-pass"})
	}
	return files
}

func TestImportPKCS12FromRealPeers(t *testing.T) {
	pki := testpki.New(t)
	for _, kt := range []testpki.KeyType{testpki.RSA2048, testpki.P256} {
		id := pki.Issue(t, testpki.Options{Email: string(kt) + "-p12@example.org", Key: kt})
		dir := t.TempDir()
		files := append(opensslP12s(t, id, dir), nssP12s(t, id, dir)...)
		for _, f := range files {
			t.Run(string(kt)+"/"+f.name, func(t *testing.T) {
				fp := &fakePrompter{def: "new-pass"}
				s, _ := newFileStore(t, fp, 0)
				fastKDF(s)
				pw := secret(f.password)
				ident, err := s.ImportPKCS12(context.Background(), f.data, pw, ImportOptions{NewPassphrase: secret("new-pass")})
				if err != nil {
					t.Fatalf("import: %v", err)
				}
				if pw.Len() != 0 {
					t.Fatal("PKCS #12 password not wiped")
				}
				if !ident.Certificate.Equal(id.Cert) || ident.ID != fingerprintID(id.Cert) {
					t.Fatalf("wrong leaf %s", ident.Certificate.Subject)
				}
				if len(ident.Chain) < 1 || !ident.Chain[0].Equal(pki.Intermediate.Cert) {
					t.Fatalf("chain: %d certificates", len(ident.Chain))
				}
				signer, err := s.Signer(context.Background(), ident.ID, prompt.Request{})
				if err != nil {
					t.Fatal(err)
				}
				checkSign(t, signer, id.Cert)
				if fp.calls() != 1 {
					t.Fatalf("%d prompts for one signature", fp.calls())
				}
				fp.assertWiped(t)

				// The wrong password is reported as such, once.
				_, err = s.ImportPKCS12(context.Background(), f.data, secret(f.password+"x"), ImportOptions{NewPassphrase: secret("n")})
				if !errors.Is(err, ErrWrongPassphrase) {
					t.Fatalf("wrong password: %v", err)
				}
			})
		}
	}
}
