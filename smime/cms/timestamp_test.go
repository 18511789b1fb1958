package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/peer"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/internal/ber"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// tsFixture holds the time-stamping identities of one test run: a TSA
// under the shared test PKI, one whose extended key usage is not critical,
// and a TSA under a PKI nobody trusts.
type tsFixture struct {
	pki      *testpki.PKI
	tsa      *testpki.Identity
	nonCrit  *testpki.Identity
	other    *testpki.PKI
	otherTSA *testpki.Identity
}

var (
	tsFixtureOnce sync.Once
	tsFixtureVal  *tsFixture
)

func tsPKI(t testing.TB) *tsFixture {
	t.Helper()
	f := sigPKI(t)
	tsFixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cms-ts-test-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		other := testpki.New(&sigTB{TB: t, dir: dir})
		other.Dir = ""
		tsFixtureVal = &tsFixture{
			pki:      f.pki,
			tsa:      f.pki.IssueTSA(t, testpki.TSAOptions{Name: "smimed test TSA"}),
			nonCrit:  f.pki.IssueTSA(t, testpki.TSAOptions{Name: "non-critical TSA", Key: testpki.P256, NonCritical: true}),
			other:    other,
			otherTSA: other.IssueTSA(t, testpki.TSAOptions{Name: "foreign TSA"}),
		}
	})
	if tsFixtureVal == nil {
		t.Fatal("time-stamping PKI could not be made")
	}
	return tsFixtureVal
}

// opts trusts the shared root; the tokens carry the TSA's certificate and
// the intermediate is given separately, as a message would carry it.
func (f *tsFixture) opts() TimeStampOptions {
	return TimeStampOptions{Roots: f.pki.Roots(), Certificates: []*x509.Certificate{f.pki.Intermediate.Cert}}
}

// tsSign makes a detached signature time-stamped by tsa (through the
// TimeStamp hook) and returns it with its signature value.
func tsSign(t testing.TB, id *testpki.Identity, stamp func([]byte) ([]byte, error)) ([]byte, *SignerInfo) {
	t.Helper()
	o := sigOpts(id)
	o.TimeStamp = stamp
	sig := sigDetached(t, o, []byte("time-stamped content\r\n"))
	sd, _, err := ParseSignedData(sig)
	if err != nil {
		t.Fatal(err)
	}
	return sig, sd.Signers[0]
}

func TestTimeStampOpenSSL(t *testing.T) {
	f := tsPKI(t)
	signer := sigPKI(t).identity(t, testpki.RSA2048, false)
	tsa := peer.NewOpenSSLTSA(t, f.tsa, peer.OpenSSLTSAOptions{})
	before := time.Now().Add(-time.Second)
	var stamped []byte
	_, si := tsSign(t, signer, func(sig []byte) ([]byte, error) {
		stamped = bytes.Clone(sig)
		return tsa.Stamp(t, sig, crypto.SHA256), nil
	})
	if !bytes.Equal(stamped, si.Signature) {
		t.Fatal("the hook did not get the signature value")
	}
	if si.TimeStampToken == nil {
		t.Fatal("no TimeStampToken parsed back")
	}
	ts, err := VerifyTimeStamp(si.TimeStampToken, si.Signature, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if ts.Time.Before(before.Truncate(time.Second)) || ts.Time.After(time.Now().Add(time.Second)) {
		t.Fatalf("time %v, want about now", ts.Time)
	}
	if ts.Authority == nil || !ts.Authority.Equal(f.tsa.Cert) || len(ts.Chain) != 3 || !ts.Chain[2].Equal(f.pki.Root.Cert) {
		t.Fatalf("authority %v chain %d", ts.Authority, len(ts.Chain))
	}
	if ts.Hash != crypto.SHA256 || ts.Serial == nil || ts.Serial.Sign() <= 0 || ts.Nonce != nil || ts.Policy.String() != "1.3.6.1.4.1.99999.1" {
		t.Fatalf("token fields: %+v", ts)
	}
}

// TestTimeStampOpenSSLForms verifies tokens in the forms OpenSSL's TSA
// can make.
func TestTimeStampOpenSSLForms(t *testing.T) {
	f := tsPKI(t)
	sigValue := []byte("the signature value")
	for _, c := range []struct {
		name     string
		o        peer.OpenSSLTSAOptions
		h        crypto.Hash
		accuracy time.Duration
		frac     bool
	}{
		{"defaults", peer.OpenSSLTSAOptions{}, crypto.SHA256, 0, false},
		{"sha384-imprint-ess-v1", peer.OpenSSLTSAOptions{ESSCertIDAlg: "sha1"}, crypto.SHA384, 0, false},
		{"sha512-imprint-signer-sha512", peer.OpenSSLTSAOptions{SignerDigest: "sha512"}, crypto.SHA512, 0, false},
		{"accuracy-fraction-name", peer.OpenSSLTSAOptions{Accuracy: "secs:2, millisecs:500, microsecs:7", PrecisionDigits: 6, TSAName: true},
			crypto.SHA256, 2*time.Second + 500*time.Millisecond + 7*time.Microsecond, true},
		{"chain-in-token", peer.OpenSSLTSAOptions{IncludeChain: true}, crypto.SHA256, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tsa := peer.NewOpenSSLTSA(t, f.tsa, c.o)
			token := tsa.Stamp(t, sigValue, c.h)
			opts := f.opts()
			if c.o.IncludeChain {
				opts.Certificates = nil
			}
			ts, err := VerifyTimeStamp(token, sigValue, opts)
			if err != nil {
				t.Fatal(err)
			}
			if ts.Hash != c.h || ts.Accuracy != c.accuracy {
				t.Fatalf("hash %v accuracy %v", ts.Hash, ts.Accuracy)
			}
			if c.o.TSAName && !strings.Contains(ts.Name, "smimed test TSA") {
				t.Fatalf("tsa name %q", ts.Name)
			}
			if c.frac && ts.Time.Nanosecond() == 0 {
				// One run in a million lands on a whole second.
				t.Logf("genTime %v has no fraction", ts.Time)
			}
		})
	}
}

