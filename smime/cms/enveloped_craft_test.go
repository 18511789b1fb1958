package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"io"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/internal/keywrap"
)

// Crafted messages: DER built piece by piece in the test, to reach forms
// NewEncrypter never writes (and OpenSSL rarely does).

// envCraft is an EnvelopedData or AuthEnvelopedData in parts.
type envCraft struct {
	outer          asn1.ObjectIdentifier
	version        int64
	originatorInfo []byte // whole element, or nil
	ris            []byte // whole RecipientInfos SET
	contentType    asn1.ObjectIdentifier
	alg            []byte // whole AlgorithmIdentifier
	content        []byte // ciphertext; nil: encryptedContent absent
	tail           [][]byte
}

func (c envCraft) der(t testing.TB) []byte {
	t.Helper()
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(c.outer)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(c.version)
				b.AddBytes(c.originatorInfo)
				b.AddBytes(c.ris)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(c.contentType)
					b.AddBytes(c.alg)
					if c.content != nil {
						b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddBytes(c.content)
						})
					}
				})
				for _, x := range c.tail {
					b.AddBytes(x)
				}
			})
		})
	})
	return envBytes(t, &b)
}

func envBytes(t testing.TB, b *cryptobyte.Builder) []byte {
	t.Helper()
	out, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func envDER(t testing.TB, f func(b *cryptobyte.Builder)) []byte {
	t.Helper()
	var b cryptobyte.Builder
	f(&b)
	return envBytes(t, &b)
}

// envKeyed encrypts an empty message to recips with a known content key of
// keyLen bytes and returns its RecipientInfos SET and the key.
func envKeyed(t testing.TB, c ContentCipher, recips ...Recipient) (ris, cek []byte) {
	t.Helper()
	spec := cipherSpecs[c]
	cek = envRandBytes(spec.keyLen)
	iv := envRandBytes(spec.ivLen)
	msg := envEncrypt(t, EncryptOptions{Recipients: recips, Cipher: c, Rand: envKeyedRand(append(append([]byte(nil), cek...), iv...))}, nil)
	return envSplit(t, msg).recipientInfos, cek
}

// envCBC encrypts with PKCS #7 padding.
func envCBC(t testing.TB, block cipher.Block, iv, content []byte) []byte {
	t.Helper()
	bs := block.BlockSize()
	pad := bs - len(content)%bs
	buf := append(append([]byte(nil), content...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	return buf
}

func envAlgIV(t testing.TB, oid asn1.ObjectIdentifier, iv []byte) []byte {
	return envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1OctetString(iv)
		})
	})
}

func envAlgGCM(t testing.TB, oid asn1.ObjectIdentifier, nonce []byte, icvLen int64) []byte {
	return envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(nonce)
				if icvLen != 0 {
					b.AddASN1Int64(icvLen)
				}
			})
		})
	})
}

func envOctets(t testing.TB, p []byte) []byte {
	return envDER(t, func(b *cryptobyte.Builder) { b.AddASN1OctetString(p) })
}

// envAttrs encodes a SET OF Attribute (under tag) with one attribute.
func envAttrs(t testing.TB, tag cbasn1.Tag, oid asn1.ObjectIdentifier, value func(b *cryptobyte.Builder)) []byte {
	return envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(tag, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oid)
				b.AddASN1(cbasn1.SET, value)
			})
		})
	})
}

// envAddToSet appends elements to the contents of a DER SET.
func envAddToSet(t testing.TB, set []byte, elems ...[]byte) []byte {
	t.Helper()
	s := cryptobyte.String(set)
	var body cryptobyte.String
	if !s.ReadASN1(&body, cbasn1.SET) {
		t.Fatal("not a SET")
	}
	return envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			b.AddBytes(body)
			for _, e := range elems {
				b.AddBytes(e)
			}
		})
	})
}

