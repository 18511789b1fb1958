package smime_test

// Message-level interop with the real peers, in both directions, on the
// same inputs: OpenSSL's `openssl cms`, Thunderbird's NSS (cmsutil with
// LD_LIBRARY_PATH=/usr/lib/thunderbird) and gpgsm 2.2. The peers are run by
// internal/peer; a missing peer fails the test, it never skips.
//
// What must match. Every input is an RFC 5322 message: outer header fields
// (From, To, Subject, Date, Message-ID) followed by a MIME entity (its
// MIME-Version and Content-* fields and its body), all with CRLF line
// endings. The entity is what gets protected.
//
//   - Peer to us: the peer protects exactly the entity (OpenSSL with
//     -binary, cmsutil and gpgsm on the raw bytes); the outer fields are put
//     in front of the peer's S/MIME message as a mail client would. Open
//     must write to dst byte for byte the entity the peer protected.
//   - Us to peer: the content the peer recovers (verified or decrypted) must
//     be byte for byte the entity our message protects: for multipart/signed
//     the exact first body part as it stands in our message. When the input
//     entity is 7-bit clean, that is byte for byte the input entity too.
//     When it is not (8-bit text), our engine gives its leaves a 7-bit
//     transfer encoding before protecting it, so the peer's content must
//     be the same MIME tree: same media types and parameters (boundaries
//     aside) and, leaf by leaf, the same decoded bytes — with text leaves
//     compared after turning every line ending into CRLF, the canonical
//     form of RFC 8551 section 3.1.1. Nothing else may differ.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/peer"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime"
	"github.com/smimed/smimed/smime/cms"
)

// ---------------------------------------------------------------- inputs

// input is one message that goes through both directions.
type input struct {
	name string
	// entity is the protected MIME entity: MIME-Version, Content-* fields,
	// blank line, body; canonical CRLF.
	entity []byte
	// clean says the entity is 7-bit clean, so our engine protects it
	// unchanged.
	clean bool
}

// message returns the full RFC 5322 message: outer fields for sender from,
// then the entity.
func (in input) message(from string) []byte {
	return append([]byte(outer(from)), in.entity...)
}

func outer(from string) string {
	return "From: Sender <" + from + ">\r\n" +
		"To: Bob <bob@example.org>\r\n" +
		"Subject: interop test\r\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n" +
		"Message-ID: <interop@example.org>\r\n"
}

var textInput = input{
	name: "text",
	entity: []byte("MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n" +
		"\r\n" +
		"Hello Bob,\r\n" +
		"\r\n" +
		"this line ends in spaces   \r\n" +
		"\tand this one starts with a tab.\r\n" +
		"From the start of a line, as mbox would escape it.\r\n" +
		".\r\n" +
		"--\r\n" +
		"-- \r\n" +
		"Alice\r\n"),
	clean: true,
}

var mixedInput = input{
	name: "mixed-8bit",
	entity: []byte("MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer-boundary\"\r\n" +
		"\r\n" +
		"This is a multi-part message in MIME format.\r\n" +
		"--outer-boundary\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"\r\n" +
		"Grüße aus Köln — ünïcödé ✓\r\n" +
		"second line\r\n" +
		"--outer-boundary\r\n" +
		"Content-Type: application/octet-stream; name=\"data.bin\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=\"data.bin\"\r\n" +
		"\r\n" +
		string(peer.Base64Lines(binaryData())) +
		"--outer-boundary--\r\n"),
}

func binaryData() []byte {
	b := make([]byte, 300)
	for i := range b {
		b[i] = byte(i*7 + i/3)
	}
	return b
}

var inputs = []input{textInput, mixedInput}

// ---------------------------------------------------------------- fixture

// interopFixture is the PKI and identities of one test function, shared by
// its subtests.
type interopFixture struct {
	pki *testpki.PKI
	ids map[string]*testpki.Identity // by key name: rsa, p256, p384, p521
}

var keyNames = []string{"rsa", "p256", "p384", "p521"}

func newInteropFixture(t *testing.T, keys ...string) *interopFixture {
	t.Helper()
	f := &interopFixture{pki: testpki.New(t), ids: map[string]*testpki.Identity{}}
	types := map[string]testpki.KeyType{"rsa": testpki.RSA2048, "p256": testpki.P256, "p384": testpki.P384, "p521": testpki.P521}
	for _, k := range keys {
		f.ids[k] = f.pki.Issue(t, testpki.Options{Email: k + "@example.org", Key: types[k]})
	}
	return f
}

// sign is smime.Sign on the input message from id.
func (f *interopFixture) sign(t testing.TB, id *testpki.Identity, msg []byte, opaque bool, hash crypto.Hash, pss bool) []byte {
	t.Helper()
	var out bytes.Buffer
	err := smime.Sign(context.Background(), &out, bytes.NewReader(msg), smime.SignOptions{
		Signer: id.Key, Certificate: id.Cert, Chain: id.Chain, Hash: hash, PSS: pss, Opaque: opaque,
	})
	if err != nil {
		t.Fatalf("smime.Sign: %v", err)
	}
	return out.Bytes()
}

// encOpts builds EncryptOptions. oaep advertises RSAES-OAEP with SHA-256
// for RSA recipients (smimed's default capabilities), which is how a
// recipient gets OAEP; otherwise RSA recipients get PKCS #1 v1.5.
func encOpts(cipher cms.ContentCipher, oaep bool, ids ...*testpki.Identity) smime.EncryptOptions {
	var rs []smime.Recipient
	for _, id := range ids {
		r := smime.Recipient{Certificate: id.Cert}
		if oaep {
			r.Capabilities = cms.DefaultCapabilities()
		}
		rs = append(rs, r)
	}
	return smime.EncryptOptions{Recipients: rs, Cipher: cipher}
}

