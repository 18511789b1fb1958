package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The fuzz target decrypts with fixed, test-only keys so that the seed
// corpus (messages addressed to them) stays valid across runs. They were
// made once with `openssl req -x509 -newkey rsa:2048|ec` (P-256).

const envFuzzRSACert = `-----BEGIN CERTIFICATE-----
MIIDJDCCAgygAwIBAgIUV4gJTZGdobK7YEubz7kqiY8HLtkwDQYJKoZIhvcNAQEL
BQAwGjEYMBYGA1UEAwwPc21pbWVkIGZ1enogcnNhMCAXDTI2MTEyMzE3NDgwNloY
DzIxMjYxMDMwMTc0ODA2WjAaMRgwFgYDVQQDDA9zbWltZWQgZnV6eiByc2EwggEi
MA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDGeRn8+18O4fg8KFNGDYofeyCd
ZS98nGsqwxFnW/6mi1POBPymidE3Cg3NYpU+yRqb035Q16eGdZHuKWRihEsZ7m3j
Cf/NPRmYmw0+OcMBj0zJsyhhqxG/b91lPCxSs/60VvLeBmtgXOMN1S9M9S76roiS
IQUh2lL9Tq7hXjD7yYEemcLLwBItxb/+gHzb1hVyfjj82XyC0RykjS/yq8BIPjC2
N3Kw0oZBfu5KYKitUUSsXCcjsZ5TZNlf7RxoSX7wgO9XGm/sRr/ZMEnrYCoXwDxu
1bzdXJ+XrdZb0NyKipxcjuO3iVDuUPXeIfCUULAiHOSgM+We3vdT/7JSIDdlAgMB
AAGjYDBeMB0GA1UdDgQWBBSpOgGxOG8X+XiOBYwL8rqa7oikXzAfBgNVHSMEGDAW
gBSpOgGxOG8X+XiOBYwL8rqa7oikXzAPBgNVHRMBAf8EBTADAQH/MAsGA1UdDwQE
AwIFIDANBgkqhkiG9w0BAQsFAAOCAQEAdgrBgDmDhIbtYZpGmzLb3aM4K8GVglYy
P17SKfQvPE9s+IAX07pg5Ywy95SWXy0bfbvd446/MIfFWiT4DvHQ8l+qXEFiLyOn
Divx/zSGO5quqOWQbnigOuss6SqDLDRyYy4BZ12hyxotpPdCcyVvKg/vqedZphx1
aSmxeM1teJFGQguk2hT8iU2vxOtCWWCoNP7qvTP5RLrAxgMEVKSHdJnknlTjKv9N
B7/ES6Ia4X9EiqOwhf7/hL2WInCtauNh47iBDmCgC9i70nUZcvFvBfs9edhBChoM
KhFtmlsyeeIGCi0XpRxwibqkH+wGoh+L1p4xbfy+LzD2+0Ptsd5pxQ==
-----END CERTIFICATE-----
`