// TestCraftedMessages runs hand-built messages through the reader.
func TestCraftedMessages(t *testing.T) {
	f := envPKI(t)
	id := f.rsa
	content := envContent(777)

	cbcRIS, cbcKey := envKeyed(t, AES128CBC, Recipient{Certificate: id.Cert})
	cbcBlock, _ := aes.NewCipher(cbcKey)
	iv := envRandBytes(16)
	cbcCT := envCBC(t, cbcBlock, iv, content)
	cbc := envCraft{outer: oidEnvelopedData, ris: cbcRIS, contentType: oidData, alg: envAlgIV(t, oidEnvAES128CBC, iv), content: cbcCT}

	gcmRIS, gcmKey := envKeyed(t, AES256GCM, Recipient{Certificate: id.Cert})
	nonce := envRandBytes(12)
	gcmMsg := func(icvLen int64, tagLen int, aad []byte, authAttrs []byte, extraTail ...[]byte) envCraft {
		ct, tag := envGCMSeal(t, gcmKey, nonce, content, aad, tagLen)
		tail := [][]byte{}
		if authAttrs != nil {
			tail = append(tail, authAttrs)
		}
		tail = append(tail, envOctets(t, tag))
		tail = append(tail, extraTail...)
		return envCraft{outer: oidAuthEnvelopedData, ris: gcmRIS, contentType: oidData, alg: envAlgGCM(t, oidEnvAES256GCM, nonce, icvLen), content: ct, tail: tail}
	}

	ctAttr := func(ct asn1.ObjectIdentifier) func(b *cryptobyte.Builder) {
		return func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(ct) }
	}
	aadData := envAttrs(t, cbasn1.SET, oidContentType, ctAttr(oidData))
	authData := withTag(aadData, authAttrsTag)
	aadSigned := envAttrs(t, cbasn1.SET, oidContentType, ctAttr(oidSignedData))
	authSigned := withTag(aadSigned, authAttrsTag)
	otherAttr := envAttrs(t, cbasn1.Tag(2).Constructed().ContextSpecific(), asn1.ObjectIdentifier{1, 2, 3, 4}, func(b *cryptobyte.Builder) { b.AddASN1NULL() })

	des3RIS, des3Key := envKeyed(t, AES192CBC, Recipient{Certificate: id.Cert})
	des3Block, err := des.NewTripleDESCipher(des3Key)
	if err != nil {
		t.Fatal(err)
	}
	iv8 := envRandBytes(8)

	kekri := envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(4)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1OctetString([]byte("kek-1")) })
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidEnvAES128Wrap) })
			b.AddASN1OctetString(make([]byte, 24))
		})
	})
	pwri := []byte{0xa3, 0x03, 0x02, 0x01, 0x00}
	ori := []byte{0xa4, 0x06, 0x06, 0x02, 0x2a, 0x03, 0x05, 0x00}

	type result int
	const (
		ok result = iota
		failReader
		failDecrypt
	)
	tests := []struct {
		name  string
		msg   envCraft
		stage result
		want  error
	}{
		{"der-cbc", cbc, ok, nil},
		{"originatorInfo", func() envCraft {
			c := cbc
			c.version = 2
			c.originatorInfo = envDER(t, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddBytes(f.rsa2.Cert.Raw)
					})
				})
			})
			return c
		}(), ok, nil},
		{"unprotectedAttrs", func() envCraft {
			c := cbc
			c.version = 2
			c.tail = [][]byte{envAttrs(t, cbasn1.Tag(1).Constructed().ContextSpecific(), asn1.ObjectIdentifier{1, 2, 3}, func(b *cryptobyte.Builder) { b.AddASN1NULL() })}
			return c
		}(), ok, nil},
		{"detached", func() envCraft { c := cbc; c.content = nil; return c }(), failDecrypt, ErrUnsupported},
		{"cbc-short-iv", func() envCraft { c := cbc; c.alg = envAlgIV(t, oidEnvAES128CBC, iv[:8]); return c }(), failReader, ErrMalformed},
		{"cbc-bad-length", func() envCraft { c := cbc; c.content = cbcCT[:17]; return c }(), failDecrypt, ErrMalformed},
		{"cbc-empty-ciphertext", func() envCraft { c := cbc; c.content = []byte{}; return c }(), failDecrypt, ErrMalformed},
		{"bad-version", func() envCraft { c := cbc; c.version = 99; return c }(), failReader, ErrMalformed},
		{"gcm-in-envelopedData", func() envCraft { c := gcmMsg(16, 16, nil, nil); c.outer = oidEnvelopedData; c.tail = nil; return c }(), failDecrypt, ErrUnsupported},
		{"cbc-in-authEnvelopedData", func() envCraft { c := cbc; c.outer = oidAuthEnvelopedData; return c }(), failDecrypt, ErrUnsupported},
		{"gcm-icv16", gcmMsg(16, 16, nil, nil), ok, nil},
		{"gcm-icv12-default", gcmMsg(0, 12, nil, nil), ok, nil},
		{"gcm-icv14", gcmMsg(14, 14, nil, nil), ok, nil},
		{"gcm-icv8", gcmMsg(8, 16, nil, nil), failDecrypt, ErrUnsupported},
		{"gcm-icv20", gcmMsg(20, 16, nil, nil), failReader, ErrMalformed},
		{"gcm-nonce16", func() envCraft {
			c := gcmMsg(16, 16, nil, nil)
			c.alg = envAlgGCM(t, oidEnvAES256GCM, envRandBytes(16), 16)
			return c
		}(), failDecrypt, ErrUnsupported},
		{"gcm-mac-length", gcmMsg(16, 12, nil, nil), failDecrypt, ErrMalformed},
		{"gcm-authAttrs", gcmMsg(16, 16, aadData, authData), ok, nil},
		{"gcm-authAttrs-unauthAttrs", gcmMsg(16, 16, aadData, authData, otherAttr), ok, nil},
		{"gcm-authAttrs-tampered", gcmMsg(16, 16, aadData, authSigned), failDecrypt, ErrDecryption},
		{"gcm-authAttrs-missing", gcmMsg(16, 16, aadData, nil), failDecrypt, ErrDecryption},
		{"gcm-authAttrs-content-type-mismatch", gcmMsg(16, 16, aadSigned, authSigned), failDecrypt, ErrMalformed},
		{"gcm-missing-mac", func() envCraft { c := gcmMsg(16, 16, nil, nil); c.tail = nil; return c }(), failDecrypt, ErrMalformed},
		{"gcm-garbage-after-mac", func() envCraft { c := gcmMsg(16, 16, nil, nil); c.tail = append(c.tail, []byte{5, 0}); return c }(), failDecrypt, ErrMalformed},
		{"other-recipient-kinds", func() envCraft { c := cbc; c.version = 3; c.ris = envAddToSet(t, cbcRIS, kekri, pwri, ori); return c }(), ok, nil},
		{"only-kekri", func() envCraft {
			c := cbc
			c.ris = envDER(t, func(b *cryptobyte.Builder) { b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(kekri) }) })
			return c
		}(), failDecrypt, ErrNoRecipient},
		{"empty-recipientInfos", func() envCraft { c := cbc; c.ris = []byte{0x31, 0x00}; return c }(), failReader, ErrMalformed},
		{"des-ede3-cbc", envCraft{outer: oidEnvelopedData, ris: des3RIS, contentType: oidData, alg: envAlgIV(t, oidEnvDES3CBC, iv8), content: envCBC(t, des3Block, iv8, content)}, ok, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.msg.der(t)
			er, err := NewEnvelopedReader(bytes.NewReader(msg))
			if tt.stage == failReader {
				t.Logf("error: %v", err)
				if !errors.Is(err, tt.want) {
					t.Fatalf("NewEnvelopedReader: %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewEnvelopedReader: %v", err)
			}
			dir := t.TempDir()
			rc, err := er.Decrypt(id.Key, id.Cert, DecryptOptions{SpoolDir: dir})
			var got []byte
			if err == nil {
				got, err = io.ReadAll(rc)
				rc.Close()
			}
			envCheckNoSpool(t, dir)
			if tt.stage == failDecrypt {
				t.Logf("error: %v", err)
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("plaintext differs")
			}
		})
	}
	t.Run("other-recipient-kinds-listed", func(t *testing.T) {
		c := cbc
		c.ris = envAddToSet(t, cbcRIS, kekri, pwri, ori)
		er, err := NewEnvelopedReader(bytes.NewReader(c.der(t)))
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, ri := range er.Recipients() {
			kinds = append(kinds, ri.Kind)
		}
		if len(kinds) != 4 || kinds[0] != "ktri" || kinds[1] != "kekri" || kinds[2] != "pwri" || kinds[3] != "ori" {
			t.Fatalf("kinds %v", kinds)
		}
	})
}

