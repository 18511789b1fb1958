package cms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/internal/ber"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// TestSignRoundTrip signs with every supported key type, hash, form and
// signer identifier, then parses and verifies with this package.
func TestSignRoundTrip(t *testing.T) {
	f := sigPKI(t)
	type keyCase struct {
		name string
		kt   testpki.KeyType
		pss  bool
		alg  string
	}
	keys := []keyCase{
		{"rsa2048-pkcs1v15", testpki.RSA2048, false, "rsa-pkcs1v15"},
		{"rsa2048-pss", testpki.RSA2048, true, "rsa-pss"},
		{"p256", testpki.P256, false, "ecdsa"},
		{"p384", testpki.P384, false, "ecdsa"},
		{"p521", testpki.P521, false, "ecdsa"},
	}
	hashes := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}
	sizes := []int{0, 1, 16<<10 - 1, 16<<10 + 1}
	when := time.Date(2031, 5, 6, 7, 8, 9, 500, time.UTC)
	for _, k := range keys {
		for _, h := range hashes {
			for _, ski := range []bool{false, true} {
				for _, opaque := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/ski=%v/opaque=%v", k.name, Micalg(h), ski, opaque)
					t.Run(name, func(t *testing.T) {
						id := f.identity(t, k.kt, ski)
						opts := sigOpts(id)
						opts.Hash, opts.PSS, opts.SubjectKeyID, opts.SigningTime = h, k.pss, ski, when
						for _, n := range sizes {
							content := sigContent(n)
							var sd *SignedData
							var err error
							var msg []byte
							if opaque {
								msg = sigOpaque(t, opts, content)
								var got []byte
								sd, got, err = sigCheckOpaque(msg)
								if err == nil && !bytes.Equal(got, content) {
									t.Fatalf("size %d: content differs", n)
								}
							} else {
								msg = sigDetached(t, opts, content)
								sd, err = sigCheckDetached(msg, content)
							}
							if err != nil {
								t.Fatalf("size %d: %v", n, err)
							}
							si := sd.Signers[0]
							if si.Hash != h || si.SignatureAlgorithm != k.alg || !si.SigningTime.Equal(when.Truncate(time.Second)) {
								t.Fatalf("signer info: hash %v alg %q time %v", si.Hash, si.SignatureAlgorithm, si.SigningTime)
							}
							if k.pss && si.PSSHash != h {
								t.Fatalf("PSS hash %v", si.PSSHash)
							}
							if ski != (si.SubjectKeyID != nil) || ski == (si.IssuerAndSerial != nil) {
								t.Fatalf("signer identifier: ski %x ias %x", si.SubjectKeyID, si.IssuerAndSerial)
							}
							if len(sd.Certificates) != 2 || !sd.Certificates[0].Equal(id.Cert) || !sd.Certificates[1].Equal(id.Chain[0]) {
								t.Fatalf("certificates not cert, chain")
							}
							if !slices.Equal(sd.DigestAlgorithms, []crypto.Hash{h}) || !sd.ContentType.Equal(oidData) || sd.Detached == opaque {
								t.Fatalf("SignedData fields: %+v", sd)
							}
							if w := si.Weakness(id.Cert); w != "" {
								t.Fatalf("weakness %q", w)
							}
							wantVersion := int64(1)
							if ski {
								wantVersion = 3
							}
							if v := sigSignedDataVersion(t, msg); v != wantVersion {
								t.Fatalf("SignedData version %d, want %d", v, wantVersion)
							}
						}
					})
				}
			}
		}
	}
}

// TestSignSizes covers segment boundaries and a large message in both forms.
func TestSignSizes(t *testing.T) {
	f := sigPKI(t)
	for _, kt := range []testpki.KeyType{testpki.RSA2048, testpki.P256} {
		id := f.identity(t, kt, false)
		for _, n := range []int{0, 1, 16<<10 - 1, 16 << 10, 16<<10 + 1, 1 << 20} {
			content := sigContent(n)
			t.Run(fmt.Sprintf("%s/%d", kt, n), func(t *testing.T) {
				msg := sigOpaque(t, sigOpts(id), content)
				_, got, err := sigCheckOpaque(msg)
				if err != nil || !bytes.Equal(got, content) {
					t.Fatalf("opaque: %v (content equal %v)", err, bytes.Equal(got, content))
				}
				// The in-memory parser agrees with the streaming one.
				sd, got2, err := ParseSignedData(msg)
				if err != nil || !bytes.Equal(got2, content) || got2 == nil {
					t.Fatalf("ParseSignedData: %v", err)
				}
				d := NewDigester(sd.DigestAlgorithms...)
				d.Write(got2)
				if err := sigVerifyAll(sd, d.Sums()); err != nil {
					t.Fatal(err)
				}
				sig := sigDetached(t, sigOpts(id), content)
				if _, err := sigCheckDetached(sig, content); err != nil {
					t.Fatalf("detached: %v", err)
				}
			})
		}
	}
}