const envFuzzRSAKey = `-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDGeRn8+18O4fg8
KFNGDYofeyCdZS98nGsqwxFnW/6mi1POBPymidE3Cg3NYpU+yRqb035Q16eGdZHu
KWRihEsZ7m3jCf/NPRmYmw0+OcMBj0zJsyhhqxG/b91lPCxSs/60VvLeBmtgXOMN
1S9M9S76roiSIQUh2lL9Tq7hXjD7yYEemcLLwBItxb/+gHzb1hVyfjj82XyC0Ryk
jS/yq8BIPjC2N3Kw0oZBfu5KYKitUUSsXCcjsZ5TZNlf7RxoSX7wgO9XGm/sRr/Z
MEnrYCoXwDxu1bzdXJ+XrdZb0NyKipxcjuO3iVDuUPXeIfCUULAiHOSgM+We3vdT
/7JSIDdlAgMBAAECggEAG0n9Y8ZgTJiPXB4jTQeBjVCNrHaEL/sF1SxbET4Z5mZT
0IjpADEE3i94tFuwr6BRE0niHVV5iEhUF04DqnQMK3WYEFaIoHydL1lqWbrxcB52
7Wi/zaYK26qS41+BrKFpDPzDifmR+/7pjTZZuZggrIEg8A6wOPZe4MtXyk78JzJQ
b2CS8yA10OypSLgnKlpHnzFReV8q+vhPCwj1ht8PALMkvoiDgAL0iMwk6zwpv/jX
k4QDbv0e/Ai2UMf+So3h2a3G7xI5ykDzwm66ybws4deZfvFgxNn8T3Wm7Q6adx3Q
MxRxXQ4iJztR7ZCdyDvsLUB41GYsIfbsPoK+OEqUpQKBgQDzMiWCaVLFcz2VAq8f
SS76UBGjr13JV8lEa+e4WmShhFj7I6nYJ2d5XvL3yRwTBGd6UtsJmmpKDY5cIjNo
kM0/Qorwb5/HEz6cwPw8Y5SGG8bsoSHZuEPhj1NGHgqEZyDtXa9ObwSCmBKGZHVb
cnFB89WP+1Cu4TdC3q//X6zwGwKBgQDQ7Ct03aKnosvVfO13TDZgf2HpHsJm08az
ZHuEuZX18oL0saBElRwrYCe90RjOP4ZXQG4jnak613mFzoykg2qCdHEbJdV9SDTT
QJaLCAm6B5uxLThBoQ4kEVURxP1xvlK4NBEIKHVfpGn7pvGbukVaUULPqW7cZN+G
Kp9eFhTufwKBgQDOAoC7xDSVhlV4UNnACuJ8sC8BFaDA2lhoWW/lPs1X9SDbPQ63
SEnjCoePVxEtGuH9QQrDS8cWC/24FlCuF1uGZvwDSMt0e9ziNKh3D3PVVtpfwO9H
20vFWwATuYb3OdUuvdmu+2Q6rE+lAJxZZsyCLeePHDjwq1+AidtU3NtGWQKBgG4f
3vQ2E5PLcygwNrfIe204F/ManJw5CybqU1VtwccnsrGqo3EjK/sNL0WV3z5wK674
LlYlt9tlUxAeBPJ+tvjWyfvmYHcuRXIJPJFChmYBtqaY0Gt/qoWGgVHhhTqceNvR
zhx/vwbQEnFs2TQd5oqqBM6TX/VaUpxVATZF63ifAoGBAK8CQPm+s9uWNxHACyIr
giVuDr445Bu/fp80BrFaKPBJylCMJW/HYc9WxYnqk+YFztz/qRnmPi7LE0QMOlIo
wJ7l0vklkRFGojj0RSJ4qsPvKw1e4CnnJ3iXMog2FOrrPxwgIn/adZxOMBSPd9i2
ptAgAVdfuFXNDHtkR320CDwz
-----END PRIVATE KEY-----
`

const envFuzzECCert = `-----BEGIN CERTIFICATE-----
MIIBljCCATygAwIBAgIUDUcvCvEK6eCOC1kEaMj+vHMKmq4wCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOc21pbWVkIGZ1enogZWMwIBcNMjYxMTIzMTc0ODA3WhgPMjEy
NjEwMzAxNzQ4MDdaMBkxFzAVBgNVBAMMDnNtaW1lZCBmdXp6IGVjMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAE6J+5eiPZVPd7QasS1hKQCUnivbiGokMqd2BjT3V7
RcKz/6aTnP916I1Xh/PAUGEe1802y/6NVkK9+OphfmPUMqNgMF4wHQYDVR0OBBYE
FDDU3VvVvvqEb2punslmTu3+hd8WMB8GA1UdIwQYMBaAFDDU3VvVvvqEb2punslm
Tu3+hd8WMA8GA1UdEwEB/wQFMAMBAf8wCwYDVR0PBAQDAgMIMAoGCCqGSM49BAMC
A0gAMEUCIAcKM29gtARp8glrZKXRwBmqXVqYr5Vu+v5DWk/ErttEAiEA13nJvoM6
2Ctll8c74ey+ke+V1lRferEo6eHQX28wSxo=
-----END CERTIFICATE-----
`