func (f *interopFixture) encrypt(t testing.TB, msg []byte, opts smime.EncryptOptions) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := smime.Encrypt(context.Background(), &out, bytes.NewReader(msg), opts); err != nil {
		t.Fatalf("smime.Encrypt: %v", err)
	}
	return out.Bytes()
}

// opened is what Open returned.
type opened struct {
	status *smime.Status
	out    []byte
	err    error
}

func (o opened) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "err=%v", o.err)
	if s := o.status; s != nil {
		fmt.Fprintf(&b, " encrypted=%v signed=%v signature=%q decryption=%q error=%q", s.Encrypted, s.Signed, s.Signature, s.Decryption, s.Error)
		for i, l := range s.Layers {
			fmt.Fprintf(&b, "\n  layer %d: %s %s %s err=%q", i, l.Type, l.Form, l.Cipher, l.Error)
			for _, sr := range l.Signers {
				fmt.Fprintf(&b, "\n    signer %s: %s (%s) %s/%s", sr.Email, sr.Outcome, sr.Reason, sr.Algorithm, sr.Hash)
			}
		}
	}
	return b.String()
}

// open runs smime.Open with the fixture's root and the given identities'
// keys, and turns a panic into a test error.
func (f *interopFixture) open(t testing.TB, msg []byte, from string, keys ...*testpki.Identity) (res opened) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("smime.Open panicked: %v", r)
			res.err = fmt.Errorf("panic: %v", r)
		}
	}()
	var out bytes.Buffer
	st, err := smime.Open(context.Background(), &out, bytes.NewReader(msg), smime.OpenOptions{
		Roots:   f.pki.Roots(),
		From:    from,
		FindKey: findKey(keys),
	})
	return opened{status: st, out: out.Bytes(), err: err}
}

// findKey offers the key of the first identity a RecipientInfo names.
func findKey(ids []*testpki.Identity) func(context.Context, []cms.RecipientInfo) (*smime.DecryptionKey, error) {
	return func(_ context.Context, ris []cms.RecipientInfo) (*smime.DecryptionKey, error) {
		for _, ri := range ris {
			for _, id := range ids {
				if !ri.Matches(id.Cert) {
					continue
				}
				if ec, ok := id.Key.(*ecdsa.PrivateKey); ok {
					k, err := ec.ECDH()
					if err != nil {
						return nil, err
					}
					return &smime.DecryptionKey{Certificate: id.Cert, PrivateKey: k}, nil
				}
				return &smime.DecryptionKey{Certificate: id.Cert, PrivateKey: id.Key}, nil
			}
		}
		return nil, smime.ErrNoKey
	}
}

// wantGood checks that Open verified (and decrypted, if encrypted) the
// message and wrote exactly want.
func wantGood(t testing.TB, o opened, encrypted, signed bool, want []byte) {
	t.Helper()
	if o.err != nil {
		t.Fatalf("smime.Open: %v\n%s", o.err, o)
	}
	s := o.status
	if s.Encrypted != encrypted || s.Signed != signed {
		t.Errorf("encrypted=%v signed=%v, want %v %v\n%s", s.Encrypted, s.Signed, encrypted, signed, o)
	}
	wantSig, wantDec := smime.OutcomeNone, smime.DecryptionNone
	if signed {
		wantSig = smime.OutcomeGood
	}
	if encrypted {
		wantDec = smime.DecryptionOK
	}
	if s.Signature != wantSig || s.Decryption != wantDec {
		t.Errorf("signature=%q decryption=%q, want %q %q\n%s", s.Signature, s.Decryption, wantSig, wantDec, o)
	}
	if !bytes.Equal(o.out, want) {
		t.Errorf("Open wrote %s", diff(o.out, want))
	}
}

// diff describes where got and want first differ.
func diff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	ctx := func(b []byte) string {
		lo, hi := max(0, i-40), min(len(b), i+40)
		return fmt.Sprintf("%q", b[lo:hi])
	}
	return fmt.Sprintf("%d bytes, want %d; first difference at byte %d:\n got  ...%s\n want ...%s", len(got), len(want), i, ctx(got), ctx(want))
}

// ---------------------------------------------------------------- comparing entities

// leaf is one leaf of a MIME tree, decoded.
type leaf struct {
	path   string
	media  string
	params map[string]string
	data   []byte
}

