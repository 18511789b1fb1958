package smime

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/cms"
)

const plainMsg = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.org>\r\n" +
	"Subject: lunch\r\n" +
	"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"Content-Type: text/plain; charset=us-ascii\r\n" +
	"\r\n" +
	"Shall we meet at noon?\r\n" +
	"-- \r\n" +
	"Alice\r\n"

// innerOf is the entity plainMsg's body becomes once protected.
const plainInner = "Content-Type: text/plain; charset=us-ascii\r\n\r\nShall we meet at noon?\r\n-- \r\nAlice\r\n"

func TestSignRoundTrip(t *testing.T) {
	f := getFixture(t)
	type keyCase struct {
		name string
		id   *testpki.Identity
		pss  bool
		alg  string
	}
	keys := []keyCase{
		{"rsa2048-v15", f.aliceP[testpki.RSA2048], false, "rsa-pkcs1v15"},
		{"rsa2048-pss", f.aliceP[testpki.RSA2048], true, "rsa-pss"},
		{"p256", f.aliceP[testpki.P256], false, "ecdsa"},
		{"p384", f.aliceP[testpki.P384], false, "ecdsa"},
		{"p521", f.aliceP[testpki.P521], false, "ecdsa"},
	}
	hashes := []struct {
		h      crypto.Hash
		micalg string
		name   string
	}{{crypto.SHA256, "sha-256", "SHA-256"}, {crypto.SHA384, "sha-384", "SHA-384"}, {crypto.SHA512, "sha-512", "SHA-512"}}
	for _, k := range keys {
		for _, h := range hashes {
			for _, opaque := range []bool{false, true} {
				form := FormDetached
				if opaque {
					form = FormOpaque
				}
				t.Run(k.name+"/"+h.micalg+"/"+form, func(t *testing.T) {
					o := signOpts(k.id)
					o.Hash, o.PSS, o.Opaque = h.h, k.pss, opaque
					signed := signBytes(t, plainMsg, o)
					s := string(signed)
					// Outer fields stay outside, unchanged, in order.
					wantPrefix := "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: lunch\r\n" +
						"Date: Mon, 23 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.com>\r\nMIME-Version: 1.0\r\n"
					if !strings.HasPrefix(s, wantPrefix) {
						t.Fatalf("outer header not preserved:\n%s", s[:min(len(s), 400)])
					}
					if opaque {
						if !strings.Contains(s, "Content-Type: application/pkcs7-mime; smime-type=signed-data; name=\"smime.p7m\"") {
							t.Fatalf("opaque Content-Type missing:\n%s", s[:400])
						}
					} else {
						for _, want := range []string{
							"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=" + h.micalg,
							"This is an S/MIME signed message\r\n",
							"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n",
							"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n",
							"\r\n" + plainInner + "\r\n--",
						} {
							if !strings.Contains(s, want) {
								t.Fatalf("signed message lacks %q:\n%s", want, s)
							}
						}
					}
					checkLines(t, signed)
					st, inner, err := openBytes(t, signed, f.opts())
					if err != nil {
						t.Fatalf("Open: %v", err)
					}
					if string(inner) != plainInner {
						t.Fatalf("inner entity = %q, want %q", inner, plainInner)
					}
					if st.Signature != OutcomeGood || !st.Signed || st.Encrypted || st.Decryption != DecryptionNone {
						t.Fatalf("status = %+v", st)
					}
					if len(st.Layers) != 1 || st.Layers[0].Type != LayerSigned || st.Layers[0].Form != form {
						t.Fatalf("layers = %+v", st.Layers)
					}
					sr := st.Layers[0].Signers[0]
					if sr.Hash != h.name || sr.Algorithm != k.alg || sr.Email != "alice@example.com" || sr.SigningTime.IsZero() {
						t.Fatalf("signer = %+v", sr)
					}
					if sr.Capabilities == nil || sr.EncryptionKeyPreference == nil || !sr.EncryptionKeyPreference.Matches(k.id.Cert) {
						t.Fatalf("S/MIME attributes missing: caps %v pref %v", sr.Capabilities, sr.EncryptionKeyPreference)
					}
					if st.Signer == nil || st.Signer.Email != "alice@example.com" || len(st.Signer.SHA256) != 64 {
						t.Fatalf("signer identity = %+v", st.Signer)
					}
					if len(st.Certificates) < 2 {
						t.Fatalf("certificates seen = %d, want signer and intermediate", len(st.Certificates))
					}
				})
			}
		}
	}
}