// TestOpaqueReaderSmallReads reads a message through a reader that hands
// out one byte at a time and a reader that fails half-way.
func TestOpaqueReaderSmallReads(t *testing.T) {
	f := sigPKI(t)
	id := f.identity(t, testpki.P256, false)
	content := sigContent(40000)
	msg := sigOpaque(t, sigOpts(id), content)

	r, err := NewSignedDataReader(iotest.OneByteReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(iotest.OneByteReader(r.Content()))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content: %v", err)
	}
	sd, digests, err := r.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := sigVerifyAll(sd, digests); err != nil {
		t.Fatal(err)
	}

	// Finish without reading the content hashes it all the same.
	r, err = NewSignedDataReader(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, r.Content(), 100)
	sd, digests, err = r.Finish()
	if err != nil || sigVerifyAll(sd, digests) != nil {
		t.Fatalf("finish after partial read: %v", err)
	}
	if _, _, err := r.Finish(); err == nil {
		t.Fatal("second Finish succeeded")
	}

	// An I/O error is passed on, not dressed up as a malformed message.
	ioErr := errors.New("disk on fire")
	r, err = NewSignedDataReader(io.MultiReader(bytes.NewReader(msg[:20000]), iotest.ErrReader(ioErr)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r.Content()); !errors.Is(err, ioErr) {
		t.Fatalf("read error %v, want %v", err, ioErr)
	}
	if _, _, err := r.Finish(); !errors.Is(err, ioErr) {
		t.Fatalf("Finish error %v", err)
	}
}

// TestOpaqueSignerConstantMemory streams 32 MiB through signer and reader
// and checks that allocations do not grow with the content.
func TestOpaqueSignerConstantMemory(t *testing.T) {
	f := sigPKI(t)
	id := f.identity(t, testpki.P256, false)
	const size = 32 << 20
	chunk := sigContent(64 << 10)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		w, err := NewOpaqueSigner(pw, sigOpts(id))
		if err != nil {
			pw.CloseWithError(err)
			errc <- err
			return
		}
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				errc <- err
				return
			}
		}
		err = w.Close()
		pw.CloseWithError(err)
		errc <- err
	}()
	r, err := NewSignedDataReader(pr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, r.Content())
	if err != nil || n != size {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	sd, digests, err := r.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := sigVerifyAll(sd, digests); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&ms1)
	if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("streaming %d MiB allocated %d bytes", size>>20, alloc)
	}
}

// TestSignOptionsErrors covers option checking.
func TestSignOptionsErrors(t *testing.T) {
	f := sigPKI(t)
	rsaID := f.identity(t, testpki.RSA2048, false)
	ecID := f.identity(t, testpki.P256, false)
	capAttr, _ := CapabilitiesAttribute(DefaultCapabilities())
	tests := []struct {
		name        string
		mod         func(o *SignOptions)
		unsupported bool
	}{
		{"no signer", func(o *SignOptions) { o.Signer = nil }, false},
		{"no certificate", func(o *SignOptions) { o.Certificate = nil }, false},
		{"key mismatch", func(o *SignOptions) { o.Signer = ecID.Key }, false},
		{"sha1", func(o *SignOptions) { o.Hash = crypto.SHA1 }, true},
		{"sha224", func(o *SignOptions) { o.Hash = crypto.SHA224 }, true},
		{"md5", func(o *SignOptions) { o.Hash = crypto.MD5 }, true},
		{"ski without extension", func(o *SignOptions) { o.SubjectKeyID = true }, false},
		{"reserved attribute", func(o *SignOptions) {
			o.Attributes = []Attribute{{Type: oidSigningTime, Values: [][]byte{{0x17, 0x00}}}}
		}, false},
		{"duplicate attribute", func(o *SignOptions) { o.Attributes = []Attribute{capAttr, capAttr} }, false},
		{"attribute without values", func(o *SignOptions) { o.Attributes = []Attribute{{Type: oidSMIMECapabilities}} }, false},
		{"attribute value not DER", func(o *SignOptions) {
			o.Attributes = []Attribute{{Type: oidSMIMECapabilities, Values: [][]byte{{0x30, 0x05}}}}
		}, false},
		{"nil chain entry", func(o *SignOptions) { o.Chain = []*x509.Certificate{nil} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := sigOpts(rsaID)
			tt.mod(&o)
			_, err := NewDetachedSigner(o)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrUnsupported) != tt.unsupported {
				t.Fatalf("error %v: unsupported=%v", err, errors.Is(err, ErrUnsupported))
			}
			if _, err := NewOpaqueSigner(io.Discard, o); err == nil {
				t.Fatal("opaque: no error")
			}
		})
	}
}