// leaves flattens a MIME entity into its decoded leaves.
func leaves(entity []byte, path string) ([]leaf, error) {
	hdr, body, err := peer.SplitHeader(entity)
	if err != nil {
		return nil, err
	}
	ct := hdr.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if strings.HasPrefix(mt, "multipart/") {
		parts, err := peer.SplitMultipart(body, params["boundary"])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		delete(params, "boundary")
		out := []leaf{{path: path, media: mt, params: params}}
		for i, p := range parts {
			ls, err := leaves(p, fmt.Sprintf("%s.%d", path, i+1))
			if err != nil {
				return nil, err
			}
			out = append(out, ls...)
		}
		return out, nil
	}
	data, err := peer.DecodeBody(hdr, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if strings.HasPrefix(mt, "text/") {
		data = peer.Canonical(data)
	}
	return []leaf{{path: path, media: mt, params: params, data: data}}, nil
}

// sameEntity checks that got is the input entity: byte for byte when the
// input is 7-bit clean, otherwise the same MIME tree with the same decoded
// leaves (see the top of this file).
func sameEntity(t testing.TB, got []byte, in input) {
	t.Helper()
	if in.clean {
		if !bytes.Equal(got, in.entity) {
			t.Errorf("content is %s", diff(got, in.entity))
		}
		return
	}
	g, err := leaves(got, "1")
	if err != nil {
		t.Errorf("content does not parse as MIME: %v\n%q", err, got)
		return
	}
	w, err := leaves(in.entity, "1")
	if err != nil {
		t.Fatalf("input does not parse: %v", err)
	}
	if len(g) != len(w) {
		t.Errorf("content has %d MIME entities, input %d:\n%q", len(g), len(w), got)
		return
	}
	for i := range g {
		if g[i].media != w[i].media || !maps.Equal(g[i].params, w[i].params) {
			t.Errorf("part %s is %s %v, want %s %v", g[i].path, g[i].media, g[i].params, w[i].media, w[i].params)
		}
		if !bytes.Equal(g[i].data, w[i].data) {
			t.Errorf("part %s decodes to %s", g[i].path, diff(g[i].data, w[i].data))
		}
	}
}

// firstPart returns the exact bytes of the signed part of a
// multipart/signed message.
func firstPart(t testing.TB, msg []byte) []byte {
	t.Helper()
	m, err := peer.Parse(msg)
	if err != nil {
		t.Fatalf("our message does not parse: %v\n%s", err, msg)
	}
	if m.MediaType != "multipart/signed" {
		t.Fatalf("our message is %s, want multipart/signed", m.MediaType)
	}
	return m.Content
}

// protected returns the entity our own message protects, as Open writes it
// (for opaque and encrypted messages, whose content cannot be seen
// directly).
func (f *interopFixture) protected(t testing.TB, ours []byte, keys ...*testpki.Identity) []byte {
	t.Helper()
	o := f.open(t, ours, "", keys...)
	if o.err != nil {
		t.Errorf("our own message does not open: %s", o)
	}
	return o.out
}

// checkPeerVerified checks a peer's verdict on our signed message: good,
// and the content the peer verified is exactly what our message protects
// and the input entity.
func (f *interopFixture) checkPeerVerified(t testing.TB, v peer.Verdict, ours []byte, opaque bool, in input) {
	t.Helper()
	if !v.Good {
		t.Fatalf("peer rejected our signature: %v\nour message:\n%s", v, head(ours))
	}
	want := f.protected(t, ours)
	if !opaque {
		want = firstPart(t, ours)
	}
	if !bytes.Equal(v.Content, want) {
		t.Errorf("peer verified %s", diff(v.Content, want))
	}
	sameEntity(t, v.Content, in)
}

// checkPeerDecrypted checks the content a peer decrypted from our message
// for id: exactly what our message protects, and the input entity.
func (f *interopFixture) checkPeerDecrypted(t testing.TB, got, ours []byte, id *testpki.Identity, in input) {
	t.Helper()
	if want := f.protected(t, ours, id); !bytes.Equal(got, want) {
		t.Errorf("peer decrypted %s", diff(got, want))
	}
	sameEntity(t, got, in)
}

// head returns the start of a message for failure output.
func head(b []byte) string {
	if len(b) > 3000 {
		return string(b[:3000]) + "\n[...]"
	}
	return string(b)
}

// DER encodings of the object identifiers the tests look for in our
// messages, to be sure a case tests the algorithm it names.
var (
	oidRSAEncryption = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}
	oidRSAOAEP       = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x07}
	oidRSAPSS        = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a}
	oidStdDHSHA256   = []byte{0x06, 0x06, 0x2b, 0x81, 0x04, 0x01, 0x0b, 0x01} // dhSinglePass-stdDH-sha256kdf-scheme
	oidCipher        = map[cms.ContentCipher][]byte{
		cms.AES128CBC: {0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02},
		cms.AES256CBC: {0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a},
		cms.AES128GCM: {0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x06},
		cms.AES256GCM: {0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2e},
	}
)

// cmsOf returns the CMS of an S/MIME message.
func cmsOf(t testing.TB, msg []byte) []byte {
	t.Helper()
	m, err := peer.Parse(msg)
	if err != nil {
		t.Fatalf("our message does not parse: %v\n%s", err, head(msg))
	}
	return m.CMS
}

// wantOID checks whether an object identifier occurs in der.
func wantOID(t testing.TB, der []byte, name string, oid []byte, present bool) {
	t.Helper()
	if got := bytes.Contains(der, oid); got != present {
		t.Errorf("%s in our CMS: %v, want %v", name, got, present)
	}
}

// checkEncryptedWith checks the content cipher and key management our
// encrypted message uses.
func checkEncryptedWith(t testing.TB, msg []byte, c cms.ContentCipher, ids []*testpki.Identity, oaep bool) {
	t.Helper()
	der := cmsOf(t, msg)
	wantOID(t, der, c.String(), oidCipher[c], true)
	hasRSA, hasEC := false, false
	for _, id := range ids {
		if _, ok := id.Key.(*ecdsa.PrivateKey); ok {
			hasEC = true
		} else {
			hasRSA = true
		}
	}
	if hasRSA {
		wantOID(t, der, "rsaesOaep", oidRSAOAEP, oaep)
		wantOID(t, der, "rsaEncryption", oidRSAEncryption, !oaep)
	}
	if hasEC {
		wantOID(t, der, "dhSinglePass-stdDH-sha256kdf-scheme", oidStdDHSHA256, true)
	}
}