func TestTimeStampRefused(t *testing.T) {
	f := tsPKI(t)
	emailID := sigPKI(t).identity(t, testpki.RSA2048, false)
	sigValue := []byte("the signature value")
	tsa := peer.NewOpenSSLTSA(t, f.tsa, peer.OpenSSLTSAOptions{})
	good := tsa.Stamp(t, sigValue, crypto.SHA256)
	tst := tsa.TSTInfo(t, good)
	foreign := peer.NewOpenSSLTSA(t, f.otherTSA, peer.OpenSSLTSAOptions{IncludeChain: true})
	weakSigner := peer.NewOpenSSLTSA(t, f.tsa, peer.OpenSSLTSAOptions{SignerDigest: "sha1", ESSCertIDAlg: "sha1"})
	expired := peer.NewOpenSSLTSA(t, f.pki.IssueTSA(t, testpki.TSAOptions{Name: "expired TSA", Key: testpki.P256,
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}), peer.OpenSSLTSAOptions{})

	// Flip a byte inside genTime: the TSA's messageDigest no longer matches.
	i := bytes.Index(good, tst)
	if i < 0 {
		t.Fatal("TSTInfo not found in the token")
	}
	info, err := parseTSTInfo(tst)
	if err != nil {
		t.Fatal(err)
	}
	gt := []byte(info.genTime.UTC().Format("20060102150405"))
	j := bytes.Index(tst, gt)
	tampered := bytes.Clone(good)
	tampered[i+j+3] ^= 1 // the year's last digit
	flippedSig := bytes.Clone(good)
	flippedSig[len(flippedSig)-10] ^= 0x10 // inside the TSA's signature value

	cases := []struct {
		name  string
		token []byte
		sig   []byte
		opts  func(*TimeStampOptions)
		want  error
	}{
		{"imprint-of-another-signature", good, []byte("another signature value"), nil, ErrImprintMismatch},
		{"tsa-without-timestamping-eku", tsa.SignTSTInfo(t, tst, emailID), sigValue, nil, ErrTimeStampUntrusted},
		{"tsa-eku-not-critical", tsa.SignTSTInfo(t, tst, f.nonCrit), sigValue, nil, ErrTimeStampUntrusted},
		{"untrusted-tsa", foreign.Stamp(t, sigValue, crypto.SHA256), sigValue, nil, ErrTimeStampUntrusted},
		{"tsa-intermediate-missing", good, sigValue, func(o *TimeStampOptions) { o.Certificates = nil }, ErrTimeStampUntrusted},
		{"tampered-tstinfo", tampered, sigValue, nil, ErrDigestMismatch},
		{"tampered-tsa-signature", flippedSig, sigValue, nil, ErrSignature},
		{"sha1-imprint", tsa.Stamp(t, sigValue, crypto.SHA1), sigValue, nil, ErrWeakAlgorithm},
		{"tsa-signs-with-sha1", weakSigner.Stamp(t, sigValue, crypto.SHA256), sigValue, nil, ErrWeakAlgorithm},
		{"in-the-future", good, sigValue, func(o *TimeStampOptions) { o.Now = time.Now().Add(-time.Hour) }, ErrTimeStampUntrusted},
		{"roots-of-another-pki", good, sigValue, func(o *TimeStampOptions) { o.Roots = f.other.Roots() }, ErrTimeStampUntrusted},
		{"tsa-expired-at-gentime", expired.Stamp(t, sigValue, crypto.SHA256), sigValue, nil, ErrTimeStampUntrusted},
		{"a-message-not-a-token", sigOpaque(t, sigOpts(emailID), []byte("x")), sigValue, nil, ErrMalformed},
		{"garbage", []byte("not a token"), sigValue, nil, ErrMalformed},
		{"empty", nil, sigValue, nil, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := f.opts()
			if c.opts != nil {
				c.opts(&opts)
			}
			ts, err := VerifyTimeStamp(c.token, c.sig, opts)
			if !errors.Is(err, c.want) || ts != nil {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			n := 0
			for _, s := range []error{ErrMalformed, ErrUnsupported, ErrDigestMismatch, ErrSignature, ErrImprintMismatch, ErrTimeStampUntrusted, ErrWeakAlgorithm} {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v wraps %d sentinels", err, n)
			}
		})
	}
}