// countingSigner counts Sign calls.
type countingSigner struct {
	crypto.Signer
	calls int
	fail  bool
	junk  bool
}

func (c *countingSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	c.calls++
	if c.fail {
		return nil, errors.New("token removed")
	}
	sig, err := c.Signer.Sign(r, d, o)
	if c.junk && err == nil {
		sig[len(sig)/2] ^= 0xff
	}
	return sig, err
}

// TestSignerCalledOnce checks that Sign is called exactly once per message
// and that a bad signature from the key is caught before it leaves.
func TestSignerCalledOnce(t *testing.T) {
	f := sigPKI(t)
	for _, kt := range []testpki.KeyType{testpki.RSA2048, testpki.P384} {
		id := f.identity(t, kt, false)
		cs := &countingSigner{Signer: id.Key}
		o := sigOpts(id)
		o.Signer = cs
		ds, err := NewDetachedSigner(o)
		if err != nil {
			t.Fatal(err)
		}
		ds.Write([]byte("hello"))
		if _, err := ds.Sign(); err != nil {
			t.Fatal(err)
		}
		if _, err := ds.Sign(); err == nil {
			t.Fatal("second Sign succeeded")
		}
		if _, err := ds.Write([]byte("x")); err == nil {
			t.Fatal("Write after Sign succeeded")
		}
		w, err := NewOpaqueSigner(io.Discard, o)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("hello"))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if cs.calls != 2 {
			t.Fatalf("%s: Sign called %d times for two messages", kt, cs.calls)
		}

		cs.junk = true
		ds, _ = NewDetachedSigner(o)
		if _, err := ds.Sign(); err == nil {
			t.Fatalf("%s: corrupted signature was not caught", kt)
		}
		cs.junk, cs.fail = false, true
		w, _ = NewOpaqueSigner(io.Discard, o)
		if err := w.Close(); err == nil {
			t.Fatal("signer failure not reported")
		}
	}
}

// TestSignedAttributes checks what goes into the signed attributes: DER
// order, signing time encodings, extra attributes read back.
func TestSignedAttributes(t *testing.T) {
	f := sigPKI(t)
	id := f.identity(t, testpki.P256, false)
	encID := f.identity(t, testpki.RSA2048, true)
	caps, err := CapabilitiesAttribute(DefaultCapabilities())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := EncryptionKeyPreferenceAttribute(encID.Cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		when time.Time
		tag  byte
	}{
		{time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), ber.TagUTCTime},
		{time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC), ber.TagGeneralizedTime},
		{time.Date(1999, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), ber.TagUTCTime},
		{time.Date(1949, 1, 1, 0, 0, 0, 0, time.UTC), ber.TagGeneralizedTime},
	} {
		o := sigOpts(id)
		o.SigningTime = tc.when
		o.Attributes = []Attribute{kp, caps}
		content := []byte("attributes")
		sig := sigDetached(t, o, content)
		sd, err := sigCheckDetached(sig, content)
		if err != nil {
			t.Fatal(err)
		}
		si := sd.Signers[0]
		if !si.SigningTime.Equal(tc.when) {
			t.Fatalf("signing time %v, want %v", si.SigningTime, tc.when)
		}
		var st Attribute
		for i, a := range si.SignedAttrs {
			if a.Type.Equal(oidSigningTime) {
				st = a
			}
			if i > 0 {
				prev, _ := marshalAttribute(si.SignedAttrs[i-1])
				cur, _ := marshalAttribute(a)
				if bytes.Compare(prev, cur) > 0 {
					t.Fatal("signed attributes not in DER order")
				}
			}
		}
		if st.Values[0][0] != tc.tag {
			t.Fatalf("signing time %v encoded with tag %d", tc.when, st.Values[0][0])
		}
		if len(si.SignedAttrs) != 5 {
			t.Fatalf("%d signed attributes", len(si.SignedAttrs))
		}
		if !slices.EqualFunc(si.Capabilities, DefaultCapabilities(), func(a, b Capability) bool {
			return a.Algorithm.Equal(b.Algorithm) && bytes.Equal(a.Parameters, b.Parameters)
		}) {
			t.Fatalf("capabilities %v", si.Capabilities)
		}
		if si.EncryptionKeyPreference == nil || !si.EncryptionKeyPreference.Matches(encID.Cert) || si.EncryptionKeyPreference.Matches(id.Cert) {
			t.Fatalf("key preference %+v", si.EncryptionKeyPreference)
		}
		if si.UnsignedAttrs != nil {
			t.Fatal("unexpected unsigned attributes")
		}
	}
}