// checkSigner checks the hash and scheme Open reports for the first signer.
func checkSigner(t testing.TB, o opened, h crypto.Hash, pss bool) {
	t.Helper()
	if o.status == nil || len(o.status.Layers) == 0 {
		return
	}
	l := o.status.Layers[len(o.status.Layers)-1]
	if len(l.Signers) == 0 {
		t.Errorf("innermost layer has no signers:\n%s", o)
		return
	}
	sr := l.Signers[0]
	if sr.Hash != h.String() {
		t.Errorf("signer hash %q, want %q", sr.Hash, h.String())
	}
	if got := strings.Contains(strings.ToLower(sr.Algorithm), "pss"); got != pss {
		t.Errorf("signer algorithm %q, want PSS=%v", sr.Algorithm, pss)
	}
}

// ---------------------------------------------------------------- names

var hashes = []struct {
	name string
	h    crypto.Hash
	md   string // OpenSSL name
	nss  string // cmsutil -H
}{
	{"sha256", crypto.SHA256, "sha256", "SHA256"},
	{"sha384", crypto.SHA384, "sha384", "SHA384"},
	{"sha512", crypto.SHA512, "sha512", "SHA512"},
}

var forms = []struct {
	name   string
	opaque bool
}{{"detached", false}, {"opaque", true}}

// signer is a key plus signature scheme.
type signer struct {
	name string
	key  string // fixture key name
	pss  bool
}

var opensslSigners = []signer{{"rsa-pkcs1", "rsa", false}, {"rsa-pss", "rsa", true}, {"p256", "p256", false}, {"p384", "p384", false}, {"p521", "p521", false}}

var ciphers = []struct {
	name    string
	c       cms.ContentCipher
	openssl string
}{
	{"aes128-cbc", cms.AES128CBC, "aes-128-cbc"},
	{"aes256-cbc", cms.AES256CBC, "aes-256-cbc"},
	{"aes128-gcm", cms.AES128GCM, "aes-128-gcm"},
	{"aes256-gcm", cms.AES256GCM, "aes-256-gcm"},
}

// ---------------------------------------------------------------- OpenSSL

