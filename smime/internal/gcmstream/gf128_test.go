package gcmstream

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
)

func elem(t *testing.T, s string) fieldElement {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		t.Fatalf("bad element %q", s)
	}
	return loadElement(b)
}

func (x fieldElement) String() string {
	var b [16]byte
	x.store(b[:])
	return hex.EncodeToString(b[:])
}

func randElement(r *rand.Rand) fieldElement {
	return fieldElement{hi: r.Uint64(), lo: r.Uint64()}
}

func TestMulKnownAnswers(t *testing.T) {
	const (
		zero = "00000000000000000000000000000000"
		one  = "80000000000000000000000000000000"
		x1   = "40000000000000000000000000000000" // the polynomial x
		x2   = "20000000000000000000000000000000" // x^2
		x127 = "00000000000000000000000000000001" // x^127
		x128 = "e1000000000000000000000000000000" // x^128 = 1 + x + x^2 + x^7
		x129 = "70800000000000000000000000000000" // x + x^2 + x^3 + x^8
		// GCM spec (McGrew and Viega) test case 2: H, C1 and X1 = C1·H.
		h  = "66e94bd4ef8a2c3b884cfa59ca342b2e"
		c1 = "0388dace60b6a392f328c2b971b2fe78"
		X1 = "5e2ec746917062882c85b0685353deb7"
	)
	tests := []struct {
		name    string
		a, b, w string
	}{
		{"0·0", zero, zero, zero},
		{"1·1", one, one, one},
		{"1·H", one, h, h},
		{"H·0", h, zero, zero},
		{"x·x", x1, x1, x2},
		{"x·x^127", x1, x127, x128},
		{"x^127·x", x127, x1, x128},
		{"x^2·x^127", x2, x127, x129},
		// x^254 = x^126·x^128 = 1 + x + x^2 + x^5 + x^6 + x^12 + x^126 + x^127.
		{"x^127·x^127", x127, x127, "e6080000000000000000000000000003"},
		{"C1·H (GCM test case 2)", c1, h, X1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := elem(t, tc.a).mul(elem(t, tc.b)); got != elem(t, tc.w) {
				t.Errorf("%s · %s = %v, want %s", tc.a, tc.b, got, tc.w)
			}
		})
	}
}

func TestMulProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		a, b, c := randElement(r), randElement(r), randElement(r)
		if a.mul(b) != b.mul(a) {
			t.Fatalf("not commutative: %v, %v", a, b)
		}
		if a.mul(b).mul(c) != a.mul(b.mul(c)) {
			t.Fatalf("not associative: %v, %v, %v", a, b, c)
		}
		if a.mul(b.add(c)) != a.mul(b).add(a.mul(c)) {
			t.Fatalf("not distributive: %v, %v, %v", a, b, c)
		}
		if a.mul(gfOne()) != a {
			t.Fatalf("1 is not the identity for %v", a)
		}
	}
}

func TestPow(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20; i++ {
		x := randElement(r)
		tests := []struct {
			a, b uint64
		}{
			{0, 0}, {0, 1}, {1, 1}, {2, 3}, {4096, 1}, {4095, 4097},
			{1<<32 - 2, 5}, {r.Uint64() >> 1, r.Uint64() >> 1},
		}
		for _, tc := range tests {
			if got, want := x.pow(tc.a+tc.b), x.pow(tc.a).mul(x.pow(tc.b)); got != want {
				t.Errorf("x=%v: x^(%d+%d) = %v, want x^%d·x^%d = %v", x, tc.a, tc.b, got, tc.a, tc.b, want)
			}
		}
		if x.pow(0) != gfOne() || x.pow(1) != x || x.pow(2) != x.mul(x) {
			t.Errorf("x=%v: wrong small powers", x)
		}
		// Frobenius: x^(2^128) = x for every element of GF(2^128).
		y := x
		for j := 0; j < 128; j++ {
			y = y.mul(y)
		}
		if y != x {
			t.Errorf("x=%v: x^(2^128) = %v", x, y)
		}
	}
	if got := (fieldElement{}).pow(7); got != (fieldElement{}) {
		t.Errorf("0^7 = %v", got)
	}
}

// TestMulMatchesCryptoCipher uses crypto/cipher's GCM as an oracle: sealing
// nothing with a single block X of additional data gives
// T = E_K(J0) + (X·H + L)·H with L the length block for 128 bits.
func TestMulMatchesCryptoCipher(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, keyLen := range []int{16, 24, 32} {
		for i := 0; i < 30; i++ {
			t.Run(fmt.Sprintf("AES-%d/%d", keyLen*8, i), func(t *testing.T) {
				key := make([]byte, keyLen)
				nonce := make([]byte, 12)
				x := make([]byte, 16)
				for _, b := range [][]byte{key, nonce, x} {
					for j := range b {
						b[j] = byte(r.Uint32())
					}
				}
				block, err := aes.NewCipher(key)
				if err != nil {
					t.Fatal(err)
				}
				aead, err := cipher.NewGCM(block)
				if err != nil {
					t.Fatal(err)
				}
				tag := loadElement(aead.Seal(nil, nonce, nil, x))
				var hb, j0 [16]byte
				block.Encrypt(hb[:], hb[:])
				copy(j0[:], nonce)
				j0[15] = 1
				block.Encrypt(j0[:], j0[:])
				h := loadElement(hb[:])
				got := loadElement(x).mul(h).add(lengthBlock(16, 0)).mul(h).add(loadElement(j0[:]))
				if got != tag {
					t.Errorf("software GHASH tag %v, crypto/cipher %v", got, tag)
				}
			})
		}
	}
}

// TestGCMTestCase2 checks the full tag of GCM spec test case 2 (K = 0^128,
// IV = 0^96, P = 0^128) from the published intermediate values.
func TestGCMTestCase2(t *testing.T) {
	h := elem(t, "66e94bd4ef8a2c3b884cfa59ca342b2e")
	c := elem(t, "0388dace60b6a392f328c2b971b2fe78")
	ey0 := elem(t, "58e2fccefa7e3061367f1d57a4e7455a")
	want := elem(t, "ab6e47d42cec13bdf53a67b21257bddf")
	if got := c.mul(h).add(lengthBlock(0, 16)).mul(h).add(ey0); got != want {
		t.Errorf("tag = %v, want %v", got, want)
	}
}
