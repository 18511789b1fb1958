package keystore

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// BER-encoded PKCS #12 files.
//
// go-pkcs12 reads DER only (encoding/asn1), but NSS — Thunderbird's and
// Firefox's certificate export, pk12util — writes PKCS #12 in BER: indefinite
// lengths and OCTET STRINGs split into constructed segments, at every layer
// down to the authenticated safe. The MAC covers the BER bytes of the
// authenticated safe, so the file cannot simply be re-encoded as DER and
// handed over.
//
// derPKCS12 therefore (1) parses the BER PFX, (2) verifies its MAC itself,
// over the original bytes, with the password (RFC 7292 appendix B.2 key
// derivation, SHA-1 or SHA-2 HMAC), (3) re-encodes the authenticated safe and
// its safe contents as DER, and (4) wraps them in a DER PFX with a fresh
// single-iteration MAC under the same password, which go-pkcs12 then checks,
// decrypts and parses as usual. Integrity is decided by step 2; step 4's
// MAC only satisfies go-pkcs12's interface.

// BER limits: nesting depth and total input size.
const (
	berMaxDepth = 48
	berMaxInput = 16 << 20
	berMaxNodes = 1 << 16
)

// berNode is one BER element.
type berNode struct {
	class       byte // 0 universal, 1 application, 2 context, 3 private
	tag         uint32
	constructed bool
	value       []byte     // primitive content
	children    []*berNode // constructed content
}

// ASN.1 universal tags used below.
const (
	tagBitString   = 3
	tagOctetString = 4
	tagSequence    = 16
)