func TestInteropOpenSSL(t *testing.T) {
	start := time.Now()
	f := newInteropFixture(t, keyNames...)
	ossl := peer.NewOpenSSL(t, f.pki)
	t.Logf("peer: %s", ossl.Version(t))
	t.Cleanup(func() { t.Logf("TestInteropOpenSSL took %v", time.Since(start).Round(time.Millisecond)) })

	t.Run("sign", func(t *testing.T) {
		for _, in := range inputs {
			for _, form := range forms {
				for _, s := range opensslSigners {
					for _, h := range hashes {
						id := f.ids[s.key]
						name := strings.Join([]string{in.name, form.name, s.name, h.name}, "/")
						t.Run("ours-read-by-openssl/"+name, func(t *testing.T) {
							t.Parallel()
							ours := f.sign(t, id, in.message(id.Email), form.opaque, h.h, s.pss)
							wantOID(t, cmsOf(t, ours), "id-RSASSA-PSS", oidRSAPSS, s.pss)
							f.checkPeerVerified(t, ossl.Verify(t, ours), ours, form.opaque, in)
						})
						t.Run("openssl-read-by-us/"+name, func(t *testing.T) {
							t.Parallel()
							theirs := ossl.Sign(t, id, in.entity, peer.OpenSSLSign{Opaque: form.opaque, MD: h.md, PSS: s.pss})
							msg := append([]byte(outer(id.Email)), theirs...)
							o := f.open(t, msg, id.Email)
							wantGood(t, o, false, true, in.entity)
							checkSigner(t, o, h.h, s.pss)
						})
					}
				}
			}
		}
	})

	// OpenSSL's PSS default salt is the maximum (key size - hash size - 2);
	// RFC 4055 senders (NSS, Outlook) use the hash size. Both must verify.
	t.Run("sign/openssl-read-by-us/pss-salt", func(t *testing.T) {
		id := f.ids["rsa"]
		for _, salt := range []string{"digest", "max", "20"} {
			for _, h := range hashes {
				t.Run(salt+"/"+h.name, func(t *testing.T) {
					t.Parallel()
					theirs := ossl.Sign(t, id, textInput.entity, peer.OpenSSLSign{MD: h.md, PSS: true, PSSSaltLen: salt})
					o := f.open(t, append([]byte(outer(id.Email)), theirs...), id.Email)
					wantGood(t, o, false, true, textInput.entity)
					checkSigner(t, o, h.h, true)
				})
			}
		}
	})

	// Recipient sets for our encryption: RSA v1.5, RSA-OAEP (SHA-256),
	// EC P-256 and P-384 (dhSinglePass-stdDH-sha256kdf), RSA+EC mixed.
	recipientSets := []struct {
		name string
		keys []string
		oaep bool
	}{
		{"rsa-pkcs1", []string{"rsa"}, false},
		{"rsa-oaep-sha256", []string{"rsa"}, true},
		{"p256", []string{"p256"}, false},
		{"p384", []string{"p384"}, false},
		{"rsa+p256+p384", []string{"rsa", "p256", "p384"}, false},
		{"rsa-oaep+p256", []string{"rsa", "p256"}, true},
	}
	t.Run("encrypt/ours-read-by-openssl", func(t *testing.T) {
		for _, in := range inputs {
			for _, c := range ciphers {
				for _, rs := range recipientSets {
					t.Run(strings.Join([]string{in.name, c.name, rs.name}, "/"), func(t *testing.T) {
						t.Parallel()
						var ids []*testpki.Identity
						for _, k := range rs.keys {
							ids = append(ids, f.ids[k])
						}
						ours := f.encrypt(t, in.message("rsa@example.org"), encOpts(c.c, rs.oaep, ids...))
						checkEncryptedWith(t, ours, c.c, ids, rs.oaep)
						for _, id := range ids {
							t.Run("as-"+strings.TrimSuffix(id.Email, "@example.org"), func(t *testing.T) {
								got, err := ossl.Decrypt(t, id, ours)
								if err != nil {
									t.Fatalf("openssl cannot decrypt: %v", err)
								}
								f.checkPeerDecrypted(t, got, ours, id, in)
							})
						}
					})
				}
			}
		}
	})

	// OpenSSL's encryption: every cipher including 3DES, OAEP with each
	// digest, EC with OpenSSL's default KDF (SHA-1) and with SHA-256.
	type theirRecipient struct {
		name string
		key  string
		r    peer.OpenSSLRecipient
	}
	theirRecipients := [][]theirRecipient{
		{{"rsa-pkcs1", "rsa", peer.OpenSSLRecipient{}}},
		{{"rsa-oaep-sha1", "rsa", peer.OpenSSLRecipient{OAEP: "sha1"}}},
		{{"rsa-oaep-sha256", "rsa", peer.OpenSSLRecipient{OAEP: "sha256", MGF1: "sha256"}}},
		{{"rsa-oaep-sha384", "rsa", peer.OpenSSLRecipient{OAEP: "sha384", MGF1: "sha384"}}},
		{{"rsa-oaep-sha512", "rsa", peer.OpenSSLRecipient{OAEP: "sha512", MGF1: "sha512"}}},
		{{"p256-kdf-default", "p256", peer.OpenSSLRecipient{}}},
		{{"p256-kdf-sha256", "p256", peer.OpenSSLRecipient{KDF: "sha256"}}},
		{{"p384-kdf-sha256", "p384", peer.OpenSSLRecipient{KDF: "sha256"}}},
		{{"p384-kdf-sha384", "p384", peer.OpenSSLRecipient{KDF: "sha384"}}},
		{{"p521-kdf-sha512", "p521", peer.OpenSSLRecipient{KDF: "sha512"}}},
		{{"p256-kdf-sha224", "p256", peer.OpenSSLRecipient{KDF: "sha224"}}},
		{{"p256-cofactor-kdf-sha256", "p256", peer.OpenSSLRecipient{KDF: "sha256", Cofactor: true}}},
		{{"p384-cofactor-kdf-default", "p384", peer.OpenSSLRecipient{Cofactor: true}}},
		// A recipient form we do not read (a password) must not keep the
		// RSA recipient from reading the message.
		{{"rsa-pkcs1", "rsa", peer.OpenSSLRecipient{}}, {"password", "", peer.OpenSSLRecipient{Password: "secret"}}},
		{{"rsa-pkcs1", "rsa", peer.OpenSSLRecipient{}}, {"p256-kdf-sha256", "p256", peer.OpenSSLRecipient{KDF: "sha256"}}},
	}
	theirCiphers := append(slices.Clone(ciphers), struct {
		name    string
		c       cms.ContentCipher
		openssl string
	}{"des3", cms.DES3CBC, "des3"})
	t.Run("encrypt/openssl-read-by-us", func(t *testing.T) {
		for _, in := range inputs {
			for _, c := range theirCiphers {
				for _, set := range theirRecipients {
					var names []string
					var rs []peer.OpenSSLRecipient
					if set[len(set)-1].r.Password != "" && c.c.Authenticated() {
						// OpenSSL 3.0 cannot make a password recipient for
						// AES-GCM ("cipher parameter error"): no such case.
						continue
					}
					for _, r := range set {
						names = append(names, r.name)
						if r.key != "" {
							r.r.Cert = f.ids[r.key].Cert
						}
						rs = append(rs, r.r)
					}
					t.Run(strings.Join([]string{in.name, c.name, strings.Join(names, "+")}, "/"), func(t *testing.T) {
						t.Parallel()
						theirs := ossl.Encrypt(t, in.entity, c.openssl, rs...)
						msg := append([]byte(outer("rsa@example.org")), theirs...)
						// Each recipient on its own must be able to read it.
						for _, r := range set {
							if r.key == "" {
								continue
							}
							t.Run("as-"+r.key, func(t *testing.T) {
								wantGood(t, f.open(t, msg, "", f.ids[r.key]), true, false, in.entity)
							})
						}
					})
				}
			}
		}
	})

	// AuthEnvelopedData is authenticated: a flipped ciphertext byte must
	// fail decryption, and no plaintext may reach dst.
	t.Run("encrypt/openssl-read-by-us/gcm-tampered", func(t *testing.T) {
		for _, c := range ciphers[2:] {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				rsa := f.ids["rsa"]
				theirs := ossl.Encrypt(t, textInput.entity, c.openssl, peer.OpenSSLRecipient{Cert: rsa.Cert})
				der := bytes.Clone(cmsOf(t, theirs))
				// The encrypted content sits before the 16-byte tag
				// at the end; flip a byte in the middle of it.
				der[len(der)-16-len(textInput.entity)/2] ^= 0x01
				msg := append([]byte(outer(rsa.Email)), peer.WrapPKCS7MIME(der, peer.AuthEnvelopedData)...)
				o := f.open(t, msg, "", rsa)
				if o.err == nil || o.status == nil || o.status.Decryption != smime.DecryptionFail {
					t.Errorf("tampered AES-GCM message: want an error and decryption failed: %s", o)
				}
				if len(o.out) != 0 {
					t.Errorf("%d bytes of unauthenticated plaintext reached dst: %q", len(o.out), o.out)
				}
			})
		}
	})

	t.Run("sign-then-encrypt", func(t *testing.T) {
		for _, in := range inputs {
			for _, form := range forms {
				for _, combo := range []struct {
					name      string
					signer    string
					pss       bool
					recipient string
					cipher    cms.ContentCipher
					openssl   string
				}{
					{"rsa-to-p256-aes256cbc", "rsa", false, "p256", cms.AES256CBC, "aes-256-cbc"},
					{"p384-to-rsa-aes128gcm", "p384", false, "rsa", cms.AES128GCM, "aes-128-gcm"},
					{"rsa-pss-to-rsa-aes256gcm", "rsa", true, "rsa", cms.AES256GCM, "aes-256-gcm"},
				} {
					sid, rid := f.ids[combo.signer], f.ids[combo.recipient]
					name := strings.Join([]string{in.name, form.name, combo.name}, "/")
					t.Run("ours-read-by-openssl/"+name, func(t *testing.T) {
						t.Parallel()
						var out bytes.Buffer
						err := smime.SignAndEncrypt(context.Background(), &out, bytes.NewReader(in.message(sid.Email)),
							smime.SignOptions{Signer: sid.Key, Certificate: sid.Cert, Chain: sid.Chain, PSS: combo.pss, Opaque: form.opaque},
							encOpts(combo.cipher, false, rid))
						if err != nil {
							t.Fatalf("smime.SignAndEncrypt: %v", err)
						}
						signed, err := ossl.Decrypt(t, rid, out.Bytes())
						if err != nil {
							t.Fatalf("openssl cannot decrypt: %v", err)
						}
						f.checkPeerVerified(t, ossl.Verify(t, signed), signed, form.opaque, in)
					})
					t.Run("openssl-read-by-us/"+name, func(t *testing.T) {
						t.Parallel()
						signed := ossl.Sign(t, sid, in.entity, peer.OpenSSLSign{Opaque: form.opaque, PSS: combo.pss})
						enc := ossl.Encrypt(t, signed, combo.openssl, peer.OpenSSLRecipient{Cert: rid.Cert})
						msg := append([]byte(outer(sid.Email)), enc...)
						wantGood(t, f.open(t, msg, sid.Email, rid), true, true, in.entity)
					})
				}
			}
		}
	})
}