// checkLines asserts that every line break is CRLF and no line is longer
// than 998 octets.
func checkLines(t *testing.T, b []byte) {
	t.Helper()
	for i, line := range bytes.Split(b, []byte("\r\n")) {
		if bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 {
			t.Fatalf("line %d has a bare CR or LF: %q", i, line)
		}
		if len(line) > 998 {
			t.Fatalf("line %d is %d octets long", i, len(line))
		}
	}
}

func TestStatusJSON(t *testing.T) {
	f := getFixture(t)
	st, _, err := openBytes(t, signBytes(t, plainMsg, signOpts(f.alice)), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"encrypted", "signed", "signature", "signer", "revocation", "decryption", "layers", "error"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status JSON lacks %q: %s", k, b)
		}
	}
	signer := m["signer"].(map[string]any)
	for _, k := range []string{"email", "subject", "sha256"} {
		if _, ok := signer[k]; !ok {
			t.Errorf("signer JSON lacks %q: %s", k, b)
		}
	}
	if m["revocation"] != "not-checked" {
		t.Errorf("revocation = %v", m["revocation"])
	}
}

func TestEncryptRoundTrip(t *testing.T) {
	f := getFixture(t)
	gcmCaps := cms.DefaultCapabilities()
	cases := []struct {
		name       string
		recipients []Recipient
		cipher     cms.ContentCipher
		modern     bool
		open       []*testpki.Identity // each must decrypt
		wantType   string
		wantCipher string
		wantKeyAlg []string
	}{
		{"rsa-unknown-caps", []Recipient{{Certificate: f.alice.Cert}}, 0, false, []*testpki.Identity{f.alice},
			LayerEnveloped, "aes-256-cbc", []string{"rsa-pkcs1v15"}},
		{"rsa-advertised-gcm-oaep", []Recipient{{Certificate: f.alice.Cert, Capabilities: gcmCaps}}, 0, false, []*testpki.Identity{f.alice},
			LayerAuthEnveloped, "aes-256-gcm", []string{"rsa-oaep"}},
		{"rsa-allow-modern", []Recipient{{Certificate: f.alice.Cert}}, 0, true, []*testpki.Identity{f.alice},
			LayerAuthEnveloped, "aes-256-gcm", []string{"rsa-oaep"}},
		{"mixed-one-unknown", []Recipient{{Certificate: f.alice.Cert, Capabilities: gcmCaps}, {Certificate: f.bob.Cert}}, 0, false,
			[]*testpki.Identity{f.alice, f.bob}, LayerEnveloped, "aes-256-cbc", []string{"rsa-oaep", "rsa-pkcs1v15"}},
		{"p256", []Recipient{{Certificate: f.aliceP[testpki.P256].Cert}}, 0, false, []*testpki.Identity{f.aliceP[testpki.P256]},
			LayerEnveloped, "aes-256-cbc", []string{"ecdh-sha256kdf-aes256wrap"}},
		{"p384", []Recipient{{Certificate: f.aliceP[testpki.P384].Cert}}, 0, false, []*testpki.Identity{f.aliceP[testpki.P384]},
			LayerEnveloped, "aes-256-cbc", []string{"ecdh-sha256kdf-aes256wrap"}},
		{"p521-gcm", []Recipient{{Certificate: f.aliceP[testpki.P521].Cert, Capabilities: gcmCaps}}, 0, false, []*testpki.Identity{f.aliceP[testpki.P521]},
			LayerAuthEnveloped, "aes-256-gcm", []string{"ecdh-sha256kdf-aes256wrap"}},
		{"rsa-and-ec", []Recipient{{Certificate: f.bob.Cert}, {Certificate: f.carol.Cert}, {Certificate: f.alice.Cert}}, 0, false,
			[]*testpki.Identity{f.bob, f.carol, f.alice}, LayerEnveloped, "aes-256-cbc", nil},
		{"aes128-cbc", []Recipient{{Certificate: f.alice.Cert}}, cms.AES128CBC, false, []*testpki.Identity{f.alice},
			LayerEnveloped, "aes-128-cbc", nil},
		{"aes128-gcm", []Recipient{{Certificate: f.carol.Cert}}, cms.AES128GCM, false, []*testpki.Identity{f.carol},
			LayerAuthEnveloped, "aes-128-gcm", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			enc := encryptBytes(t, plainMsg, EncryptOptions{Recipients: c.recipients, Cipher: c.cipher, AllowModern: c.modern})
			checkLines(t, enc)
			smimeType := "enveloped-data"
			if c.wantType == LayerAuthEnveloped {
				smimeType = "authEnveloped-data"
			}
			if !bytes.Contains(enc, []byte("Content-Type: application/pkcs7-mime; smime-type="+smimeType+"; name=\"smime.p7m\"")) {
				t.Fatalf("Content-Type wrong:\n%s", enc[:400])
			}
			if !bytes.HasPrefix(enc, []byte("From: Alice <alice@example.com>\r\n")) || !bytes.Contains(enc, []byte("Subject: lunch\r\n")) {
				t.Fatalf("outer header not kept:\n%s", enc[:400])
			}
			if bytes.Contains(enc, []byte("noon")) {
				t.Fatal("plaintext visible")
			}
			for _, id := range c.open {
				var seen []cms.RecipientInfo
				find := func(ctx context.Context, rs []cms.RecipientInfo) (*DecryptionKey, error) {
					seen = rs
					return keyFor(id)(ctx, rs)
				}
				o := f.opts()
				o.FindKey = find
				o.SpoolDir = t.TempDir()
				st, inner, err := openBytes(t, enc, o)
				if err != nil {
					t.Fatalf("Open as %s: %v", id.Email, err)
				}
				if string(inner) != plainInner {
					t.Fatalf("inner = %q", inner)
				}
				if !st.Encrypted || st.Decryption != DecryptionOK || st.Signed || st.Signature != OutcomeNone {
					t.Fatalf("status = %+v", st)
				}
				if len(st.Layers) != 1 || st.Layers[0].Type != c.wantType || st.Layers[0].Cipher != c.wantCipher {
					t.Fatalf("layers = %+v, want %s %s", st.Layers, c.wantType, c.wantCipher)
				}
				if len(seen) != len(c.recipients) {
					t.Fatalf("FindKey saw %d recipients, want %d", len(seen), len(c.recipients))
				}
				// RecipientInfos is a SET OF: match them by certificate.
				for i, want := range c.wantKeyAlg {
					found := false
					for _, ri := range seen {
						if ri.Matches(c.recipients[i].Certificate) {
							found = true
							if ri.KeyAlgorithm != want {
								t.Errorf("recipient %d key algorithm = %s, want %s", i, ri.KeyAlgorithm, want)
							}
						}
					}
					if !found {
						t.Errorf("recipient %d not among the RecipientInfos", i)
					}
				}
			}
		})
	}
}