const envFuzzECKey = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn0IU/EHWjH5QkRAQ
UnnMRRDj+s2cd7WBuj3qvrwuixGhRANCAATon7l6I9lU93tBqxLWEpAJSeK9uIai
Qyp3YGNPdXtFwrP/ppOc/3XojVeH88BQYR7XzTbL/o1WQr346mF+Y9Qy
-----END PRIVATE KEY-----
`

type envFuzzIdentity struct {
	cert *x509.Certificate
	key  crypto.PrivateKey
}

var (
	envFuzzOnce sync.Once
	envFuzzIDs  []envFuzzIdentity
	envFuzzErr  error
)

// envFuzzIdentities parses the fixed RSA and EC identities.
func envFuzzIdentities(t testing.TB) []envFuzzIdentity {
	t.Helper()
	envFuzzOnce.Do(func() {
		for _, pair := range [][2]string{{envFuzzRSACert, envFuzzRSAKey}, {envFuzzECCert, envFuzzECKey}} {
			cb, _ := pem.Decode([]byte(pair[0]))
			kb, _ := pem.Decode([]byte(pair[1]))
			if cb == nil || kb == nil {
				envFuzzErr = errors.New("bad PEM")
				return
			}
			cert, err := x509.ParseCertificate(cb.Bytes)
			if err != nil {
				envFuzzErr = err
				return
			}
			key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
			if err != nil {
				envFuzzErr = err
				return
			}
			envFuzzIDs = append(envFuzzIDs, envFuzzIdentity{cert, key})
		}
	})
	if envFuzzErr != nil {
		t.Fatal(envFuzzErr)
	}
	return envFuzzIDs
}

// envFuzzSeeds encrypts small messages to the fixed identities in the
// forms this package writes.
func envFuzzSeeds(t testing.TB) map[string][]byte {
	ids := envFuzzIdentities(t)
	rsaR, ecR := ids[0].cert, ids[1].cert
	content := []byte("Content-Type: text/plain\r\n\r\nfuzz seed\r\n")
	seeds := map[string][]byte{}
	for _, c := range envAllCiphers {
		seeds["ours-"+c.String()+"-rsa-ec"] = envEncrypt(t, EncryptOptions{Cipher: c, Recipients: []Recipient{{Certificate: rsaR}, {Certificate: ecR}}}, content)
	}
	seeds["ours-oaep-label-ski"] = envEncrypt(t, EncryptOptions{Cipher: AES128CBC, Recipients: []Recipient{{Certificate: rsaR, Padding: OAEP, OAEPHash: crypto.SHA384, OAEPLabel: []byte("l"), SubjectKeyID: true}}}, content)
	seeds["ours-ec-ski-sha1"] = envEncryptHooks(t, EncryptOptions{Cipher: AES256GCM, ContentType: oidSignedData, Recipients: []Recipient{{Certificate: ecR, SubjectKeyID: true, KDFHash: crypto.SHA1}}}, encryptHooks{ukm: []byte("ukm")}, content)
	seeds["ours-empty"] = envEncrypt(t, EncryptOptions{Cipher: AES128GCM, Recipients: []Recipient{{Certificate: ecR}}}, nil)
	return seeds
}

// envFuzzOpenSSLSeeds has OpenSSL encrypt to the fixed identities: DER and
// streamed BER, DES3 with 3DES key wrap, OAEP with MGF1 hash differing.
func envFuzzOpenSSLSeeds(t *testing.T) map[string][]byte {
	dir := t.TempDir()
	rsaCert := envWrite(t, dir, "rsa.pem", []byte(envFuzzRSACert))
	ecCert := envWrite(t, dir, "ec.pem", []byte(envFuzzECCert))
	in := envWrite(t, dir, "in.txt", []byte("Content-Type: text/plain\r\n\r\nopenssl seed\r\n"))
	seeds := map[string][]byte{}
	for name, args := range map[string][]string{
		"openssl-aes-256-cbc-stream": {"-aes-256-cbc", "-stream", "-recip", rsaCert, "-recip", ecCert},
		"openssl-aes-128-gcm":        {"-aes-128-gcm", "-recip", ecCert, "-keyopt", "ecdh_kdf_md:sha256", "-recip", rsaCert},
		"openssl-des3":               {"-des3", "-recip", ecCert, "-recip", rsaCert},
		"openssl-oaep-mgf":           {"-aes-192-cbc", "-recip", rsaCert, "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha1"},
		"openssl-cofactor-keyid":     {"-aes-256-gcm", "-keyid", "-recip", ecCert, "-keyopt", "ecdh_cofactor_mode:1"},
	} {
		out := filepath.Join(dir, name+".der")
		full := append([]string{"cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, "-out", out}, args...)
		if _, err := envRunOpenSSL(t, dir, nil, full...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		msg, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = msg
	}
	return seeds
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzEnvelopedReader when
// SMIMED_WRITE_FUZZ_CORPUS=1; otherwise it checks that every file there is
// in the corpus format and that our seeds still decrypt.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzEnvelopedReader")
	if os.Getenv("SMIMED_WRITE_FUZZ_CORPUS") == "1" {
		seeds := envFuzzSeeds(t)
		for k, v := range envFuzzOpenSSLSeeds(t) {
			seeds[k] = v
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, msg := range seeds {
			data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", msg)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("seed corpus missing (run with SMIMED_WRITE_FUZZ_CORPUS=1): %v", err)
	}
	if len(entries) == 0 {
		t.Fatal("empty seed corpus")
	}
	ids := envFuzzIdentities(t)
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		msg, err := envParseCorpusFile(raw)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		// Every seed opens for at least one fixed identity.
		opened := false
		for _, id := range ids {
			if _, err := envDecrypt(msg, id.key, id.cert, DecryptOptions{SpoolDir: t.TempDir()}); err == nil {
				opened = true
			}
		}
		if !opened {
			t.Errorf("seed %s opens for no fixed identity", e.Name())
		}
	}
}

// envParseCorpusFile reads a one-value "go test fuzz v1" file of []byte.
func envParseCorpusFile(raw []byte) ([]byte, error) {
	const head = "go test fuzz v1\n[]byte("
	if !bytes.HasPrefix(raw, []byte(head)) || !bytes.HasSuffix(raw, []byte(")\n")) {
		return nil, errors.New("not a go test fuzz v1 []byte file")
	}
	var s string
	if _, err := fmt.Sscanf(string(raw[len(head):len(raw)-2]), "%q", &s); err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// FuzzEnvelopedReader parses arbitrary input and tries to decrypt it with
// the fixed RSA and EC keys. Nothing may panic, and every error must wrap
// one of the package's sentinels.
func FuzzEnvelopedReader(f *testing.F) {
	for _, msg := range envFuzzSeeds(f) {
		f.Add(msg)
	}
	ids := envFuzzIdentities(f)
	spool := f.TempDir()
	sentinel := func(t *testing.T, stage string, err error) {
		if !envIsAny(err, ErrMalformed, ErrUnsupported, ErrNoRecipient, ErrDecryption) {
			t.Fatalf("%s: error without a sentinel: %v", stage, err)
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		er, err := NewEnvelopedReader(bytes.NewReader(msg))
		if err != nil {
			sentinel(t, "NewEnvelopedReader", err)
			return
		}
		for _, ri := range er.Recipients() {
			_ = ri.Matches(ids[0].cert)
		}
		_ = er.Cipher().String()
		for i, id := range ids {
			if i > 0 {
				if er, err = NewEnvelopedReader(bytes.NewReader(msg)); err != nil {
					t.Fatalf("second parse failed: %v", err)
				}
			}
			rc, err := er.Decrypt(id.key, id.cert, DecryptOptions{SpoolDir: spool})
			if err != nil {
				sentinel(t, "Decrypt", err)
				continue
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				sentinel(t, "Read", err)
			}
		}
	})
}