// ---------------------------------------------------------------- NSS (Thunderbird)

func TestInteropNSS(t *testing.T) {
	start := time.Now()
	f := newInteropFixture(t, "rsa", "p256", "p384")
	nss := peer.NewNSS(t, f.pki)
	asn1 := peer.NewOpenSSL(t, f.pki) // for asn1parse in failure reports
	t.Logf("peer: %s (Thunderbird's)", nss.Version(t))
	t.Cleanup(func() { t.Logf("TestInteropNSS took %v", time.Since(start).Round(time.Millisecond)) })
	for _, k := range []string{"rsa", "p256", "p384"} {
		nss.AddIdentity(t, f.ids[k])
	}
	nssSigners := []signer{{"rsa-pkcs1", "rsa", false}, {"rsa-pss", "rsa", true}, {"p256", "p256", false}, {"p384", "p384", false}}

	t.Run("sign", func(t *testing.T) {
		for _, in := range inputs {
			for _, form := range forms {
				for _, s := range nssSigners {
					for _, h := range hashes {
						id := f.ids[s.key]
						name := strings.Join([]string{in.name, form.name, s.name, h.name}, "/")
						t.Run("ours-read-by-nss/"+name, func(t *testing.T) {
							t.Parallel()
							ours := f.sign(t, id, in.message(id.Email), form.opaque, h.h, s.pss)
							wantOID(t, cmsOf(t, ours), "id-RSASSA-PSS", oidRSAPSS, s.pss)
							f.checkPeerVerified(t, nss.Verify(t, ours), ours, form.opaque, in)
						})
						// cmsutil cannot make RSA-PSS signatures (it signs
						// with what the key's certificate names:
						// rsaEncryption means PKCS #1 v1.5), so only our
						// direction covers PSS.
						if s.pss {
							continue
						}
						t.Run("nss-read-by-us/"+name, func(t *testing.T) {
							t.Parallel()
							theirs := nss.Sign(t, id, in.entity, peer.NSSSign{Opaque: form.opaque, Hash: h.nss})
							msg := append([]byte(outer(id.Email)), theirs...)
							o := f.open(t, msg, id.Email)
							wantGood(t, o, false, true, in.entity)
							checkSigner(t, o, h.h, false)
						})
					}
				}
			}
		}
	})

	recipientSets := []struct {
		name string
		keys []string
		oaep bool
	}{
		{"rsa-pkcs1", []string{"rsa"}, false},
		{"rsa-oaep-sha256", []string{"rsa"}, true},
		{"p256", []string{"p256"}, false},
		{"p384", []string{"p384"}, false},
		{"rsa+p256", []string{"rsa", "p256"}, false},
	}
	t.Run("encrypt/ours-read-by-nss", func(t *testing.T) {
		for _, in := range inputs {
			for _, c := range ciphers[:2] { // NSS reads CBC only, see below
				for _, rs := range recipientSets {
					t.Run(strings.Join([]string{in.name, c.name, rs.name}, "/"), func(t *testing.T) {
						t.Parallel()
						var ids []*testpki.Identity
						for _, k := range rs.keys {
							ids = append(ids, f.ids[k])
						}
						ours := f.encrypt(t, in.message("rsa@example.org"), encOpts(c.c, rs.oaep, ids...))
						checkEncryptedWith(t, ours, c.c, ids, rs.oaep)
						got, err := nss.Decrypt(t, ours)
						if err != nil {
							t.Fatalf("NSS cannot decrypt: %v", err)
						}
						f.checkPeerDecrypted(t, got, ours, ids[0], in)
					})
				}
			}
		}
	})

	t.Run("encrypt/nss-read-by-us", func(t *testing.T) {
		for _, in := range inputs {
			for _, rs := range recipientSets {
				if rs.oaep {
					continue // cmsutil picks the padding itself: PKCS #1 v1.5
				}
				t.Run(in.name+"/"+rs.name, func(t *testing.T) {
					t.Parallel()
					var certs []*x509.Certificate
					for _, k := range rs.keys {
						certs = append(certs, f.ids[k].Cert)
					}
					msg := append([]byte(outer("rsa@example.org")), nss.Encrypt(t, in.entity, certs...)...)
					for _, k := range rs.keys {
						t.Run("as-"+k, func(t *testing.T) {
							defer func() {
								if t.Failed() {
									t.Logf("NSS's EnvelopedData:\n%s", asn1.ASN1Parse(t, cmsOf(t, msg)))
								}
							}()
							wantGood(t, f.open(t, msg, "", f.ids[k]), true, false, in.entity)
						})
					}
				})
			}
		}
	})

	// The reason for our AES-CBC default: Thunderbird's NSS does not read
	// AuthEnvelopedData at all.
	t.Run("encrypt/nss-cannot-read-aes-gcm", func(t *testing.T) {
		for _, c := range ciphers[2:] {
			t.Run(c.name, func(t *testing.T) {
				ours := f.encrypt(t, textInput.message("rsa@example.org"), encOpts(c.c, false, f.ids["rsa"]))
				_, err := nss.Decrypt(t, ours)
				if err == nil {
					t.Fatal("NSS decrypted AuthEnvelopedData; the AES-CBC default may be revisited")
				}
				if !strings.Contains(err.Error(), "SEC_ERROR_UNRECOGNIZED_OID") {
					t.Fatalf("NSS failed, but not for the known reason (UNRECOGNIZED_OID): %v", err)
				}
			})
		}
	})
}

