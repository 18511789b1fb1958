package keywrap

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestRFC3394Vectors checks the test vectors of RFC 3394 section 4.
func TestRFC3394Vectors(t *testing.T) {
	const (
		kek128 = "000102030405060708090A0B0C0D0E0F"
		kek192 = "000102030405060708090A0B0C0D0E0F1011121314151617"
		kek256 = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
		key128 = "00112233445566778899AABBCCDDEEFF"
		key192 = "00112233445566778899AABBCCDDEEFF0001020304050607"
		key256 = "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F"
	)
	tests := []struct {
		name, kek, key, wrapped string
	}{
		{"4.1 128-bit key, 128-bit KEK", kek128, key128,
			"1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5"},
		{"4.2 128-bit key, 192-bit KEK", kek192, key128,
			"96778B25AE6CA435 F92B5B97C050AED2 468AB8A17AD84E5D"},
		{"4.3 128-bit key, 256-bit KEK", kek256, key128,
			"64E8C3F9CE0F5BA2 63E9777905818A2A 93C8191E7D6E8AE7"},
		{"4.4 192-bit key, 192-bit KEK", kek192, key192,
			"031D33264E15D332 68F24EC260743EDC E1C6C7DDEE725A93 6BA814915C6762D2"},
		{"4.5 192-bit key, 256-bit KEK", kek256, key192,
			"A8F9BC1612C68B3F F6E6F4FBE30E71E4 769C8B80A32CB895 8CD5D17D6B254DA1"},
		{"4.6 256-bit key, 256-bit KEK", kek256, key256,
			"28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kek, key, want := mustHex(t, tc.kek), mustHex(t, tc.key), mustHex(t, tc.wrapped)
			got, err := Wrap(kek, key)
			if err != nil {
				t.Fatalf("Wrap: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Wrap = %X, want %X", got, want)
			}
			back, err := Unwrap(kek, want)
			if err != nil {
				t.Fatalf("Unwrap: %v", err)
			}
			if !bytes.Equal(back, key) {
				t.Errorf("Unwrap = %X, want %X", back, key)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		kekLen, keyLen int
	}{
		{16, 16}, {16, 24}, {16, 32}, {16, 40}, {16, 64},
		{24, 16}, {24, 32}, {24, 1000},
		{32, 16}, {32, 24}, {32, 32}, {32, 4096},
	}
	for _, tc := range tests {
		kek := make([]byte, tc.kekLen)
		key := make([]byte, tc.keyLen)
		rand.Read(kek)
		rand.Read(key)
		wrapped, err := Wrap(kek, key)
		if err != nil {
			t.Fatalf("Wrap(kek %d, key %d): %v", tc.kekLen, tc.keyLen, err)
		}
		if len(wrapped) != tc.keyLen+8 {
			t.Errorf("Wrap(kek %d, key %d): %d bytes, want %d", tc.kekLen, tc.keyLen, len(wrapped), tc.keyLen+8)
		}
		got, err := Unwrap(kek, wrapped)
		if err != nil {
			t.Fatalf("Unwrap(kek %d, key %d): %v", tc.kekLen, tc.keyLen, err)
		}
		if !bytes.Equal(got, key) {
			t.Errorf("Unwrap(kek %d, key %d) did not return the original key", tc.kekLen, tc.keyLen)
		}
	}
}

func TestTampered(t *testing.T) {
	kek := mustHex(t, "000102030405060708090A0B0C0D0E0F1011121314151617")
	wrapped := mustHex(t, "031D33264E15D33268F24EC260743EDCE1C6C7DDEE725A936BA814915C6762D2")
	otherKEK := bytes.Clone(kek)
	otherKEK[23] ^= 1

	tests := []struct {
		name    string
		kek     []byte
		wrapped func() []byte
	}{
		{"first byte (integrity value)", kek, func() []byte { w := bytes.Clone(wrapped); w[0] ^= 0x80; return w }},
		{"middle byte", kek, func() []byte { w := bytes.Clone(wrapped); w[13] ^= 0x01; return w }},
		{"last byte", kek, func() []byte { w := bytes.Clone(wrapped); w[len(w)-1] ^= 0x10; return w }},
		{"blocks swapped", kek, func() []byte {
			w := bytes.Clone(wrapped)
			copy(w[8:16], wrapped[16:24])
			copy(w[16:24], wrapped[8:16])
			return w
		}},
		{"wrong KEK", otherKEK, func() []byte { return bytes.Clone(wrapped) }},
		{"all zero", kek, func() []byte { return make([]byte, len(wrapped)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Unwrap(tc.kek, tc.wrapped())
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("Unwrap error = %v, want ErrIntegrity", err)
			}
			if got != nil {
				t.Errorf("Unwrap returned key data %X alongside an error", got)
			}
		})
	}
}

func TestBadLengths(t *testing.T) {
	kek16 := make([]byte, 16)
	tests := []struct {
		name   string
		kek    []byte
		data   []byte
		unwrap bool
	}{
		{"wrap empty key", kek16, nil, false},
		{"wrap 8-byte key", kek16, make([]byte, 8), false},
		{"wrap 15-byte key", kek16, make([]byte, 15), false},
		{"wrap 17-byte key", kek16, make([]byte, 17), false},
		{"wrap 20-byte key", kek16, make([]byte, 20), false},
		{"wrap with 15-byte KEK", make([]byte, 15), make([]byte, 16), false},
		{"wrap with 20-byte KEK", make([]byte, 20), make([]byte, 16), false},
		{"wrap with empty KEK", nil, make([]byte, 16), false},
		{"unwrap empty", kek16, nil, true},
		{"unwrap 16 bytes", kek16, make([]byte, 16), true},
		{"unwrap 23 bytes", kek16, make([]byte, 23), true},
		{"unwrap 25 bytes", kek16, make([]byte, 25), true},
		{"unwrap with 33-byte KEK", make([]byte, 33), make([]byte, 24), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.unwrap {
				_, err = Unwrap(tc.kek, tc.data)
			} else {
				_, err = Wrap(tc.kek, tc.data)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrIntegrity) {
				t.Errorf("length error %v must not be ErrIntegrity", err)
			}
		})
	}
}

func TestWrapDoesNotModifyInput(t *testing.T) {
	kek := make([]byte, 32)
	key := []byte("0123456789abcdef01234567")
	orig := bytes.Clone(key)
	wrapped, err := Wrap(kek, key)
	if err != nil {
		t.Fatal(err)
	}
	origWrapped := bytes.Clone(wrapped)
	if _, err := Unwrap(kek, wrapped); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, orig) || !bytes.Equal(wrapped, origWrapped) {
		t.Error("Wrap or Unwrap modified its input")
	}
}

// FuzzUnwrap checks that Unwrap never panics, and that whatever Wrap accepts
// unwraps to the original key while any single-bit change is detected.
func FuzzUnwrap(f *testing.F) {
	f.Add(make([]byte, 16), make([]byte, 24), uint16(0))
	f.Add(make([]byte, 32), []byte("0123456789abcdef0123456789abcdef"), uint16(77))
	f.Fuzz(func(t *testing.T, kek, data []byte, flip uint16) {
		// Arbitrary input to Unwrap: an error or a key, never a panic.
		if key, err := Unwrap(kek, data); err == nil && len(key) != len(data)-8 {
			t.Fatalf("Unwrap returned %d bytes from %d", len(key), len(data))
		}
		wrapped, err := Wrap(kek, data)
		if err != nil {
			return
		}
		got, err := Unwrap(kek, wrapped)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip failed: %v", err)
		}
		bit := int(flip) % (8 * len(wrapped))
		wrapped[bit/8] ^= 1 << (bit % 8)
		if _, err := Unwrap(kek, wrapped); !errors.Is(err, ErrIntegrity) {
			t.Fatalf("flipped bit %d: error %v, want ErrIntegrity", bit, err)
		}
	})
}