// parseBER parses one BER element from b and returns it and the bytes after
// it.
func parseBER(b []byte, depth int, budget *int) (*berNode, []byte, error) {
	if depth > berMaxDepth {
		return nil, nil, errors.New("BER nested too deeply")
	}
	if *budget--; *budget < 0 {
		return nil, nil, errors.New("too many BER elements")
	}
	if len(b) < 2 {
		return nil, nil, errors.New("BER element truncated")
	}
	n := &berNode{class: b[0] >> 6, constructed: b[0]&0x20 != 0, tag: uint32(b[0] & 0x1f)}
	i := 1
	if n.tag == 0x1f { // high tag number form
		n.tag = 0
		for {
			if i >= len(b) || n.tag > 1<<24 {
				return nil, nil, errors.New("BER tag truncated or too large")
			}
			c := b[i]
			i++
			n.tag = n.tag<<7 | uint32(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return nil, nil, errors.New("BER length truncated")
	}
	l := int(b[i])
	i++
	if l == 0x80 { // indefinite: constructed content up to end-of-contents
		if !n.constructed {
			return nil, nil, errors.New("BER indefinite length on a primitive element")
		}
		rest := b[i:]
		for {
			if len(rest) >= 2 && rest[0] == 0 && rest[1] == 0 {
				return n, rest[2:], nil
			}
			child, r, err := parseBER(rest, depth+1, budget)
			if err != nil {
				return nil, nil, err
			}
			n.children = append(n.children, child)
			rest = r
		}
	}
	if l > 0x80 {
		nbytes := l & 0x7f
		if nbytes > 4 || i+nbytes > len(b) {
			return nil, nil, errors.New("BER length too large or truncated")
		}
		l = 0
		for _, c := range b[i : i+nbytes] {
			l = l<<8 | int(c)
		}
		i += nbytes
	}
	if l < 0 || l > len(b)-i {
		return nil, nil, errors.New("BER content truncated")
	}
	content := b[i : i+l]
	rest := b[i+l:]
	if !n.constructed {
		n.value = content
		return n, rest, nil
	}
	for len(content) > 0 {
		child, r, err := parseBER(content, depth+1, budget)
		if err != nil {
			return nil, nil, err
		}
		n.children = append(n.children, child)
		content = r
	}
	return n, rest, nil
}

// parseBERAll parses b, which must hold exactly one element.
func parseBERAll(b []byte) (*berNode, error) {
	if len(b) > berMaxInput {
		return nil, errors.New("BER input too large")
	}
	budget := berMaxNodes
	n, rest, err := parseBER(b, 0, &budget)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, errors.New("trailing data after BER element")
	}
	return n, nil
}

func (n *berNode) is(class byte, tag uint32) bool { return n.class == class && n.tag == tag }

// octets returns the content of an OCTET STRING (or an IMPLICIT-tagged one),
// joining constructed segments.
func (n *berNode) octets() ([]byte, error) {
	if !n.constructed {
		return n.value, nil
	}
	var out []byte
	for _, c := range n.children {
		if !c.is(0, tagOctetString) {
			return nil, errors.New("constructed OCTET STRING holds something else")
		}
		seg, err := c.octets()
		if err != nil {
			return nil, err
		}
		out = append(out, seg...)
	}
	return out, nil
}

// der encodes n in DER form: definite lengths, and constructed strings of
// the universal string types joined into primitive ones.
func (n *berNode) der() ([]byte, error) {
	if n.constructed && n.class == 0 && isStringTag(n.tag) {
		if n.tag == tagBitString {
			return nil, errors.New("constructed BIT STRING not supported")
		}
		v, err := n.joinedString()
		if err != nil {
			return nil, err
		}
		return appendTLV(nil, n.class, n.tag, false, v), nil
	}
	if !n.constructed {
		return appendTLV(nil, n.class, n.tag, false, n.value), nil
	}
	var content []byte
	for _, c := range n.children {
		d, err := c.der()
		if err != nil {
			return nil, err
		}
		content = append(content, d...)
	}
	return appendTLV(nil, n.class, n.tag, true, content), nil
}

// joinedString joins the segments of a constructed string of n's type.
func (n *berNode) joinedString() ([]byte, error) {
	var out []byte
	for _, c := range n.children {
		if !c.is(0, n.tag) {
			return nil, errors.New("constructed string holds another type")
		}
		if !c.constructed {
			out = append(out, c.value...)
			continue
		}
		seg, err := c.joinedString()
		if err != nil {
			return nil, err
		}
		out = append(out, seg...)
	}
	return out, nil
}

func isStringTag(tag uint32) bool {
	switch tag {
	case tagBitString, tagOctetString, 12 /* UTF8String */, 18, 19, 20, 21, 22, 25, 26, 27, 28, 30 /* BMPString */ :
		return true
	}
	return false
}

// appendTLV appends one DER element.
func appendTLV(b []byte, class byte, tag uint32, constructed bool, content []byte) []byte {
	id := class << 6
	if constructed {
		id |= 0x20
	}
	if tag < 0x1f {
		b = append(b, id|byte(tag))
	} else {
		b = append(b, id|0x1f)
		var t []byte
		for v := tag; ; v >>= 7 {
			t = append([]byte{byte(v & 0x7f)}, t...)
			if v < 0x80 {
				break
			}
		}
		for i := 0; i < len(t)-1; i++ {
			t[i] |= 0x80
		}
		b = append(b, t...)
	}
	switch l := len(content); {
	case l < 0x80:
		b = append(b, byte(l))
	case l < 0x100:
		b = append(b, 0x81, byte(l))
	case l < 0x10000:
		b = append(b, 0x82, byte(l>>8), byte(l))
	case l < 0x1000000:
		b = append(b, 0x83, byte(l>>16), byte(l>>8), byte(l))
	default:
		b = append(b, 0x84, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
	return append(b, content...)
}

// PKCS #7 content types used in PKCS #12.
func oidP7Data() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1} }
func oidP7EncryptedData() asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
}

// oidSHA256 names SHA-256 in AlgorithmIdentifiers.
func oidSHA256() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1} }