func TestEncryptRefusesNoRecipients(t *testing.T) {
	err := Encrypt(context.Background(), io.Discard, strings.NewReader(plainMsg), EncryptOptions{})
	if err == nil {
		t.Fatal("Encrypt with no recipients succeeded")
	}
}

func TestChooseCipher(t *testing.T) {
	gcm256 := cms.Capability{Algorithm: oidAES256GCM}
	gcm128 := cms.Capability{Algorithm: oidAES128GCM}
	cbc256 := cms.Capability{Algorithm: oidAES256CBC}
	cbc128 := cms.Capability{Algorithm: oidAES128CBC}
	oaep := cms.Capability{Algorithm: oidRSAOAEP}
	r := func(caps ...cms.Capability) Recipient { return Recipient{Capabilities: caps} }
	cases := []struct {
		name   string
		rs     []Recipient
		modern bool
		want   cms.ContentCipher
	}{
		{"unknown", []Recipient{{}}, false, cms.AES256CBC},
		{"unknown-modern", []Recipient{{}}, true, cms.AES256GCM},
		{"all-gcm256", []Recipient{r(gcm256, cbc256), r(gcm256)}, false, cms.AES256GCM},
		{"one-lacks-gcm", []Recipient{r(gcm256), r(cbc256)}, false, cms.AES256CBC},
		{"one-unknown", []Recipient{r(gcm256), {}}, false, cms.AES256CBC},
		{"all-gcm128", []Recipient{r(gcm128, cbc256), r(gcm256, gcm128)}, false, cms.AES128GCM},
		{"only-cbc128", []Recipient{r(cbc128), {}}, false, cms.AES128CBC},
		{"caps-without-ciphers", []Recipient{r(oaep)}, false, cms.AES256CBC},
	}
	for _, c := range cases {
		if got := chooseCipher(c.rs, c.modern); got != c.want {
			t.Errorf("%s: cipher = %v, want %v", c.name, got, c.want)
		}
	}
	// OAEP hash from the advertised parameters.
	if h := oaepHash(cms.DefaultCapabilities()); h != crypto.SHA256 {
		t.Errorf("OAEP hash from default capabilities = %v", h)
	}
	if h := oaepHash([]cms.Capability{{Algorithm: oidRSAOAEP, Parameters: []byte{0x30, 0x00}}}); h != crypto.SHA1 {
		t.Errorf("OAEP hash from empty params = %v, want SHA-1", h)
	}
	if h := oaepHash([]cms.Capability{cbc256}); h != 0 {
		t.Errorf("OAEP hash without OAEP = %v", h)
	}
}

