package gcmstream

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// fill returns n deterministic pseudo-random bytes.
func fill(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// reference seals with crypto/cipher's whole-buffer GCM.
func reference(t testing.TB, key, nonce []byte, tagLen int, aad, pt []byte) (ct, tag []byte) {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCMWithTagSize(block, tagLen)
	if err != nil {
		t.Fatal(err)
	}
	out := aead.Seal(nil, nonce, pt, aad)
	return out[:len(pt)], out[len(pt):]
}

// split cuts data into pieces: all of it at once if r is nil, otherwise
// random sizes biased towards small pieces and chunk-size neighbourhoods.
func split(r *rand.Rand, data []byte, chunkSize int) [][]byte {
	if r == nil {
		return [][]byte{data}
	}
	var parts [][]byte
	for len(data) > 0 {
		var n int
		switch r.IntN(4) {
		case 0:
			n = r.IntN(17)
		case 1:
			n = r.IntN(200)
		case 2:
			n = chunkSize - 1 + r.IntN(3)
		default:
			n = r.IntN(3 * chunkSize)
		}
		n = min(n, len(data))
		parts = append(parts, data[:n])
		data = data[n:]
	}
	return parts
}

// streamSeal seals pt written in the given pieces.
func streamSeal(t testing.TB, key, nonce []byte, tagLen int, aad []byte, parts [][]byte, opts options) (ct, tag []byte) {
	t.Helper()
	var buf bytes.Buffer
	s, err := newSealer(key, nonce, tagLen, aad, &buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	if s.Tag() != nil {
		t.Error("Tag before Close is not nil")
	}
	for _, p := range parts {
		n, err := s.Write(p)
		if err != nil || n != len(p) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s.Tag()
}

// streamVerify runs a TagVerifier over ct written in the given pieces.
func streamVerify(t testing.TB, key, nonce []byte, tagLen int, aad []byte, parts [][]byte, tag []byte, opts options) error {
	t.Helper()
	v, err := newTagVerifier(key, nonce, tagLen, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		n, err := v.Write(p)
		if err != nil || n != len(p) {
			t.Fatalf("TagVerifier.Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	return v.Verify(aad, tag)
}

// checkEquivalence seals and verifies pt both ways and compares the results
// with crypto/cipher.
func checkEquivalence(t testing.TB, r *rand.Rand, key, nonce []byte, tagLen int, aad, pt []byte, opts options) {
	t.Helper()
	wantCT, wantTag := reference(t, key, nonce, tagLen, aad, pt)
	for _, chunker := range []*rand.Rand{nil, r} {
		ct, tag := streamSeal(t, key, nonce, tagLen, aad, split(chunker, pt, opts.chunkSize), opts)
		if !bytes.Equal(ct, wantCT) {
			t.Fatalf("ciphertext differs from crypto/cipher (%d bytes, random chunks %v)", len(pt), chunker != nil)
		}
		if !bytes.Equal(tag, wantTag) {
			t.Fatalf("tag %x, crypto/cipher %x (random chunks %v)", tag, wantTag, chunker != nil)
		}
		if err := streamVerify(t, key, nonce, tagLen, aad, split(chunker, wantCT, opts.chunkSize), wantTag, opts); err != nil {
			t.Fatalf("TagVerifier rejected crypto/cipher's tag: %v", err)
		}
	}
	cr, err := NewCTRReader(key, nonce, iotest.HalfReader(bytes.NewReader(wantCT)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(cr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatal("CTR reader did not recover the plaintext")
	}
}

func TestMatchesCryptoCipher(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 20))
	sizes := []int{0, 1, 15, 16, 17, 64<<10 - 1, 64 << 10, 64<<10 + 1, 200<<10 + 3}
	aads := []struct {
		name string
		aad  []byte
	}{
		{"no AAD", nil},
		{"short AAD", []byte("authAttrs")},
		{"one-chunk AAD", fill(r, 64<<10)},
		{"70 KiB AAD", fill(r, 70<<10+5)},
	}
	for _, keyLen := range []int{16, 24, 32} {
		for _, tagLen := range []int{12, 16} {
			for _, a := range aads {
				for _, size := range sizes {
					name := fmt.Sprintf("AES-%d/tag%d/%s/%d", keyLen*8, tagLen, a.name, size)
					t.Run(name, func(t *testing.T) {
						key, nonce, pt := fill(r, keyLen), fill(r, NonceSize), fill(r, size)
						checkEquivalence(t, r, key, nonce, tagLen, a.aad, pt, defaultOptions())
					})
				}
			}
		}
	}
}

// TestSmallChunks exercises the chunk-boundary logic with tiny internal
// chunks, and the random-nonce GHASH path used in FIPS 140-only mode.
func TestSmallChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(30, 40))
	tests := []options{
		{chunkSize: 16}, {chunkSize: 32}, {chunkSize: 48}, {chunkSize: 4096},
		{chunkSize: 16, randomNonce: true}, {chunkSize: 64 << 10, randomNonce: true},
	}
	for _, opts := range tests {
		for _, aadLen := range []int{0, 1, 16, 33, 100} {
			t.Run(fmt.Sprintf("chunk%d/random%v/aad%d", opts.chunkSize, opts.randomNonce, aadLen), func(t *testing.T) {
				for size := 0; size <= 130; size++ {
					key, nonce := fill(r, 16+8*r.IntN(3)), fill(r, NonceSize)
					checkEquivalence(t, r, key, nonce, 12+r.IntN(5), fill(r, aadLen), fill(r, size), opts)
				}
				key, nonce := fill(r, 32), fill(r, NonceSize)
				checkEquivalence(t, r, key, nonce, 16, fill(r, aadLen), fill(r, 5000), opts)
			})
		}
	}
}

func TestTamperDetection(t *testing.T) {
	r := rand.New(rand.NewPCG(50, 60))
	key, nonce := fill(r, 32), fill(r, NonceSize)
	aad := []byte("authenticated attributes")
	pt := fill(r, 100<<10+7)
	for _, tagLen := range []int{12, 16} {
		ct, tag := reference(t, key, nonce, tagLen, aad, pt)
		flip := func(b []byte, i int) []byte {
			b = bytes.Clone(b)
			b[i] ^= 0x04
			return b
		}
		otherKey := flip(key, 0)
		otherNonce := flip(nonce, 11)
		tests := []struct {
			name           string
			key, nonce     []byte
			ct, aad, tag   []byte
			wantAuthFailed bool
		}{
			{"untouched", key, nonce, ct, aad, tag, false},
			{"first ciphertext byte", key, nonce, flip(ct, 0), aad, tag, true},
			{"ciphertext byte in second chunk", key, nonce, flip(ct, 70000), aad, tag, true},
			{"last ciphertext byte", key, nonce, flip(ct, len(ct)-1), aad, tag, true},
			{"truncated ciphertext", key, nonce, ct[:len(ct)-1], aad, tag, true},
			{"ciphertext cut at a chunk", key, nonce, ct[:64<<10], aad, tag, true},
			{"extra ciphertext byte", key, nonce, append(bytes.Clone(ct), 0), aad, tag, true},
			{"first tag byte", key, nonce, ct, aad, flip(tag, 0), true},
			{"last tag byte", key, nonce, ct, aad, flip(tag, tagLen-1), true},
			{"short tag", key, nonce, ct, aad, tag[:tagLen-1], true},
			{"long tag", key, nonce, ct, aad, append(bytes.Clone(tag), 0), true},
			{"no tag", key, nonce, ct, aad, nil, true},
			{"changed AAD", key, nonce, ct, flip(aad, 3), tag, true},
			{"missing AAD", key, nonce, ct, nil, tag, true},
			{"longer AAD", key, nonce, ct, append(bytes.Clone(aad), 0), tag, true},
			{"AAD and ciphertext swapped", key, nonce, aad, ct, tag, true},
			{"wrong key", otherKey, nonce, ct, aad, tag, true},
			{"wrong nonce", key, otherNonce, ct, aad, tag, true},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("tag%d/%s", tagLen, tc.name), func(t *testing.T) {
				v, err := NewTagVerifier(tc.key, tc.nonce, tagLen)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range split(r, tc.ct, defaultChunkSize) {
					if _, err := v.Write(p); err != nil {
						t.Fatal(err)
					}
				}
				err = v.Verify(tc.aad, tc.tag)
				if tc.wantAuthFailed != errors.Is(err, ErrAuthentication) || (!tc.wantAuthFailed && err != nil) {
					t.Errorf("Verify = %v, want authentication failure %v", err, tc.wantAuthFailed)
				}
			})
		}
	}
}

// TestVerifyAgain checks that Verify can be repeated with other inputs and
// that nil and empty AAD are the same thing, as in GCM.
func TestVerifyAgain(t *testing.T) {
	key, nonce := make([]byte, 16), make([]byte, NonceSize)
	ct, tag := reference(t, key, nonce, 16, nil, []byte("hello"))
	v, err := NewTagVerifier(key, nonce, 16)
	if err != nil {
		t.Fatal(err)
	}
	v.Write(ct)
	if err := v.Verify([]byte("x"), tag); !errors.Is(err, ErrAuthentication) {
		t.Errorf("wrong AAD: %v", err)
	}
	if err := v.Verify(nil, tag); err != nil {
		t.Errorf("nil AAD: %v", err)
	}
	if err := v.Verify([]byte{}, tag); err != nil {
		t.Errorf("empty AAD: %v", err)
	}
	if _, err := v.Write([]byte{0}); err == nil {
		t.Error("Write after Verify succeeded")
	}
}

func TestConstructorErrors(t *testing.T) {
	key, nonce := make([]byte, 16), make([]byte, NonceSize)
	tests := []struct {
		name   string
		key    []byte
		nonce  []byte
		tagLen int
		noCTR  bool // the case does not apply to NewCTRReader
	}{
		{"empty nonce", key, nil, 12, false},
		{"8-byte nonce", key, make([]byte, 8), 12, false},
		{"11-byte nonce", key, make([]byte, 11), 12, false},
		{"13-byte nonce", key, make([]byte, 13), 12, false},
		{"16-byte nonce", key, make([]byte, 16), 12, false},
		{"128-byte nonce", key, make([]byte, 128), 16, false},
		{"empty key", nil, nonce, 12, false},
		{"15-byte key", make([]byte, 15), nonce, 12, false},
		{"64-byte key", make([]byte, 64), nonce, 12, false},
		{"tag 0", key, nonce, 0, true},
		{"tag 4", key, nonce, 4, true},
		{"tag 11", key, nonce, 11, true},
		{"tag 17", key, nonce, 17, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewSealer(tc.key, tc.nonce, tc.tagLen, nil, io.Discard); err == nil {
				t.Error("NewSealer succeeded")
			}
			if _, err := NewTagVerifier(tc.key, tc.nonce, tc.tagLen); err == nil {
				t.Error("NewTagVerifier succeeded")
			}
			if _, err := NewCTRReader(tc.key, tc.nonce, bytes.NewReader(nil)); (err == nil) != tc.noCTR {
				t.Errorf("NewCTRReader error = %v", err)
			}
		})
	}
	if _, err := NewSealer(key, nonce, 12, nil, nil); err == nil {
		t.Error("NewSealer with nil writer succeeded")
	}
	if _, err := NewCTRReader(key, nonce, nil); err == nil {
		t.Error("NewCTRReader with nil reader succeeded")
	}
}

// failingWriter accepts budget bytes, then fails with err, or with a short
// write if err is nil.
type failingWriter struct {
	budget int
	err    error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.budget {
		w.budget -= len(p)
		return len(p), nil
	}
	n := w.budget
	w.budget = 0
	return n, w.err
}

func TestSealerWriterErrors(t *testing.T) {
	errDiskFull := errors.New("disk full")
	tests := []struct {
		name string
		w    *failingWriter
		want error
	}{
		{"error", &failingWriter{budget: 100, err: errDiskFull}, errDiskFull},
		{"short write", &failingWriter{budget: 100}, io.ErrShortWrite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSealer(make([]byte, 16), make([]byte, 12), 16, nil, tc.w)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := s.Write(make([]byte, 60)); n != 60 || err != nil {
				t.Fatalf("first Write = %d, %v", n, err)
			}
			n, err := s.Write(make([]byte, 60))
			if n != 40 || !errors.Is(err, tc.want) {
				t.Fatalf("second Write = %d, %v; want 40, %v", n, err, tc.want)
			}
			if _, err := s.Write([]byte{1}); !errors.Is(err, tc.want) {
				t.Errorf("Write after failure: %v", err)
			}
			if err := s.Close(); !errors.Is(err, tc.want) {
				t.Errorf("Close after failure: %v", err)
			}
			if s.Tag() != nil {
				t.Error("Tag after failure is not nil")
			}
		})
	}
}

func TestSealerClose(t *testing.T) {
	key, nonce := make([]byte, 24), make([]byte, 12)
	_, want := reference(t, key, nonce, 12, []byte("a"), []byte("plain"))
	s, err := NewSealer(key, nonce, 12, []byte("a"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("pla"))
	s.Write(nil)
	s.Write([]byte("in"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	tag := s.Tag()
	if !bytes.Equal(tag, want) {
		t.Errorf("Tag = %x, want %x", tag, want)
	}
	tag[0] ^= 1
	if !bytes.Equal(s.Tag(), want) {
		t.Error("Tag returned its internal buffer")
	}
	if _, err := s.Write([]byte("more")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

// TestTooLarge fakes the byte counters just below the GCM limit.
func TestTooLarge(t *testing.T) {
	key, nonce := make([]byte, 16), make([]byte, 12)
	tests := []struct {
		name  string
		write func(already uint64, p []byte) (int, error)
	}{
		{"Sealer", func(already uint64, p []byte) (int, error) {
			s, err := NewSealer(key, nonce, 16, nil, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			s.n = already
			return s.Write(p)
		}},
		{"TagVerifier", func(already uint64, p []byte) (int, error) {
			v, err := NewTagVerifier(key, nonce, 16)
			if err != nil {
				t.Fatal(err)
			}
			v.n = already
			return v.Write(p)
		}},
		{"CTRReader", func(already uint64, p []byte) (int, error) {
			r, err := NewCTRReader(key, nonce, bytes.NewReader(p))
			if err != nil {
				t.Fatal(err)
			}
			r.(*ctrReader).n = already
			return io.ReadFull(r, make([]byte, len(p)))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.write(MaxDataSize-10, make([]byte, 10)); err != nil {
				t.Errorf("writing up to the limit: %v", err)
			}
			if _, err := tc.write(MaxDataSize-10, make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("writing past the limit: %v, want ErrTooLarge", err)
			}
			if _, err := tc.write(MaxDataSize, []byte{0}); !errors.Is(err, ErrTooLarge) {
				t.Errorf("writing at the limit: %v, want ErrTooLarge", err)
			}
		})
	}
}

func TestCTRReader(t *testing.T) {
	r := rand.New(rand.NewPCG(70, 80))
	key, nonce := fill(r, 32), fill(r, NonceSize)
	pt := fill(r, 70000)
	ct, _ := reference(t, key, nonce, 16, nil, pt)
	tests := []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"plain", func(r io.Reader) io.Reader { return r }},
		{"one byte at a time", iotest.OneByteReader},
		{"half reads", iotest.HalfReader},
		{"data with EOF", iotest.DataErrReader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cr, err := NewCTRReader(key, nonce, tc.wrap(bytes.NewReader(ct)))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(cr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, pt) {
				t.Error("wrong plaintext")
			}
		})
	}
	errRead := errors.New("read failed")
	cr, err := NewCTRReader(key, nonce, iotest.ErrReader(errRead))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cr.Read(make([]byte, 4)); !errors.Is(err, errRead) {
		t.Errorf("read error not passed on: %v", err)
	}
}

// FuzzGCMStream checks Sealer, TagVerifier and the CTR reader against
// crypto/cipher for arbitrary data, additional data, parameters and write
// chunking. params selects the key size, tag size, internal chunk size, the
// GHASH path and the seed of the write chunking.
func FuzzGCMStream(f *testing.F) {
	f.Add([]byte("hello, world"), []byte(""), uint64(0))
	f.Add(bytes.Repeat([]byte{0xaa}, 100), []byte("attrs"), uint64(0x1234))
	f.Fuzz(func(t *testing.T, data, aad []byte, params uint64) {
		keyLen := 16 + 8*int(params%3)
		tagLen := 12 + int(params>>2%5)
		chunkSize := 16 * (1 + int(params>>5%8))
		if params>>8&1 == 1 {
			chunkSize = defaultChunkSize
		}
		opts := options{chunkSize: chunkSize, randomNonce: params>>9&1 == 1}
		r := rand.New(rand.NewPCG(params, uint64(len(data))))
		key, nonce := fill(r, keyLen), fill(r, NonceSize)
		checkEquivalence(t, r, key, nonce, tagLen, aad, data, opts)
		// Any change of a ciphertext bit must be detected.
		ct, tag := reference(t, key, nonce, tagLen, aad, data)
		if len(ct) > 0 {
			i := r.IntN(8 * len(ct))
			ct[i/8] ^= 1 << (i % 8)
			if err := streamVerify(t, key, nonce, tagLen, aad, split(r, ct, chunkSize), tag, opts); !errors.Is(err, ErrAuthentication) {
				t.Fatalf("flipped ciphertext bit %d: %v", i, err)
			}
		}
	})
}

const benchSize = 25 << 20

func benchInputs() (key, nonce, aad, pt []byte) {
	r := rand.New(rand.NewPCG(1, 1))
	return fill(r, 32), fill(r, NonceSize), []byte("authenticated attributes"), fill(r, benchSize)
}

// writeAll writes data in 32 KiB pieces, as io.Copy would.
func writeAll(b *testing.B, w io.Writer, data []byte) {
	for len(data) > 0 {
		n := min(len(data), 32<<10)
		if _, err := w.Write(data[:n]); err != nil {
			b.Fatal(err)
		}
		data = data[n:]
	}
}

func BenchmarkSealer(b *testing.B) {
	key, nonce, aad, pt := benchInputs()
	b.Run("gcmstream", func(b *testing.B) {
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			s, err := NewSealer(key, nonce, 12, aad, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			writeAll(b, s, pt)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cipher.AEAD.Seal", func(b *testing.B) {
		block, _ := aes.NewCipher(key)
		aead, _ := cipher.NewGCMWithTagSize(block, 12)
		dst := make([]byte, 0, benchSize+16)
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			aead.Seal(dst[:0], nonce, pt, aad)
		}
	})
}

func BenchmarkTagVerifier(b *testing.B) {
	key, nonce, aad, pt := benchInputs()
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCMWithTagSize(block, 12)
	sealed := aead.Seal(nil, nonce, pt, aad)
	ct, tag := sealed[:benchSize], sealed[benchSize:]
	b.Run("gcmstream", func(b *testing.B) {
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			v, err := NewTagVerifier(key, nonce, 12)
			if err != nil {
				b.Fatal(err)
			}
			writeAll(b, v, ct)
			if err := v.Verify(aad, tag); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gcmstream+CTRReader", func(b *testing.B) {
		buf := make([]byte, 32<<10)
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			v, err := NewTagVerifier(key, nonce, 12)
			if err != nil {
				b.Fatal(err)
			}
			writeAll(b, v, ct)
			if err := v.Verify(aad, tag); err != nil {
				b.Fatal(err)
			}
			r, err := NewCTRReader(key, nonce, bytes.NewReader(ct))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cipher.AEAD.Open", func(b *testing.B) {
		dst := make([]byte, 0, benchSize)
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := aead.Open(dst[:0], nonce, sealed, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}