func oidOf(n *berNode) (asn1.ObjectIdentifier, error) {
	if !n.is(0, 6) || n.constructed {
		return nil, errors.New("expected an OBJECT IDENTIFIER")
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(appendTLV(nil, 0, 6, false, n.value), &oid); err != nil {
		return nil, err
	}
	return oid, nil
}

// isBER reports whether data is not plain DER in the places go-pkcs12
// cares about: an indefinite length or a constructed OCTET STRING at the
// outer layers. A DER file is always handed to go-pkcs12 unchanged.
func isBER(data []byte) bool {
	n, err := parseBERAll(data)
	if err != nil {
		return false
	}
	d, err := n.der()
	return err == nil && !bytes.Equal(d, data)
}

// derPKCS12 turns a BER PKCS #12 file into a DER one that go-pkcs12 reads,
// after verifying the original MAC with password (UTF-8). A wrong password
// gives ErrWrongPassphrase.
func derPKCS12(data, password []byte) ([]byte, error) {
	authSafeBER, mac, err := parsePFX(data)
	if err != nil {
		return nil, err
	}
	if err := verifyPKCS12MAC(mac, authSafeBER, password); err != nil {
		return nil, err
	}
	authSafeDER, err := authSafeToDER(authSafeBER)
	if err != nil {
		return nil, err
	}
	return buildPFX(authSafeDER, password)
}

// parsePFX splits a BER PFX into the authenticated safe's bytes (what the
// MAC covers) and the MacData element.
func parsePFX(data []byte) (authSafe []byte, mac *berNode, err error) {
	if len(data) > berMaxInput {
		return nil, nil, errors.New("file too large")
	}
	pfx, err := parseBERAll(data)
	if err != nil {
		return nil, nil, err
	}
	if !pfx.is(0, tagSequence) || len(pfx.children) < 2 || len(pfx.children) > 3 {
		return nil, nil, errors.New("not a PFX")
	}
	var version int
	if _, err := asn1.Unmarshal(appendTLV(nil, 0, 2, false, pfx.children[0].value), &version); err != nil || version != 3 {
		return nil, nil, errors.New("unsupported PFX version")
	}
	authSafeCI := pfx.children[1]
	if !authSafeCI.is(0, tagSequence) || len(authSafeCI.children) != 2 {
		return nil, nil, errors.New("bad authSafe")
	}
	if oid, err := oidOf(authSafeCI.children[0]); err != nil || !oid.Equal(oidP7Data()) {
		return nil, nil, errors.New("only password-integrity PFX files are supported")
	}
	explicit := authSafeCI.children[1]
	if !explicit.is(2, 0) || len(explicit.children) != 1 {
		return nil, nil, errors.New("bad authSafe content")
	}
	authSafe, err = explicit.children[0].octets()
	if err != nil {
		return nil, nil, err
	}
	if len(pfx.children) != 3 {
		return nil, nil, errors.New("PFX without a MAC")
	}
	return authSafe, pfx.children[2], nil
}

// authSafeToDER re-encodes the authenticated safe (a SEQUENCE OF
// ContentInfo) as DER.
func authSafeToDER(authSafeBER []byte) ([]byte, error) {
	authSafe, err := parseBERAll(authSafeBER)
	if err != nil {
		return nil, err
	}
	if !authSafe.is(0, tagSequence) {
		return nil, errors.New("bad authenticated safe")
	}
	var safeDER []byte
	for _, ci := range authSafe.children {
		d, err := contentInfoDER(ci)
		if err != nil {
			return nil, err
		}
		safeDER = append(safeDER, d...)
	}
	return appendTLV(nil, 0, tagSequence, true, safeDER), nil
}

// contentInfoDER re-encodes one ContentInfo of the authenticated safe.
func contentInfoDER(ci *berNode) ([]byte, error) {
	if !ci.is(0, tagSequence) || len(ci.children) != 2 || !ci.children[1].is(2, 0) || len(ci.children[1].children) != 1 {
		return nil, errors.New("bad ContentInfo in the authenticated safe")
	}
	oid, err := oidOf(ci.children[0])
	if err != nil {
		return nil, err
	}
	oidDER, _ := ci.children[0].der()
	inner := ci.children[1].children[0]
	var content []byte
	switch {
	case oid.Equal(oidP7Data()):
		// OCTET STRING holding SafeContents, itself possibly BER.
		octets, err := inner.octets()
		if err != nil {
			return nil, err
		}
		sc, err := parseBERAll(octets)
		if err != nil {
			return nil, err
		}
		scDER, err := sc.der()
		if err != nil {
			return nil, err
		}
		content = appendTLV(nil, 0, tagOctetString, false, scDER)
	case oid.Equal(oidP7EncryptedData()):
		// EncryptedData ::= SEQUENCE { version, EncryptedContentInfo ::=
		// SEQUENCE { contentType, contentEncryptionAlgorithm,
		// encryptedContent [0] IMPLICIT OCTET STRING } }
		if !inner.is(0, tagSequence) || len(inner.children) != 2 {
			return nil, errors.New("bad EncryptedData")
		}
		eci := inner.children[1]
		if !eci.is(0, tagSequence) || len(eci.children) != 3 || !eci.children[2].is(2, 0) {
			return nil, errors.New("bad EncryptedContentInfo")
		}
		ciphertext, err := eci.children[2].octets()
		if err != nil {
			return nil, err
		}
		version, err := inner.children[0].der()
		if err != nil {
			return nil, err
		}
		ctype, err := eci.children[0].der()
		if err != nil {
			return nil, err
		}
		alg, err := eci.children[1].der()
		if err != nil {
			return nil, err
		}
		eciDER := appendTLV(nil, 0, tagSequence, true,
			append(append(ctype, alg...), appendTLV(nil, 2, 0, false, ciphertext)...))
		content = appendTLV(nil, 0, tagSequence, true, append(version, eciDER...))
	default:
		return nil, fmt.Errorf("unsupported content type %v in the authenticated safe", oid)
	}
	return appendTLV(nil, 0, tagSequence, true, append(oidDER, appendTLV(nil, 2, 0, true, content)...)), nil
}

// macHash returns the hash of a PKCS #12 MacData digest algorithm, or nil.
func macHash(oid asn1.ObjectIdentifier) func() hash.Hash {
	switch {
	case oid.Equal(asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}):
		return sha1.New
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}):
		return sha256.New224
	case oid.Equal(oidSHA256()):
		return sha256.New
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}):
		return sha512.New384
	case oid.Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}):
		return sha512.New
	}
	return nil
}