func TestSignAndEncryptLayers(t *testing.T) {
	f := getFixture(t)
	e := EncryptOptions{Recipients: []Recipient{{Certificate: f.bob.Cert}, {Certificate: f.alice.Cert}}}
	for _, c := range []struct {
		name   string
		do     func(context.Context, io.Writer, io.Reader, SignOptions, EncryptOptions) error
		opaque bool
		layers []string
	}{
		{"sign-then-encrypt", SignAndEncrypt, false, []string{LayerEnveloped, LayerSigned}},
		{"sign-opaque-then-encrypt", SignAndEncrypt, true, []string{LayerEnveloped, LayerSigned}},
		{"encrypt-then-sign", EncryptAndSign, false, []string{LayerSigned, LayerEnveloped}},
		{"encrypt-then-sign-opaque", EncryptAndSign, true, []string{LayerSigned, LayerEnveloped}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := signOpts(f.alice)
			s.Opaque = c.opaque
			var out bytes.Buffer
			if err := c.do(context.Background(), &out, strings.NewReader(plainMsg), s, e); err != nil {
				t.Fatal(err)
			}
			o := f.opts()
			o.FindKey = keyFor(f.bob)
			st, inner, err := openBytes(t, out.Bytes(), o)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if string(inner) != plainInner {
				t.Fatalf("inner = %q", inner)
			}
			if !st.Signed || !st.Encrypted || st.Signature != OutcomeGood || st.Decryption != DecryptionOK {
				t.Fatalf("status = %+v", st)
			}
			var types []string
			for _, l := range st.Layers {
				types = append(types, l.Type)
			}
			if strings.Join(types, ",") != strings.Join(c.layers, ",") {
				t.Fatalf("layers = %v, want %v", types, c.layers)
			}
			// Verify alone stops at the encrypted layer, reporting no-key.
			st, inner, err = func() (*Status, []byte, error) {
				var b bytes.Buffer
				st, err := Verify(context.Background(), &b, bytes.NewReader(out.Bytes()), f.opts())
				return st, b.Bytes(), err
			}()
			wantErr(t, err, ErrNoKey)
			if st.Decryption != DecryptionNoKey || len(inner) != 0 {
				t.Fatalf("Verify of encrypted message: status %+v, %d bytes out", st, len(inner))
			}
		})
	}
}

func TestLFStoredMessagesVerify(t *testing.T) {
	f := getFixture(t)
	for _, opaque := range []bool{false, true} {
		o := signOpts(f.alice)
		o.Opaque = opaque
		signed := signBytes(t, plainMsg, o)
		lf := bytes.ReplaceAll(signed, []byte("\r\n"), []byte("\n"))
		st, inner, err := openBytes(t, lf, f.opts())
		if err != nil {
			t.Fatalf("opaque=%v: %v", opaque, err)
		}
		if st.Signature != OutcomeGood {
			t.Fatalf("opaque=%v: LF-stored message: %+v", opaque, st.Layers)
		}
		if strings.Contains(st.Layers[0].Signers[0].Reason, "as received") {
			t.Errorf("canonical match reported as raw-only: %s", st.Layers[0].Signers[0].Reason)
		}
		want := plainInner
		if !opaque {
			want = strings.ReplaceAll(plainInner, "\r\n", "\n")
		}
		if string(inner) != want {
			t.Fatalf("opaque=%v: inner = %q", opaque, inner)
		}
	}
}