// ---------------------------------------------------------------- gpgsm

func TestInteropGPGSM(t *testing.T) {
	start := time.Now()
	f := newInteropFixture(t, "rsa")
	gpg := peer.NewGPGSM(t, f.pki)
	t.Cleanup(func() { t.Logf("TestInteropGPGSM took %v", time.Since(start).Round(time.Millisecond)) })
	id := f.ids["rsa"]
	gpg.AddIdentity(t, id)

	// gpgsm 2.2: RSA PKCS #1 v1.5 only, no PSS, OAEP or GCM.
	for _, in := range inputs {
		for _, form := range forms {
			for _, h := range hashes {
				name := strings.Join([]string{in.name, form.name, h.name}, "/")
				t.Run("sign/ours-read-by-gpgsm/"+name, func(t *testing.T) {
					t.Parallel()
					ours := f.sign(t, id, in.message(id.Email), form.opaque, h.h, false)
					v := gpg.Verify(t, ours)
					if !strings.Contains(v.Status, "GOODSIG") || !strings.Contains(v.Status, "VALIDSIG") {
						t.Errorf("gpgsm did not report GOODSIG and VALIDSIG: %v", v)
					}
					f.checkPeerVerified(t, v, ours, form.opaque, in)
				})
				t.Run("sign/gpgsm-read-by-us/"+name, func(t *testing.T) {
					t.Parallel()
					theirs := gpg.Sign(t, id, in.entity, peer.GPGSMSign{Opaque: form.opaque, Digest: strings.ToUpper(h.name)})
					msg := append([]byte(outer(id.Email)), theirs...)
					o := f.open(t, msg, id.Email)
					wantGood(t, o, false, true, in.entity)
					checkSigner(t, o, h.h, false)
				})
			}
		}
		for _, c := range ciphers[:2] {
			t.Run("encrypt/ours-read-by-gpgsm/"+in.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				ours := f.encrypt(t, in.message(id.Email), encOpts(c.c, false, id))
				checkEncryptedWith(t, ours, c.c, []*testpki.Identity{id}, false)
				got, err := gpg.Decrypt(t, ours)
				if err != nil {
					t.Fatalf("gpgsm cannot decrypt: %v", err)
				}
				f.checkPeerDecrypted(t, got, ours, id, in)
			})
		}
		for _, c := range []string{"AES", "AES256", "3DES"} {
			t.Run("encrypt/gpgsm-read-by-us/"+in.name+"/"+c, func(t *testing.T) {
				t.Parallel()
				msg := append([]byte(outer(id.Email)), gpg.Encrypt(t, in.entity, c, id.Cert)...)
				wantGood(t, f.open(t, msg, "", id), true, false, in.entity)
			})
		}
	}
}