// envKTRI builds a KeyTransRecipientInfo with a given algorithm encoding.
func envKTRI(t testing.TB, cert *testpki.Identity, alg []byte, ek []byte) []byte {
	return envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			appendIssuerAndSerial(b, cert.Cert)
			b.AddBytes(alg)
			b.AddASN1OctetString(ek)
		})
	})
}

// TestCraftedKeyTransport covers OAEP parameter encodings and unknown
// key-transport algorithms.
func TestCraftedKeyTransport(t *testing.T) {
	f := envPKI(t)
	id := f.rsa
	pub := id.Cert.PublicKey.(*rsa.PublicKey)
	cek := envRandBytes(16)
	iv := envRandBytes(16)
	block, _ := aes.NewCipher(cek)
	content := envContent(100)
	ct := envCBC(t, block, iv, content)
	sha1EK, err := rsa.EncryptOAEP(crypto.SHA1.New(), rand.Reader, pub, cek, nil)
	if err != nil {
		t.Fatal(err)
	}
	sha256EK, err := rsa.EncryptOAEP(crypto.SHA256.New(), rand.Reader, pub, cek, nil)
	if err != nil {
		t.Fatal(err)
	}
	oaepAlg := func(params []byte) []byte {
		return envDER(t, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidEnvRSAESOAEP)
				b.AddBytes(params)
			})
		})
	}
	sha256Absent := envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidSHA256) })
			})
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidMGF1)
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidSHA256) })
				})
			})
		})
	})
	tests := []struct {
		name    string
		alg     []byte
		ek      []byte
		want    error
		wantAlg string
	}{
		{"oaep-params-absent", oaepAlg(nil), sha1EK, nil, "rsa-oaep"},
		{"oaep-params-NULL", oaepAlg([]byte{5, 0}), sha1EK, nil, "rsa-oaep"},
		{"oaep-params-empty", oaepAlg([]byte{0x30, 0}), sha1EK, nil, "rsa-oaep"},
		{"oaep-sha256-hash-params-absent", oaepAlg(sha256Absent), sha256EK, nil, "rsa-oaep"},
		{"oaep-wrong-hash", oaepAlg(sha256Absent), sha1EK, ErrDecryption, "rsa-oaep"},
		{"oaep-md5", oaepAlg(envDER(t, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidMD5) })
				})
			})
		})), sha1EK, ErrUnsupported, "rsa-oaep"},
		{"unknown-algorithm", envDER(t, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 3, 4}) })
		}), sha1EK, ErrUnsupported, "1.2.3.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ris := envDER(t, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(envKTRI(t, id, tt.alg, tt.ek)) })
			})
			msg := envCraft{outer: oidEnvelopedData, ris: ris, contentType: oidData, alg: envAlgIV(t, oidEnvAES128CBC, iv), content: ct}.der(t)
			er, err := NewEnvelopedReader(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if got := er.Recipients()[0].KeyAlgorithm; got != tt.wantAlg {
				t.Errorf("KeyAlgorithm %q", got)
			}
			rc, err := er.Decrypt(id.Key, id.Cert, DecryptOptions{})
			if tt.want != nil {
				t.Logf("error: %v", err)
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("%v", err)
			}
		})
	}
}

