package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/internal/ber"
)

// sigClassified reports whether err wraps one of the sentinels a message
// error must carry.
func sigClassified(err error) bool {
	for _, s := range []error{ErrMalformed, ErrUnsupported, ErrDigestMismatch, ErrSignature} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzParseSignedData parses arbitrary input and, when it parses, verifies
// every signer it can find a certificate for. Nothing may panic, and every
// error must be classified.
func FuzzParseSignedData(f *testing.F) {
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x30, 0x80, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		// The DER fast path must agree with the BER decoder.
		if isDERFramed(in, 0) && isOneDERElement(in) {
			der, err := ber.ToDER(in)
			if err != nil || !bytes.Equal(der, in) {
				t.Fatalf("isDERFramed accepted input that ToDER changes or refuses: %v", err)
			}
		}
		sd, content, err := ParseSignedData(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if sd.Detached != (content == nil) {
			t.Fatalf("detached %v but content %v", sd.Detached, content != nil)
		}
		if len(sd.Signers) > maxSigners || len(sd.Certificates)+sd.SkippedCertificates > maxCertificates {
			t.Fatalf("limits exceeded: %d signers, %d certificates", len(sd.Signers), len(sd.Certificates))
		}
		d := NewDigester(sd.DigestAlgorithms...)
		d.Write(content)
		digests := d.Sums()
		for _, si := range sd.Signers {
			cert := si.FindCertificate(sd.Certificates)
			_ = si.Weakness(cert)
			if cert == nil {
				continue
			}
			if err := si.Verify(cert, sd.ContentType, digests); err != nil && !sigClassified(err) {
				t.Fatalf("unclassified Verify error: %v", err)
			}
			_ = si.EncryptionKeyPreference.Matches(cert)
		}
	})
}

// FuzzSignedDataReader streams arbitrary input through the reader in
// small, uneven pieces and checks that it agrees with ParseSignedData.
func FuzzSignedDataReader(f *testing.F) {
	f.Add([]byte{0x30, 0x00}, uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		var src io.Reader = bytes.NewReader(in)
		switch chunk % 3 {
		case 0:
			src = iotest.OneByteReader(src)
		case 1:
			src = iotest.HalfReader(src)
		}
		sd, content, digests, err := sigStream(src, int(chunk)+1)
		sd2, content2, err2 := ParseSignedData(in)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("stream error %v, in-memory error %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("unclassified error: %v", err)
			}
			if errors.Is(err, ErrMalformed) != errors.Is(err2, ErrMalformed) {
				t.Fatalf("stream error %v, in-memory error %v", err, err2)
			}
			return
		}
		if !bytes.Equal(content, content2) || len(sd.Signers) != len(sd2.Signers) || len(sd.Certificates) != len(sd2.Certificates) {
			t.Fatal("stream and in-memory parses differ")
		}
		if sd.Detached {
			if digests != nil {
				t.Fatal("digests for a detached message")
			}
			return
		}
		d := NewDigester(sd.DigestAlgorithms...)
		d.Write(content)
		for h, sum := range d.Sums() {
			if !bytes.Equal(digests[h], sum) {
				t.Fatalf("%v digest differs", h)
			}
		}
	})
}

// sigStream reads a message through SignedDataReader with reads of n bytes.
func sigStream(r io.Reader, n int) (*SignedData, []byte, map[crypto.Hash][]byte, error) {
	sr, err := NewSignedDataReader(r)
	if err != nil {
		return nil, nil, nil, err
	}
	var content []byte
	buf := make([]byte, n)
	for {
		k, err := sr.Content().Read(buf)
		content = append(content, buf[:k]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, nil, err
		}
	}
	sd, digests, err := sr.Finish()
	return sd, content, digests, err
}

// TestWriteFuzzSeeds regenerates the seed corpora under testdata/fuzz from
// real messages (ours and openssl's) when SMIMED_WRITE_FUZZ_SEEDS=1;
// otherwise it checks that the committed seeds are there and still parse, so
// the fuzzers start from valid messages.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SMIMED_WRITE_FUZZ_SEEDS") != "1" {
		checkSignedSeeds(t)
		return
	}
	f := sigPKI(t)
	rsaID := f.identity(t, testpki.RSA2048, false)
	ecID := f.identity(t, testpki.P256, true)
	content := []byte("Content-Type: text/plain\r\n\r\nhello\r\n")
	caps, _ := CapabilitiesAttribute(DefaultCapabilities())
	kp, _ := EncryptionKeyPreferenceAttribute(rsaID.Cert)
	withAttrs := sigOpts(rsaID)
	withAttrs.Attributes = []Attribute{caps, kp}
	pss := sigOpts(rsaID)
	pss.PSS, pss.Hash = true, crypto.SHA384
	ski := sigOpts(ecID)
	ski.SubjectKeyID = true

	seeds := map[string][]byte{
		"ours-detached-rsa":  sigDetached(t, withAttrs, content),
		"ours-detached-pss":  sigDetached(t, pss, content),
		"ours-opaque-ec-ski": sigOpaque(t, ski, content),
		"ours-opaque-empty":  sigOpaque(t, sigOpts(rsaID), nil),
	}
	certsOnly, err := MarshalCertsOnly([]*x509.Certificate{rsaID.Cert, f.pki.Intermediate.Cert})
	if err != nil {
		t.Fatal(err)
	}
	seeds["ours-certs-only"] = certsOnly
	seeds["ours-detached-indefinite"] = sigIndefinite(seeds["ours-detached-rsa"])

	dir := t.TempDir()
	cert, key, chain := rsaID.WriteFiles(t, dir)
	data := sigWrite(t, dir, "data.bin", content)
	for name, args := range map[string][]string{
		"openssl-noattr":        {"-noattr"},
		"openssl-stream":        {"-stream", "-nodetach"},
		"openssl-pss":           {"-keyopt", "rsa_padding_mode:pss"},
		"openssl-nodetach-sha1": {"-nodetach", "-md", "sha1"},
	} {
		sigOpenSSL(t, dir, append([]string{"cms", "-sign", "-binary", "-in", data, "-signer", cert, "-inkey", key,
			"-certfile", chain, "-outform", "DER", "-out", name}, args...)...)
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		seeds[name] = b
	}
	for _, target := range []string{"FuzzParseSignedData", "FuzzSignedDataReader"} {
		out := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			text := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if target == "FuzzSignedDataReader" {
				text += fmt.Sprintf("byte(%q)\n", byte(len(name)))
			}
			if err := os.WriteFile(filepath.Join(out, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkSignedSeeds asserts that every committed FuzzParseSignedData seed is
// a SignedData this package parses.
func checkSignedSeeds(t *testing.T) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzParseSignedData")
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) < 10 {
		t.Fatalf("seed corpus %s missing or short (%d files, %v); regenerate with SMIMED_WRITE_FUZZ_SEEDS=1", dir, len(entries), err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(raw), "\n", 3)
		if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go fuzz corpus file", e.Name())
		}
		msg, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if _, _, err := ParseSignedData([]byte(msg)); err != nil {
			t.Errorf("%s: seed no longer parses: %v", e.Name(), err)
		}
	}
}