// TestRawOnlyDigest signs a part's bytes with bare LF as they are (as a
// non-canonicalising signer would) and expects a good signature whose
// reason says only the raw bytes matched.
func TestRawOnlyDigest(t *testing.T) {
	f := getFixture(t)
	co, err := (&SignOptions{Signer: f.alice.Key, Certificate: f.alice.Cert, Chain: f.alice.Chain}).cmsOptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	part := "Content-Type: text/plain\n\nsigned with bare LF\n"
	ds, err := cms.NewDetachedSigner(co)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(ds, part)
	sig, err := ds.Sign()
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: alice@example.com\nMIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=XX\n\n" +
		"--XX\n" + part + "\n--XX\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\n" +
		base64.StdEncoding.EncodeToString(sig) + "\n--XX--\n"
	st, inner, err := openBytes(t, []byte(msg), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if st.Signature != OutcomeGood || !strings.Contains(st.Layers[0].Signers[0].Reason, "as received") {
		t.Fatalf("status = %+v", st.Layers)
	}
	if string(inner) != part {
		t.Fatalf("inner = %q", inner)
	}
}

func TestTransferEncodings(t *testing.T) {
	f := getFixture(t)
	binary := make([]byte, 3000)
	for i := range binary {
		binary[i] = byte(i * 7)
	}
	long := strings.Repeat("x", 1200)
	cases := []struct {
		name    string
		msg     string
		wantCTE []string // Content-Transfer-Encoding values expected inside, in order
		check   func(t *testing.T, inner []byte)
	}{
		{
			name:    "8bit-text-becomes-qp",
			msg:     "From: alice@example.com\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln\n",
			wantCTE: []string{"quoted-printable"},
			check: func(t *testing.T, inner []byte) {
				body := inner[bytes.Index(inner, []byte("\r\n\r\n"))+4:]
				dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
				if err != nil || string(dec) != "Grüße aus Köln\r\n" {
					t.Fatalf("QP body decodes to %q (%v)", dec, err)
				}
			},
		},
		{
			name:    "7bit-clean-unchanged",
			msg:     "From: alice@example.com\nContent-Type: text/plain\n\nplain text\n",
			wantCTE: nil,
			check: func(t *testing.T, inner []byte) {
				if string(inner) != "Content-Type: text/plain\r\n\r\nplain text\r\n" {
					t.Fatalf("inner = %q", inner)
				}
			},
		},
		{
			name:    "7bit-declared-but-8bit",
			msg:     "From: alice@example.com\n\nna\xefve\n",
			wantCTE: []string{"quoted-printable"},
		},
		{
			name:    "long-line-becomes-qp",
			msg:     "From: alice@example.com\nContent-Type: text/plain\n\n" + long + "\n",
			wantCTE: []string{"quoted-printable"},
		},
		{
			name: "multipart-with-binary-attachment",
			msg: "From: alice@example.com\nContent-Type: multipart/mixed; boundary=b1\n\npreamble\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nSee attached – ok\n" +
				"--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n" + string(binary) + "\n--b1\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b1--\nepilogue\n",
			wantCTE: []string{"quoted-printable", "base64", "base64"},
			check: func(t *testing.T, inner []byte) {
				i := bytes.Index(inner, []byte("Content-Type: application/octet-stream"))
				body := inner[i:]
				body = body[bytes.Index(body, []byte("\r\n\r\n"))+4:]
				body = body[:bytes.Index(body, []byte("\r\n--b1"))]
				dec, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(body), "\r\n", ""))
				if err != nil || !bytes.Equal(dec, binary) {
					t.Fatalf("binary part does not survive: %v", err)
				}
				for _, want := range []string{"preamble\r\n--b1\r\n", "\r\n--b1--\r\nepilogue\r\n"} {
					if !bytes.Contains(inner, []byte(want)) {
						t.Fatalf("inner lacks %q", want)
					}
				}
			},
		},
		{
			name:    "message-rfc822-8bit-becomes-base64",
			msg:     "From: alice@example.com\nContent-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\nSubject: fwd\n\nk\xc3\xb6ln\n",
			wantCTE: []string{"base64"},
		},
	}
	for _, c := range cases {
		for _, opaque := range []bool{false, true} {
			t.Run(c.name+map[bool]string{false: "/detached", true: "/opaque"}[opaque], func(t *testing.T) {
				o := signOpts(f.alice)
				o.Opaque = opaque
				signed := signBytes(t, c.msg, o)
				checkLines(t, signed)
				st, inner, err := openBytes(t, signed, f.opts())
				if err != nil {
					t.Fatal(err)
				}
				if st.Signature != OutcomeGood {
					t.Fatalf("signature %s: %+v", st.Signature, st.Layers)
				}
				for _, b := range inner {
					if b >= 0x80 || b == 0 {
						t.Fatalf("inner entity is not 7-bit: %q", inner)
					}
				}
				var ctes []string
				for _, line := range strings.Split(string(inner), "\r\n") {
					if v, ok := strings.CutPrefix(line, "Content-Transfer-Encoding: "); ok {
						ctes = append(ctes, v)
					}
				}
				if strings.Join(ctes, ",") != strings.Join(c.wantCTE, ",") {
					t.Fatalf("transfer encodings = %v, want %v\n%s", ctes, c.wantCTE, inner)
				}
				if c.check != nil {
					c.check(t, inner)
				}
			})
		}
	}
}