// envKariOpts shapes a test-built KeyAgreeRecipientInfo.
type envKariOpts struct {
	origParams []byte // parameters of the originator key's algorithm
	scheme     asn1.ObjectIdentifier
	hash       crypto.Hash
	wrapOID    asn1.ObjectIdentifier
	kekLen     int
	ukm        []byte
	ski        bool // rKeyId with a date
	badPoint   bool
	static     bool // originator by issuerAndSerialNumber
}

// envBuildKARI builds a KeyAgreeRecipientInfo for recips, which share one
// ephemeral key (RFC 5652 allows several recipientEncryptedKeys).
func envBuildKARI(t testing.TB, cek []byte, o envKariOpts, recips ...*testpki.Identity) []byte {
	t.Helper()
	curve := ecdh.P256()
	eph, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point := eph.PublicKey().Bytes()
	if o.badPoint {
		point = append([]byte(nil), point...)
		point[10] ^= 1
	}
	var reks [][]byte
	for _, r := range recips {
		remote, err := r.Cert.PublicKey.(*ecdsa.PublicKey).ECDH()
		if err != nil {
			t.Fatal(err)
		}
		z, err := eph.ECDH(remote)
		if err != nil {
			t.Fatal(err)
		}
		wrapped := make([]byte, len(cek)+8)
		if kek, err := deriveKEK(o.hash, z, o.wrapOID, o.ukm, o.kekLen); err == nil {
			if wrapped, err = keywrap.Wrap(kek, cek); err != nil {
				t.Fatal(err)
			}
		}
		reks = append(reks, envDER(t, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if o.ski {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(r.Cert.SubjectKeyId)
						b.AddASN1GeneralizedTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
					})
				} else {
					appendIssuerAndSerial(b, r.Cert)
				}
				b.AddASN1OctetString(wrapped)
			})
		}))
	}
	return envDER(t, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(3)
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				if o.static {
					appendIssuerAndSerial(b, recips[0].Cert)
					return
				}
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(oidECPublicKey)
						b.AddBytes(o.origParams)
					})
					b.AddASN1BitString(point)
				})
			})
			if o.ukm != nil {
				b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddASN1OctetString(o.ukm)
				})
			}
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(o.scheme)
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(o.wrapOID) })
			})
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, r := range reks {
					b.AddBytes(r)
				}
			})
		})
	})
}