func TestTimeStampHook(t *testing.T) {
	f := tsPKI(t)
	signer := sigPKI(t).identity(t, testpki.P256, false)
	tsa := peer.NewOpenSSLTSA(t, f.tsa, peer.OpenSSLTSAOptions{})
	content := []byte("Content-Type: text/plain\r\n\r\nhello\r\n")
	stamp := func(sig []byte) ([]byte, error) { return tsa.Stamp(t, sig, crypto.SHA256), nil }

	t.Run("opaque-round-trip-and-openssl-verifies", func(t *testing.T) {
		o := sigOpts(signer)
		o.TimeStamp = stamp
		msg := sigOpaque(t, o, content)
		sd, got, err := sigCheckOpaque(msg)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("%v %q", err, got)
		}
		si := sd.Signers[0]
		if _, err := VerifyTimeStamp(si.TimeStampToken, si.Signature, f.opts()); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		in := sigWrite(t, dir, "msg.der", msg)
		sigOpenSSL(t, dir, "cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", sigPKI(t).writeRoot(t, dir),
			"-purpose", "any", "-out", "out")
	})
	t.Run("detached-openssl-verifies", func(t *testing.T) {
		o := sigOpts(signer)
		o.TimeStamp = stamp
		sig := sigDetached(t, o, content)
		dir := t.TempDir()
		sigOpenSSL(t, dir, "cms", "-verify", "-binary", "-inform", "DER", "-in", sigWrite(t, dir, "sig.der", sig),
			"-content", sigWrite(t, dir, "content", content), "-CAfile", sigPKI(t).writeRoot(t, dir), "-purpose", "any", "-out", "out")
	})
	for _, c := range []struct {
		name  string
		stamp func([]byte) ([]byte, error)
		want  string
	}{
		{"hook-error", func([]byte) ([]byte, error) { return nil, errors.New("TSA unreachable") }, "TSA unreachable"},
		{"no-token", func([]byte) ([]byte, error) { return nil, nil }, "no token"},
		{"token-for-other-data", func([]byte) ([]byte, error) { return tsa.Stamp(t, []byte("other"), crypto.SHA256), nil }, "covers other data"},
		{"not-a-token", func([]byte) ([]byte, error) { return []byte{0x30, 0x03, 0x02, 0x01, 0x01}, nil }, "unusable token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := sigOpts(signer)
			o.TimeStamp = c.stamp
			s, err := NewDetachedSigner(o)
			if err != nil {
				t.Fatal(err)
			}
			s.Write(content)
			if _, err := s.Sign(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Sign error %v, want %q", err, c.want)
			}
		})
	}
	t.Run("ber-token-made-der", func(t *testing.T) {
		_, si := tsSign(t, signer, func(sig []byte) ([]byte, error) { return sigIndefinite(tsa.Stamp(t, sig, crypto.SHA256)), nil })
		if _, err := VerifyTimeStamp(si.TimeStampToken, si.Signature, f.opts()); err != nil {
			t.Fatal(err)
		}
		if der, err := ber.ToDER(si.TimeStampToken); err != nil || !bytes.Equal(der, si.TimeStampToken) {
			t.Fatal("the stored token is not DER")
		}
	})
}

