package gcmstream

import "encoding/binary"

// fieldElement is an element of GF(2^128) in the bit-reflected convention of
// GCM (NIST SP 800-38D section 6.3): the 16-byte block b0..b15 is read as a
// big-endian 128-bit string hi||lo, and its most significant bit (the top bit
// of b0) is the coefficient of x^0. The field polynomial is
// x^128 + x^7 + x^2 + x + 1.
type fieldElement struct {
	hi, lo uint64
}

// gfOne returns the multiplicative identity: the block 80 00 .. 00.
func gfOne() fieldElement { return fieldElement{hi: 1 << 63} }

// gfR is the reduction constant R = 11100001 || 0^120 of SP 800-38D.
const gfR = 0xe1 << 56

// loadElement reads a 16-byte block as a field element.
func loadElement(b []byte) fieldElement {
	return fieldElement{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:16])}
}

// store writes x to the 16-byte block b.
func (x fieldElement) store(b []byte) {
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:16], x.lo)
}

// add returns x + y, which in characteristic 2 is x XOR y.
func (x fieldElement) add(y fieldElement) fieldElement {
	return fieldElement{hi: x.hi ^ y.hi, lo: x.lo ^ y.lo}
}

// mul returns x·y with the shift-and-add algorithm of SP 800-38D section
// 6.3 (algorithm 1). It runs in time independent of the values of x and y:
// H, a secret, is always one of the operands. About a hundred nanoseconds
// per call; the package calls it a few times per 64 KiB chunk only.
func (x fieldElement) mul(y fieldElement) fieldElement {
	var z fieldElement
	v := y
	for _, word := range [2]uint64{x.hi, x.lo} {
		for i := 63; i >= 0; i-- {
			// If bit i of x (taken from x^0 upwards) is set, Z ^= V.
			m := -(word >> uint(i) & 1)
			z.hi ^= v.hi & m
			z.lo ^= v.lo & m
			// V = V·x: a right shift, reduced by R if x^127 fell off.
			carry := -(v.lo & 1)
			v.lo = v.lo>>1 | v.hi<<63
			v.hi = v.hi>>1 ^ gfR&carry
		}
	}
	return z
}

// pow returns x^n by square-and-multiply. n is public (a block count), so its
// bits may steer the computation.
func (x fieldElement) pow(n uint64) fieldElement {
	r := gfOne()
	for ; n > 0; n >>= 1 {
		if n&1 == 1 {
			r = r.mul(x)
		}
		x = x.mul(x)
	}
	return r
}

// lengthBlock returns the GHASH length block [aBits]64 || [cBits]64.
func lengthBlock(aBytes, cBytes uint64) fieldElement {
	return fieldElement{hi: aBytes * 8, lo: cBytes * 8}
}