// TestTamper checks that changed content gives ErrDigestMismatch and a
// changed signature or signed attribute gives ErrSignature.
func TestTamper(t *testing.T) {
	f := sigPKI(t)
	for _, k := range []struct {
		kt  testpki.KeyType
		pss bool
	}{{testpki.RSA2048, false}, {testpki.RSA2048, true}, {testpki.P256, false}, {testpki.P521, false}} {
		t.Run(fmt.Sprintf("%s-pss=%v", k.kt, k.pss), func(t *testing.T) {
			id := f.identity(t, k.kt, false)
			o := sigOpts(id)
			o.PSS = k.pss
			o.SigningTime = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			content := []byte("The quick brown fox jumps over the lazy dog, signed.")
			sig := sigDetached(t, o, content)
			opaque := sigOpaque(t, o, content)
			sd, _, err := ParseSignedData(sig)
			if err != nil {
				t.Fatal(err)
			}
			sigValue := sd.Signers[0].Signature
			timeBytes := []byte("300102030405Z")

			changed := bytes.Clone(content)
			changed[3] ^= 0x20
			if _, err := sigCheckDetached(sig, changed); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("detached, changed content: %v", err)
			}
			if _, _, err := sigCheckOpaque(sigFlip(t, opaque, content, 3)); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("opaque, changed content: %v", err)
			}
			if _, err := sigCheckDetached(sigFlip(t, sig, sigValue, len(sigValue)/2), content); !errors.Is(err, ErrSignature) {
				t.Errorf("detached, changed signature: %v", err)
			}
			if _, err := sigCheckDetached(sigFlip(t, sig, timeBytes, 11), content); !errors.Is(err, ErrSignature) {
				t.Errorf("detached, changed signing time: %v", err)
			}
			if _, _, err := sigCheckOpaque(sigFlip(t, opaque, timeBytes, 11)); !errors.Is(err, ErrSignature) {
				t.Errorf("opaque, changed signing time: %v", err)
			}
			// Another identity's certificate does not verify the signature.
			other := f.identity(t, testpki.RSA2048, true)
			if err := sd.Signers[0].Verify(other.Cert, oidData, map[crypto.Hash][]byte{crypto.SHA256: sigSHA256(content)}); !errors.Is(err, ErrSignature) {
				t.Errorf("wrong certificate: %v", err)
			}
		})
	}
}

func sigSHA256(p []byte) []byte {
	d := NewDigester(crypto.SHA256)
	d.Write(p)
	return d.Sums()[crypto.SHA256]
}