func TestParseGenTime(t *testing.T) {
	base := time.Date(2026, 11, 23, 20, 30, 4, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"20261123203004Z", base, true},
		{"20261123203004.5Z", base.Add(500 * time.Millisecond), true},
		{"20261123203004.123456Z", base.Add(123456 * time.Microsecond), true},
		{"20261123203004.123456789Z", base.Add(123456789), true},
		{"20261123203004.50Z", base.Add(500 * time.Millisecond), true},
		{"20261123203004.1234567891Z", time.Time{}, false},
		{"20261123203004.Z", time.Time{}, false},
		{"20261123203004,5Z", time.Time{}, false},
		{"20261123203004", time.Time{}, false},
		{"20261123203004+0100", time.Time{}, false},
		{"2026112320300Z", time.Time{}, false},
		{"20261323203004Z", time.Time{}, false},
		{"2026112320300xZ", time.Time{}, false},
		{"20261123203004.5aZ", time.Time{}, false},
	} {
		got, err := parseGenTime(c.in)
		if (err == nil) != c.ok || (c.ok && !got.Equal(c.want)) {
			t.Errorf("parseGenTime(%q) = %v, %v", c.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("parseGenTime(%q): unclassified %v", c.in, err)
		}
	}
}

// tstBuild encodes a TSTInfo with the fields given; extra is appended
// after genTime.
func tstBuild(version int64, h crypto.Hash, extra func(b *cryptobyte.Builder)) []byte {
	return mustDER(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(version)
			b.AddASN1ObjectIdentifier([]int{1, 2, 3})
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(digestAlgorithmDER(h))
				b.AddASN1OctetString(make([]byte, h.Size()))
			})
			b.AddASN1BigInt(big.NewInt(42))
			b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes([]byte("20260101000000Z")) })
			if extra != nil {
				extra(b)
			}
		})
	})
}

func TestParseTSTInfo(t *testing.T) {
	ext := func(critical bool) func(b *cryptobyte.Builder) {
		return func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier([]int{1, 2, 3, 4})
					if critical {
						b.AddASN1Boolean(true)
					}
					b.AddASN1OctetString([]byte{5, 0})
				})
			})
		}
	}
	full := func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(3)
			b.AddASN1Int64WithTag(20, cbasn1.Tag(0).ContextSpecific())
		})
		b.AddASN1Boolean(true)
		b.AddASN1Int64(77)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte("https://tsa.example/")) })
		})
		ext(false)(b)
	}
	info, err := parseTSTInfo(tstBuild(1, crypto.SHA256, full))
	if err != nil {
		t.Fatal(err)
	}
	if info.accuracy != 3*time.Second+20*time.Millisecond || !info.ordering || info.nonce.Int64() != 77 ||
		info.name != "https://tsa.example/" || info.serial.Int64() != 42 || info.hash != crypto.SHA256 {
		t.Fatalf("parsed %+v", info)
	}
	for name, c := range map[string]struct {
		der  []byte
		want error
	}{
		"version-2":          {tstBuild(2, crypto.SHA256, nil), ErrMalformed},
		"critical-extension": {tstBuild(1, crypto.SHA256, ext(true)), ErrUnsupported},
		"trailing-field":     {tstBuild(1, crypto.SHA256, func(b *cryptobyte.Builder) { b.AddASN1OctetString(nil) }), ErrMalformed},
		"accuracy-millis-1000": {tstBuild(1, crypto.SHA256, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64WithTag(1000, cbasn1.Tag(0).ContextSpecific()) })
		}), ErrMalformed},
		"accuracy-negative": {tstBuild(1, crypto.SHA256, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64(-1) })
		}), ErrMalformed},
	} {
		if _, err := parseTSTInfo(c.der); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// A SHA-224 imprint parses but is refused when checked.
	info, err = parseTSTInfo(tstBuild(1, crypto.SHA224, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := info.checkImprint(nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("SHA-224 imprint: %v", err)
	}
}