// ---------------------------------------------------------------- tampering

// TestInteropTampered feeds Open peer-made messages that were changed after
// signing: one body byte flipped (bad), cut short (an error, never a
// panic), the signature moved onto other content (bad), and, as the
// control, the untouched message stored with LF line endings (good).
func TestInteropTampered(t *testing.T) {
	f := newInteropFixture(t, "rsa", "p256")
	ossl := peer.NewOpenSSL(t, f.pki)
	nss := peer.NewNSS(t, f.pki)
	gpg := peer.NewGPGSM(t, f.pki)
	rsa, p256 := f.ids["rsa"], f.ids["p256"]
	nss.AddIdentity(t, rsa)
	nss.AddIdentity(t, p256)
	gpg.AddIdentity(t, rsa)
	other := []byte("Content-Type: text/plain; charset=us-ascii\r\n\r\nPay Mallory 1000 EUR.\r\n")

	type signedMsg struct {
		name   string
		id     *testpki.Identity
		opaque bool
		sign   func(content []byte) []byte
	}
	var msgs []signedMsg
	for _, form := range forms {
		opaque := form.opaque
		msgs = append(msgs,
			signedMsg{"openssl-rsa-" + form.name, rsa, opaque, func(c []byte) []byte {
				return ossl.Sign(t, rsa, c, peer.OpenSSLSign{Opaque: opaque})
			}},
			signedMsg{"openssl-p256-" + form.name, p256, opaque, func(c []byte) []byte {
				return ossl.Sign(t, p256, c, peer.OpenSSLSign{Opaque: opaque})
			}},
			signedMsg{"nss-rsa-" + form.name, rsa, opaque, func(c []byte) []byte {
				return nss.Sign(t, rsa, c, peer.NSSSign{Opaque: opaque})
			}},
			signedMsg{"nss-p256-" + form.name, p256, opaque, func(c []byte) []byte {
				return nss.Sign(t, p256, c, peer.NSSSign{Opaque: opaque})
			}},
			signedMsg{"gpgsm-rsa-" + form.name, rsa, opaque, func(c []byte) []byte {
				return gpg.Sign(t, rsa, c, peer.GPGSMSign{Opaque: opaque})
			}},
		)
	}

	for _, m := range msgs {
		orig := append([]byte(outer(m.id.Email)), m.sign(textInput.entity)...)
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			t.Run("control-lf-stored", func(t *testing.T) {
				lf := bytes.ReplaceAll(orig, []byte("\r\n"), []byte("\n"))
				o := f.open(t, lf, m.id.Email)
				if o.err != nil || o.status.Signature != smime.OutcomeGood {
					t.Fatalf("untouched message stored with LF line endings: %s", o)
				}
			})
			t.Run("body-byte-flipped", func(t *testing.T) {
				bad := flipContentByte(t, orig, m.opaque)
				o := f.open(t, bad, m.id.Email)
				if o.status == nil || o.status.Signature != smime.OutcomeBad {
					t.Fatalf("want signature bad: %s", o)
				}
			})
			t.Run("truncated", func(t *testing.T) {
				for _, frac := range []int{10, 50, 90, 99} {
					cut := orig[:len(orig)*frac/100]
					o := f.open(t, cut, m.id.Email)
					if o.err == nil {
						t.Errorf("cut at %d%% (%d of %d bytes): no error: %s", frac, len(cut), len(orig), o)
					}
					if o.status != nil && o.status.Signature == smime.OutcomeGood {
						t.Errorf("cut at %d%%: signature good", frac)
					}
				}
			})
			t.Run("rewrapped", func(t *testing.T) {
				// The original's signature (for an opaque message: its
				// whole SignedData, embedded content included) becomes
				// the signature part of a multipart/signed message about
				// other content.
				om, err := peer.Parse(orig)
				if err != nil {
					t.Fatal(err)
				}
				bad := append([]byte(outer(m.id.Email)), peer.WrapSigned(other, om.CMS, "sha-256")...)
				o := f.open(t, bad, m.id.Email)
				if o.status == nil || o.status.Signature != smime.OutcomeBad {
					t.Fatalf("re-wrapped message: want signature bad: %s", o)
				}
			})
		})
	}
}

// flipContentByte flips a letter of the signed text, in the first part of a
// multipart/signed message or inside the CMS of an opaque one.
func flipContentByte(t testing.TB, msg []byte, opaque bool) []byte {
	t.Helper()
	needle := []byte("Hello Bob")
	if !opaque {
		i := bytes.Index(msg, needle)
		if i < 0 {
			t.Fatal("content not found")
		}
		bad := bytes.Clone(msg)
		bad[i+1] ^= 0x20 // e -> E
		return bad
	}
	m, err := peer.Parse(msg)
	if err != nil {
		t.Fatal(err)
	}
	der := bytes.Clone(m.CMS)
	i := bytes.Index(der, needle)
	if i < 0 {
		t.Fatal("content not found in the CMS")
	}
	der[i+1] ^= 0x20
	hdrEnd := bytes.Index(msg, []byte("MIME-Version"))
	return append(bytes.Clone(msg[:hdrEnd]), peer.WrapPKCS7MIME(der, peer.SignedData)...)
}