func TestCertsOnly(t *testing.T) {
	f := getFixture(t)
	var out bytes.Buffer
	certs := append([]*x509.Certificate{f.alice.Cert}, f.alice.Chain...)
	if err := CertsOnly(&out, certs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MIME-Version: 1.0\r\n", "Content-Type: application/pkcs7-mime; smime-type=certs-only; name=\"smime.p7c\"\r\n", "filename=\"smime.p7c\""} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("certs-only message lacks %q:\n%s", want, out.String())
		}
	}
	checkLines(t, out.Bytes())
	st, inner, err := openBytes(t, out.Bytes(), f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if len(inner) != 0 {
		t.Fatalf("certs-only produced %d bytes of content", len(inner))
	}
	if len(st.Layers) != 1 || st.Layers[0].Type != LayerCertsOnly || st.Signed || st.Signature != OutcomeNone {
		t.Fatalf("status = %+v", st)
	}
	if len(st.Certificates) != len(certs) || !st.Certificates[0].Equal(f.alice.Cert) {
		t.Fatalf("certificates = %d", len(st.Certificates))
	}
	// A .p7c attachment name without smime-type is recognised too.
	legacy := strings.Replace(out.String(), "application/pkcs7-mime; smime-type=certs-only; name=\"smime.p7c\"", "application/octet-stream; name=\"cert.p7c\"", 1)
	st, _, err = openBytes(t, []byte(legacy), f.opts())
	if err != nil || st.Layers[0].Type != LayerCertsOnly {
		t.Fatalf("legacy certs-only: %v %+v", err, st)
	}
}

func TestSignAndEncryptAddsSender(t *testing.T) {
	f := getFixture(t)
	signOnly := f.pki.Issue(t, testpki.Options{Email: "alice@example.com", KeyUsage: x509.KeyUsageDigitalSignature})
	toBob := EncryptOptions{Recipients: []Recipient{{Certificate: f.bob.Cert}}}
	for _, c := range []struct {
		name        string
		signer      *testpki.Identity
		senderReads bool
		wantRecips  int
	}{
		{"sender with an encryption key is added", f.alice, true, 2},
		{"signing-only certificate is not added", signOnly, false, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := SignAndEncrypt(context.Background(), &out, strings.NewReader(plainMsg), signOpts(c.signer), toBob); err != nil {
				t.Fatal(err)
			}
			if got := len(withSender(toBob, &SignOptions{Certificate: c.signer.Cert}).Recipients); got != c.wantRecips {
				t.Fatalf("recipients = %d, want %d", got, c.wantRecips)
			}
			if len(toBob.Recipients) != 1 {
				t.Fatal("caller's recipient list was modified")
			}
			o := f.opts()
			o.FindKey = keyFor(c.signer)
			st, _, err := openBytes(t, out.Bytes(), o)
			if c.senderReads {
				if err != nil || st.Decryption != DecryptionOK {
					t.Fatalf("sender cannot read the sent copy: %v %+v", err, st)
				}
				return
			}
			if st == nil || st.Decryption == DecryptionOK {
				t.Fatalf("signing-only identity decrypted: %+v", st)
			}
		})
	}
}