// macData mirrors PKCS #12 MacData.
type macData struct {
	Mac struct {
		Algorithm struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue `asn1:"optional"`
		}
		Digest []byte
	}
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

// verifyPKCS12MAC checks the PFX MAC over the authenticated safe's
// original bytes. An empty password is tried both as an empty BMPString
// with its terminator and as no bytes at all, as implementations differ.
func verifyPKCS12MAC(n *berNode, authSafe, password []byte) error {
	d, err := n.der()
	if err != nil {
		return err
	}
	var md macData
	if rest, err := asn1.Unmarshal(d, &md); err != nil || len(rest) != 0 {
		return errors.New("bad MacData")
	}
	newHash := macHash(md.Mac.Algorithm.Algorithm)
	if newHash == nil {
		return fmt.Errorf("unsupported MAC algorithm %v", md.Mac.Algorithm.Algorithm)
	}
	if md.Iterations < 1 || md.Iterations > 10_000_000 {
		return errors.New("MAC iteration count out of range")
	}
	bmp, err := bmpPassword(password)
	if err != nil {
		return err
	}
	defer clear(bmp)
	candidates := [][]byte{bmp}
	if len(password) == 0 {
		candidates = append(candidates, nil)
	}
	for _, pw := range candidates {
		key := pkcs12KDF(newHash, pw, md.MacSalt, 3, md.Iterations, newHash().Size())
		mac := hmac.New(newHash, key)
		clear(key)
		mac.Write(authSafe)
		if hmac.Equal(mac.Sum(nil), md.Mac.Digest) {
			return nil
		}
	}
	return ErrWrongPassphrase
}