// TestVerifyErrors covers Verify's checks other than the signature value.
func TestVerifyErrors(t *testing.T) {
	f := sigPKI(t)
	id := f.identity(t, testpki.RSA2048, false)
	content := []byte("verify errors")
	good := map[crypto.Hash][]byte{crypto.SHA256: sigSHA256(content)}
	parse := func(o SignOptions) *SignerInfo {
		sd, _, err := ParseSignedData(sigDetached(t, o, content))
		if err != nil {
			t.Fatal(err)
		}
		return sd.Signers[0]
	}
	pssOpts := sigOpts(id)
	pssOpts.PSS = true
	tests := []struct {
		name    string
		si      func() *SignerInfo
		ct      []int
		digests map[crypto.Hash][]byte
		want    error
	}{
		{"good", func() *SignerInfo { return parse(sigOpts(id)) }, oidData, good, nil},
		{"no digest for the hash", func() *SignerInfo { return parse(sigOpts(id)) }, oidData,
			map[crypto.Hash][]byte{crypto.SHA384: make([]byte, 48)}, ErrUnsupported},
		{"content type differs", func() *SignerInfo { return parse(sigOpts(id)) }, oidEnvelopedData, good, ErrMalformed},
		{"unknown digest algorithm", func() *SignerInfo {
			si := parse(sigOpts(id))
			si.Hash, si.DigestOID = 0, []int{1, 2, 3}
			return si
		}, oidData, good, ErrUnsupported},
		{"signature hash differs from digest", func() *SignerInfo {
			si := parse(sigOpts(id))
			si.sigHash = crypto.SHA512
			return si
		}, oidData, good, ErrUnsupported},
		{"pss mgf hash differs", func() *SignerInfo {
			si := parse(pssOpts)
			p := *si.pss
			p.mgfHash = crypto.SHA384
			si.pss = &p
			return si
		}, oidData, good, ErrUnsupported},
		{"pss salt differs", func() *SignerInfo {
			si := parse(pssOpts)
			p := *si.pss
			p.saltLength = 20
			si.pss = &p
			return si
		}, oidData, good, ErrSignature},
		{"missing messageDigest", func() *SignerInfo {
			si := parse(sigOpts(id))
			si.MessageDigest = nil
			return si
		}, oidData, good, ErrMalformed},
		{"no signed attributes over non-data content", func() *SignerInfo {
			si := parse(sigOpts(id))
			si.RawSignedAttrs, si.SignedAttrs = nil, nil
			return si
		}, oidEnvelopedData, good, ErrMalformed},
		{"missing contentType", func() *SignerInfo {
			si := parse(sigOpts(id))
			si.contentType = nil
			return si
		}, oidData, good, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.si().Verify(id.Cert, tt.ct, tt.digests)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	if err := parse(sigOpts(id)).Verify(nil, oidData, good); err == nil {
		t.Fatal("nil certificate accepted")
	}
}

// TestWeakness checks what Weakness reports.
func TestWeakness(t *testing.T) {
	f := sigPKI(t)
	rsa1024 := f.pki.Issue(t, testpki.Options{Email: "weak@example.org", Key: testpki.RSA1024})
	good := f.identity(t, testpki.P384, false)
	content := []byte("weak")
	// Old digests, signed through the internals (the public API refuses).
	for _, h := range []crypto.Hash{crypto.MD5, crypto.SHA1} {
		msg := sigSignWithHash(t, f.identity(t, testpki.RSA2048, false), h, content)
		sd, err := sigCheckDetached(msg, content)
		if err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		want := map[crypto.Hash]string{crypto.MD5: "MD5 digest", crypto.SHA1: "SHA-1 digest"}[h]
		if w := sd.Signers[0].Weakness(sd.Certificates[0]); w != want {
			t.Fatalf("%v: weakness %q, want %q", h, w, want)
		}
	}
	// A small RSA key verifies, and is weak.
	sig := sigDetached(t, sigOpts(rsa1024), content)
	sd, err := sigCheckDetached(sig, content)
	if err != nil {
		t.Fatal(err)
	}
	if w := sd.Signers[0].Weakness(rsa1024.Cert); w != "RSA key of 1024 bits (minimum 2048)" {
		t.Fatalf("weakness %q", w)
	}
	if w := sd.Signers[0].Weakness(good.Cert); w != "" {
		t.Fatalf("weakness %q for a P-384 certificate", w)
	}
	p224 := sigP224Cert(t)
	if w := sd.Signers[0].Weakness(p224); w != "EC key on an unsupported curve" {
		t.Fatalf("weakness %q for P-224", w)
	}
}

// TestFindCertificate matches by issuer and serial and by key identifier.
func TestFindCertificate(t *testing.T) {
	f := sigPKI(t)
	a := f.identity(t, testpki.RSA2048, false)
	b := f.identity(t, testpki.P256, true)
	c := f.identity(t, testpki.P384, false)
	pool := []*x509.Certificate{nil, f.pki.Intermediate.Cert, c.Cert, b.Cert, a.Cert}
	ias, _ := marshalIssuerAndSerial(a.Cert)
	if got := (&SignerInfo{IssuerAndSerial: ias}).FindCertificate(pool); got != a.Cert {
		t.Fatal("issuer and serial: not found")
	}
	if got := (&SignerInfo{SubjectKeyID: b.Cert.SubjectKeyId}).FindCertificate(pool); got != b.Cert {
		t.Fatal("subject key id: not found")
	}
	if got := (&SignerInfo{SubjectKeyID: []byte{1, 2, 3}}).FindCertificate(pool); got != nil {
		t.Fatal("unknown key id found something")
	}
	// A certificate without the extension matches the RFC 5280 method 1 key id.
	if len(c.Cert.SubjectKeyId) != 0 {
		t.Fatal("fixture certificate unexpectedly has a key id")
	}
	ski := sigMethod1KeyID(t, c.Cert)
	if got := (&SignerInfo{SubjectKeyID: ski}).FindCertificate(pool); got != c.Cert {
		t.Fatal("method 1 key id: not found")
	}
	if (&SignerInfo{}).FindCertificate(pool) != nil {
		t.Fatal("empty signer identifier matched")
	}
}

// TestCertsOnly round-trips a certs-only message.
func TestCertsOnly(t *testing.T) {
	f := sigPKI(t)
	a := f.identity(t, testpki.RSA2048, false)
	certs := []*x509.Certificate{a.Cert, f.pki.Intermediate.Cert, f.pki.Root.Cert}
	der, err := MarshalCertsOnly(certs)
	if err != nil {
		t.Fatal(err)
	}
	sd, content, err := ParseSignedData(der)
	if err != nil {
		t.Fatal(err)
	}
	if !sd.CertsOnly() || !sd.Detached || content != nil || len(sd.DigestAlgorithms) != 0 || sd.SkippedCertificates != 0 {
		t.Fatalf("certs-only parsed as %+v", sd)
	}
	if !slices.EqualFunc(sd.Certificates, certs, (*x509.Certificate).Equal) {
		t.Fatal("certificates differ")
	}
	if v := sigSignedDataVersion(t, der); v != 1 {
		t.Fatalf("version %d", v)
	}
	if _, err := MarshalCertsOnly(nil); err == nil {
		t.Fatal("empty certs-only accepted")
	}
}

// TestParseForms parses hand-made variants: BER with indefinite lengths
// everywhere, NULL digest parameters, unparseable and non-X.509
// certificate entries, CRLs.
func TestParseForms(t *testing.T) {
	f := sigPKI(t)
	id := f.identity(t, testpki.P256, false)
	content := []byte("forms")
	sig := sigDetached(t, sigOpts(id), content)
	parts := sigSplit(t, sig)

	build := func(p sigParts) []byte { return p.assemble(t) }
	tests := []struct {
		name    string
		mod     func(p *sigParts)
		skipped int
		certs   int
	}{
		{"as made", func(p *sigParts) {}, 0, 2},
		{"NULL digest parameters", func(p *sigParts) {
			p.digestAlgs = []byte{0x31, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00}
		}, 0, 2},
		{"unknown digest algorithm listed too", func(p *sigParts) {
			p.digestAlgs = []byte{0x31, 0x13, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
				0x30, 0x04, 0x06, 0x02, 0x2a, 0x03}
		}, 0, 2},
		{"garbage certificate skipped", func(p *sigParts) {
			p.certs = append(p.certs, []byte{0x30, 0x03, 0x02, 0x01, 0x01})
		}, 1, 2},
		{"attribute certificate skipped", func(p *sigParts) {
			p.certs = append(p.certs, []byte{0xa2, 0x03, 0x02, 0x01, 0x01})
		}, 1, 2},
		{"CRLs skipped", func(p *sigParts) {
			p.crls = []byte{0xa1, 0x05, 0x30, 0x03, 0x02, 0x01, 0x01}
		}, 0, 2},
		{"no certificates", func(p *sigParts) { p.certs = nil }, 0, 0},
		{"indefinite lengths and segmented strings", func(p *sigParts) { p.indefinite = true }, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parts.clone()
			tt.mod(&p)
			msg := build(p)
			sd, got, err := ParseSignedData(msg)
			if err != nil {
				t.Fatal(err)
			}
			if got != nil || sd.SkippedCertificates != tt.skipped || len(sd.Certificates) != tt.certs {
				t.Fatalf("content %v skipped %d certs %d", got, sd.SkippedCertificates, len(sd.Certificates))
			}
			d := NewDigester(sd.DigestAlgorithms...)
			d.Write(content)
			if err := sd.Signers[0].Verify(id.Cert, sd.ContentType, d.Sums()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMalformed feeds broken input: every truncation of real messages,
// garbage, and structures over the limits. All must fail cleanly with the
// right sentinel, never panic.
func TestMalformed(t *testing.T) {
	f := sigPKI(t)
	id := f.identity(t, testpki.RSA2048, false)
	sig := sigDetached(t, sigOpts(id), []byte("x"))
	opaque := sigOpaque(t, sigOpts(id), sigContent(3000))
	for name, msg := range map[string][]byte{"detached": sig, "opaque": opaque} {
		for n := 0; n < len(msg); n++ {
			if _, _, err := ParseSignedData(msg[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s truncated to %d bytes: %v", name, n, err)
			}
			r, err := NewSignedDataReader(bytes.NewReader(msg[:n]))
			if err == nil {
				_, _, err = r.Finish()
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s truncated to %d bytes, streamed: %v", name, n, err)
			}
		}
		if _, _, err := ParseSignedData(append(bytes.Clone(msg), 0x00)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s with trailing data: %v", name, err)
		}
	}

	parts := sigSplit(t, sig)
	random := make([]byte, 4096)
	rand.Read(random)
	big := make([]byte, maxCertificateSize)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"random", random, ErrMalformed},
		{"empty sequence", []byte{0x30, 0x00}, ErrMalformed},
		{"integer", []byte{0x02, 0x01, 0x00}, ErrMalformed},
		{"data content type", sigContentInfo(oidData, []byte{0x04, 0x00}), ErrUnsupported},
		{"enveloped content type", sigContentInfo(oidEnvelopedData, []byte{0x30, 0x00}), ErrUnsupported},
		{"bad version", parts.with(t, func(p *sigParts) { p.version = 2 }), ErrMalformed},
		{"digestAlgorithms not a set", parts.with(t, func(p *sigParts) { p.digestAlgs = []byte{0x30, 0x00} }), ErrMalformed},
		{"too many digest algorithms", parts.with(t, func(p *sigParts) {
			var set []byte
			for range maxDigestAlgorithms + 1 {
				set = append(set, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01)
			}
			p.digestAlgs = append(ber.AppendHeader(nil, 0, ber.TagSet, true, int64(len(set))), set...)
		}), ErrMalformed},
		{"digest with parameters", parts.with(t, func(p *sigParts) {
			p.digestAlgs = []byte{0x31, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x02, 0x00}
		}), ErrMalformed},
		{"eContent not an octet string", parts.with(t, func(p *sigParts) { p.eContent = []byte{0x30, 0x00} }), ErrUnsupported},
		{"too many certificates", parts.with(t, func(p *sigParts) {
			for range maxCertificates {
				p.certs = append(p.certs, p.certs[0])
			}
		}), ErrMalformed},
		{"certificate too large", parts.with(t, func(p *sigParts) {
			p.certs = append(p.certs, append(ber.AppendHeader(nil, 0, ber.TagSequence, true, int64(len(big))), big...))
		}), ErrMalformed},
		{"too many signers", parts.with(t, func(p *sigParts) {
			for range maxSigners {
				p.signers = append(p.signers, p.signers[0])
			}
		}), ErrMalformed},
		{"signed attributes too large", parts.with(t, func(p *sigParts) {
			p.signers[0] = sigBigAttrs(t, p.signers[0])
		}), ErrMalformed},
		{"signer not a sequence", parts.with(t, func(p *sigParts) { p.signers[0] = []byte{0x04, 0x00} }), ErrMalformed},
		{"signer with only a version", parts.with(t, func(p *sigParts) {
			p.signers[0] = []byte{0x30, 0x03, 0x02, 0x01, 0x01}
		}), ErrMalformed},
		{"missing signerInfos", parts.with(t, func(p *sigParts) { p.noSigners = true }), ErrMalformed},
		{"certificates after crls", parts.with(t, func(p *sigParts) { p.crls = []byte{0xa1, 0x00}; p.crlsFirst = true }), ErrMalformed},
		{"deep nesting", parts.with(t, func(p *sigParts) {
			var deep []byte
			for range 200 {
				deep = append(deep, 0xa3, 0x80)
			}
			p.certs = append(p.certs, deep)
			p.indefinite = true
		}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseSignedData(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			r, err := NewSignedDataReader(bytes.NewReader(tt.in))
			if err == nil {
				_, _, err = r.Finish()
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("streamed: error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestSignatureAlgorithmVariants rewrites the signatureAlgorithm of real
// signatures into the other forms senders use, and into broken ones.
func TestSignatureAlgorithmVariants(t *testing.T) {
	f := sigPKI(t)
	rsaID := f.identity(t, testpki.RSA2048, false)
	ecID := f.identity(t, testpki.P256, false)
	content := []byte("variants")
	rsaSig := sigDetached(t, sigOpts(rsaID), content)
	pssOpts := sigOpts(rsaID)
	pssOpts.PSS = true
	pssSig := sigDetached(t, pssOpts, content)
	ecSig := sigDetached(t, sigOpts(ecID), content)

	rsaEnc := capUnhex(t, "300d 0609 2a864886f70d010101 0500")
	ecdsa256 := capUnhex(t, "300a 0608 2a8648ce3d040302")
	pssSHA256, _ := marshalPSSAlgorithm(crypto.SHA256)
	tests := []struct {
		name string
		msg  []byte
		new  string
		alg  string
		want error
	}{
		{"sha256WithRSAEncryption", rsaSig, "300d 0609 2a864886f70d01010b 0500", "rsa-pkcs1v15", nil},
		{"sha256WithRSAEncryption absent params", rsaSig, "300b 0609 2a864886f70d01010b", "rsa-pkcs1v15", nil},
		{"rsaEncryption absent params", rsaSig, "300b 0609 2a864886f70d010101", "rsa-pkcs1v15", nil},
		{"sha1WithRSAEncryption over SHA-256", rsaSig, "300d 0609 2a864886f70d010105 0500", "rsa-pkcs1v15", ErrUnsupported},
		{"rsaEncryption with odd parameters", rsaSig, "300e 0609 2a864886f70d010101 020100", "rsa-pkcs1v15", ErrMalformed},
		{"unknown signature algorithm", rsaSig, "3007 0603 2a0304 0500", "1.2.3.4", ErrUnsupported},
		{"id-ecPublicKey", ecSig, "3009 0607 2a8648ce3d0201", "ecdsa", nil},
		{"ecdsa-with-SHA256 NULL", ecSig, "300c 0608 2a8648ce3d040302 0500", "ecdsa", nil},
		{"ecdsa-with-SHA384 over SHA-256", ecSig, "300a 0608 2a8648ce3d040303", "ecdsa", ErrUnsupported},
		{"ECDSA signature, RSA algorithm", ecSig, "300d 0609 2a864886f70d010101 0500", "rsa-pkcs1v15", ErrSignature},
		{"PSS without parameters means SHA-1", pssSig, "300b 0609 2a864886f70d01010a", "rsa-pss", ErrUnsupported},
		{"PSS with broken parameters", pssSig, "300f 0609 2a864886f70d01010a 3002 0500", "rsa-pss", ErrMalformed},
		{"PSS with unknown MGF", pssSig, "301b 0609 2a864886f70d01010a 300e a10c 300a 0603 2a0304 3003 0601 2a", "rsa-pss", ErrUnsupported},
		{"PSS with trailer 2", pssSig, "3012 0609 2a864886f70d01010a 3005 a303 020102", "rsa-pss", ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old []byte
			switch {
			case bytes.Equal(tt.msg, rsaSig):
				old = rsaEnc
			case bytes.Equal(tt.msg, ecSig):
				old = ecdsa256
			default:
				old = pssSHA256
			}
			parts := sigSplit(t, tt.msg)
			parts.signers[0] = sigReplaceChild(t, parts.signers[0], old, capUnhex(t, tt.new))
			msg := parts.assemble(t)
			sd, err := sigCheckDetached(msg, content)
			if sd == nil {
				t.Fatalf("parse: %v", err)
			}
			if got := sd.Signers[0].SignatureAlgorithm; got != tt.alg {
				t.Errorf("SignatureAlgorithm %q, want %q", got, tt.alg)
			}
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// sigReplaceChild replaces the direct child old of a DER SEQUENCE with new.
func sigReplaceChild(t testing.TB, seqDER, old, new []byte) []byte {
	t.Helper()
	s := cryptobyte.String(seqDER)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SEQUENCE) {
		t.Fatal("not a SEQUENCE")
	}
	var b cryptobyte.Builder
	found := false
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for !body.Empty() {
			var e cryptobyte.String
			var tag cbasn1.Tag
			body.ReadAnyASN1Element(&e, &tag)
			if bytes.Equal(e, old) && !found {
				found = true
				b.AddBytes(new)
				continue
			}
			b.AddBytes(e)
		}
	})
	if !found {
		t.Fatal("child not found")
	}
	return b.BytesOrPanic()
}
