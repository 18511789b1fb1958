package cms

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/peer"
	"github.com/smimed/smimed/internal/testpki"
)

// tsFuzzRootFile is the root of the throw-away PKI whose TSA made the
// FuzzTimeStampToken seeds (test certificate only, no key).
const tsFuzzRootFile = "testdata/fuzz-tsa-root.pem"

// tsFuzzSignature is the signature value every seed token time-stamps.
var tsFuzzSignature = []byte("smimed time-stamp fuzz seed: the signature value")

// tsFuzzRoots loads the seeds' trust anchor.
func tsFuzzRoots(tb testing.TB) *x509.CertPool {
	tb.Helper()
	data, err := os.ReadFile(tsFuzzRootFile)
	if err != nil {
		tb.Fatalf("%v (regenerate with SMIMED_WRITE_FUZZ_SEEDS=1 go test -run TestWriteTimeStampFuzzSeeds)", err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		tb.Fatalf("%s: no PEM block", tsFuzzRootFile)
	}
	root, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return pool
}

// tsSentinels are the errors a time-stamp verification may wrap.
var tsSentinels = []error{ErrMalformed, ErrUnsupported, ErrDigestMismatch, ErrSignature, ErrImprintMismatch, ErrTimeStampUntrusted, ErrWeakAlgorithm}

// tsSentinelCount counts the sentinels err wraps.
func tsSentinelCount(err error) int {
	n := 0
	for _, s := range tsSentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}

// FuzzTimeStampToken parses arbitrary input as a time-stamp token and
// verifies it over the seeds' signature value with their root trusted.
// Nothing may panic, every error must wrap exactly one sentinel, and a
// token that verifies must name a TSA and chain to the root.
func FuzzTimeStampToken(f *testing.F) {
	roots := tsFuzzRoots(f)
	f.Add([]byte{0x30, 0x03, 0x06, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, token []byte) {
		parsed, perr := parseTimeStampToken(token)
		if perr != nil {
			if tsSentinelCount(perr) != 1 {
				t.Fatalf("parse error wraps %d sentinels: %v", tsSentinelCount(perr), perr)
			}
		} else if parsed.info == nil || parsed.info.serial == nil || len(parsed.sd.Signers) != 1 {
			t.Fatal("parsed token without TSTInfo or signer")
		}
		covers := checkTimeStampCovers(token, tsFuzzSignature)
		ts, err := VerifyTimeStamp(token, tsFuzzSignature, TimeStampOptions{Roots: roots})
		if err != nil {
			if ts != nil {
				t.Fatal("a TimeStamp and an error")
			}
			if tsSentinelCount(err) != 1 {
				t.Fatalf("error wraps %d sentinels: %v", tsSentinelCount(err), err)
			}
			if perr != nil && err.Error() != perr.Error() {
				t.Fatalf("parse error %v but verify error %v", perr, err)
			}
			return
		}
		if perr != nil || covers != nil {
			t.Fatalf("verified, but parse %v, covers %v", perr, covers)
		}
		if ts.Authority == nil || len(ts.Chain) < 2 || ts.Time.IsZero() || ts.Serial == nil {
			t.Fatalf("verified token with incomplete result %+v", ts)
		}
		if ts.Authority.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping {
			t.Fatal("verified a TSA without id-kp-timeStamping")
		}
	})
}

// TestWriteTimeStampFuzzSeeds regenerates testdata/fuzz/FuzzTimeStampToken
// and testdata/fuzz-tsa-root.pem from real `openssl ts` tokens when
// SMIMED_WRITE_FUZZ_SEEDS=1; otherwise it checks that the committed seeds
// are there and that the valid-* ones still verify.
func TestWriteTimeStampFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzTimeStampToken")
	if os.Getenv("SMIMED_WRITE_FUZZ_SEEDS") == "1" {
		writeTimeStampSeeds(t, dir)
	}
	roots := tsFuzzRoots(t)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) < 8 {
		t.Fatalf("seed corpus %s missing or short (%d files, %v); regenerate with SMIMED_WRITE_FUZZ_SEEDS=1", dir, len(entries), err)
	}
	valid := 0
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		token, err := envParseCorpusFile(raw)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		_, err = VerifyTimeStamp(token, tsFuzzSignature, TimeStampOptions{Roots: roots})
		if strings.HasPrefix(e.Name(), "valid-") {
			valid++
			if err != nil {
				t.Errorf("%s: %v", e.Name(), err)
			}
		} else if err == nil {
			t.Errorf("%s: verifies but is not named valid-", e.Name())
		}
	}
	if valid < 4 {
		t.Fatalf("only %d valid seeds in %s", valid, dir)
	}
}

// writeTimeStampSeeds makes a long-lived PKI and TSA, and tokens in every
// form OpenSSL's TSA writes, plus tokens that must be refused.
func writeTimeStampSeeds(t *testing.T, dir string) {
	p := testpki.New(t)
	tsaID := p.IssueTSA(t, testpki.TSAOptions{Name: "smimed fuzz TSA", Key: testpki.P256})
	emailID := p.Issue(t, testpki.Options{Email: "fuzz@example.org", Key: testpki.P256})
	if err := os.WriteFile(tsFuzzRootFile, testpki.CertPEM(p.Root.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	plain := peer.NewOpenSSLTSA(t, tsaID, peer.OpenSSLTSAOptions{IncludeChain: true})
	seeds := map[string][]byte{
		"valid-sha256":  plain.Stamp(t, tsFuzzSignature, crypto.SHA256),
		"valid-sha512":  plain.Stamp(t, tsFuzzSignature, crypto.SHA512),
		"refused-sha1":  plain.Stamp(t, tsFuzzSignature, crypto.SHA1),
		"refused-other": plain.Stamp(t, []byte("another signature"), crypto.SHA256),
	}
	rich := peer.NewOpenSSLTSA(t, tsaID, peer.OpenSSLTSAOptions{IncludeChain: true, ESSCertIDAlg: "sha1", SignerDigest: "sha384",
		Accuracy: "secs:1, millisecs:250, microsecs:5", PrecisionDigits: 3, TSAName: true})
	seeds["valid-ess-v1-accuracy-name"] = rich.Stamp(t, tsFuzzSignature, crypto.SHA384)
	seeds["valid-ber"] = sigIndefinite(seeds["valid-sha256"])
	seeds["refused-no-chain"] = peer.NewOpenSSLTSA(t, tsaID, peer.OpenSSLTSAOptions{}).Stamp(t, tsFuzzSignature, crypto.SHA256)
	seeds["refused-not-a-tsa"] = plain.SignTSTInfo(t, plain.TSTInfo(t, seeds["valid-sha256"]), emailID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, token := range seeds {
		text := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", token)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