// buildPFX wraps a DER authenticated safe in a DER PFX whose MAC
// (HMAC-SHA-256, one iteration, fresh salt) is keyed by password.
func buildPFX(authSafe, password []byte) ([]byte, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	bmp, err := bmpPassword(password)
	if err != nil {
		return nil, err
	}
	defer clear(bmp)
	key := pkcs12KDF(sha256.New, bmp, salt, 3, 1, sha256.Size)
	mac := hmac.New(sha256.New, key)
	clear(key)
	mac.Write(authSafe)
	digest := mac.Sum(nil)

	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidP7Data())
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(authSafe)
			})
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidSHA256())
					b.AddASN1NULL()
				})
				b.AddASN1OctetString(digest)
			})
			b.AddASN1OctetString(salt)
			b.AddASN1Int64(1)
		})
	})
	return b.Bytes()
}

// bmpPassword encodes a UTF-8 password as PKCS #12 wants it: big-endian
// UTF-16 with a two-byte zero terminator. The caller clears the result.
func bmpPassword(pw []byte) ([]byte, error) {
	out := make([]byte, 0, 2*len(pw)+2)
	for len(pw) > 0 {
		r, size := utf8.DecodeRune(pw)
		if r == utf8.RuneError && size <= 1 {
			clear(out)
			return nil, errors.New("password is not valid UTF-8")
		}
		pw = pw[size:]
		if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
			out = append(out, byte(r1>>8), byte(r1), byte(r2>>8), byte(r2))
		} else {
			out = append(out, byte(r>>8), byte(r))
		}
	}
	return append(out, 0, 0), nil
}

// pkcs12KDF is the key derivation of RFC 7292 appendix B.2: n bytes for
// purpose id (1 key, 2 IV, 3 MAC) from a BMPString password and a salt.
func pkcs12KDF(newHash func() hash.Hash, password, salt []byte, id byte, iterations, n int) []byte {
	h := newHash()
	u, v := h.Size(), h.BlockSize()
	D := bytes.Repeat([]byte{id}, v)
	fill := func(src []byte) []byte {
		if len(src) == 0 {
			return nil
		}
		out := make([]byte, v*((len(src)+v-1)/v))
		for i := range out {
			out[i] = src[i%len(src)]
		}
		return out
	}
	S, P := fill(salt), fill(password)
	I := append(S, P...)
	defer clear(I)
	defer clear(P)
	out := make([]byte, 0, n+u)
	one := big.NewInt(1)
	for len(out) < n {
		h.Reset()
		h.Write(D)
		h.Write(I)
		A := h.Sum(nil)
		for range iterations - 1 {
			h.Reset()
			h.Write(A)
			A = h.Sum(A[:0])
		}
		out = append(out, A...)
		if len(out) >= n {
			clear(A)
			break
		}
		// I_j = (I_j + B + 1) mod 2^(8v), B = A repeated to v bytes.
		B := new(big.Int).SetBytes(fill(A))
		B.Add(B, one)
		for j := 0; j < len(I); j += v {
			Ij := new(big.Int).SetBytes(I[j : j+v])
			Ij.Add(Ij, B)
			buf := Ij.Bytes()
			if len(buf) > v {
				buf = buf[len(buf)-v:]
			}
			clear(I[j : j+v])
			copy(I[j+v-len(buf):j+v], buf)
		}
		clear(A)
	}
	key := bytes.Clone(out[:n])
	clear(out)
	return key
}