// TestCraftedKeyAgreement covers KeyAgreeRecipientInfo forms: originator
// key parameters, cofactor schemes, rKeyId, ukm, shared ephemeral keys and
// what is refused.
func TestCraftedKeyAgreement(t *testing.T) {
	f := envPKI(t)
	cek := envRandBytes(32)
	iv := envRandBytes(16)
	block, _ := aes.NewCipher(cek)
	content := envContent(500)
	ct := envCBC(t, block, iv, content)
	base := envKariOpts{scheme: asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}, hash: crypto.SHA256, wrapOID: oidEnvAES256Wrap, kekLen: 32}
	p256OID, _ := asn1.Marshal(oidEnvP256)
	p384OID, _ := asn1.Marshal(oidEnvP384)
	with := func(mod func(o *envKariOpts)) envKariOpts { o := base; mod(&o); return o }
	tests := []struct {
		name   string
		o      envKariOpts
		recips []*testpki.Identity
		want   error
	}{
		{"params-absent", base, nil, nil},
		{"params-NULL", with(func(o *envKariOpts) { o.origParams = []byte{5, 0} }), nil, nil},
		{"params-curve", with(func(o *envKariOpts) { o.origParams = p256OID }), nil, nil},
		{"params-wrong-curve", with(func(o *envKariOpts) { o.origParams = p384OID }), nil, ErrMalformed},
		{"cofactor-sha256", with(func(o *envKariOpts) { o.scheme = asn1.ObjectIdentifier{1, 3, 132, 1, 14, 1} }), nil, nil},
		{"cofactor-sha1-aes128wrap", with(func(o *envKariOpts) {
			o.scheme = asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 3}
			o.hash, o.wrapOID, o.kekLen = crypto.SHA1, oidEnvAES128Wrap, 16
		}), nil, nil},
		{"cofactor-sha512-aes192wrap", with(func(o *envKariOpts) {
			o.scheme = asn1.ObjectIdentifier{1, 3, 132, 1, 14, 3}
			o.hash, o.wrapOID, o.kekLen = crypto.SHA512, oidEnvAES192Wrap, 24
		}), nil, nil},
		{"ukm", with(func(o *envKariOpts) { o.ukm = []byte("user keying material") }), nil, nil},
		{"rKeyId", with(func(o *envKariOpts) { o.ski = true }), []*testpki.Identity{f.p256SKI}, nil},
		{"two-recipients-one-ephemeral", base, []*testpki.Identity{f.p256b, f.p256}, nil},
		{"static-originator", with(func(o *envKariOpts) { o.static = true }), nil, ErrUnsupported},
		{"unknown-kdf", with(func(o *envKariOpts) { o.scheme = asn1.ObjectIdentifier{1, 3, 132, 1, 15, 1} }), nil, ErrUnsupported},
		{"unknown-wrap", with(func(o *envKariOpts) { o.wrapOID = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 48} }), nil, ErrUnsupported},
		{"point-not-on-curve", with(func(o *envKariOpts) { o.badPoint = true }), nil, ErrMalformed},
		// The KEK derived with SHA-384 but the scheme says SHA-256.
		{"wrong-kek", with(func(o *envKariOpts) { o.hash = crypto.SHA384 }), nil, ErrDecryption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recips := tt.recips
			if recips == nil {
				recips = []*testpki.Identity{f.p256}
			}
			kari := envBuildKARI(t, cek, tt.o, recips...)
			ris := envDER(t, func(b *cryptobyte.Builder) { b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(kari) }) })
			msg := envCraft{outer: oidEnvelopedData, version: 2, ris: ris, contentType: oidData, alg: envAlgIV(t, oidEnvAES256CBC, iv), content: ct}.der(t)
			er, err := NewEnvelopedReader(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(er.Recipients()) != len(recips) {
				t.Fatalf("%d recipients listed, want %d", len(er.Recipients()), len(recips))
			}
			for _, r := range recips {
				ka, counter := envCountedKey(r)
				got, err := envDecrypt(msg, ka, r.Cert, DecryptOptions{})
				if tt.want != nil {
					t.Logf("error: %v", err)
					if !errors.Is(err, tt.want) {
						t.Fatalf("got %v, want %v", err, tt.want)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", r.Email, err)
				}
				if !bytes.Equal(got, content) {
					t.Fatal("plaintext differs")
				}
				if counter.count() != 1 {
					t.Errorf("%d key operations", counter.count())
				}
			}
		})
	}
}
