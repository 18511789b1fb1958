// Package gcmstream implements AES-GCM (NIST SP 800-38D) as a stream, for
// CMS AuthEnvelopedData (RFC 5083, RFC 5084): a message of any size up to the
// GCM limit is encrypted or authenticated in constant memory, at the speed of
// the assembly AES-CTR and GHASH code in the standard library. The output is
// bit-for-bit what crypto/cipher's whole-buffer GCM produces.
//
// Only 12-byte nonces (the RFC 5084 GCMParameters default) are supported, and
// tags of 12 to 16 bytes.
//
// # Construction
//
// With a 12-byte nonce, J0 = nonce || 00000001 and the data is encrypted with
// AES-CTR from inc32(J0). crypto/cipher's CTR increments the whole 128-bit
// counter block while GCM increments only its low 32 bits; the two agree for
// messages of up to 2^32-2 blocks, which is GCM's own length limit and is
// enforced here (ErrTooLarge).
//
// GHASH is obtained from crypto/cipher's GCM itself. Below, + is addition in
// GF(2^128), that is XOR, and · is GCM's field multiplication. Sealing an empty
// plaintext with additional data X gives T = E_K(J0) + GHASH_H(pad(X) || L_X)
// where L_X is the length block of X, so
//
//	R(X) = GHASH_H(pad(X)) · H = T + E_K(J0) + L_X · H
//
// with E_K(J0) and H = E_K(0^128) computed directly. Since
// GHASH_H(pad(X) || Y) = GHASH_H(pad(X)) · H^m + GHASH_H(Y) for Y of m
// blocks, the values combine chunk by chunk as R(X || Y) = R(X) · H^m + R(Y),
// and the tag of a message with additional data A and ciphertext C is
//
//	T = E_K(J0) + R(A) · H^m(C) + R(C) + L · H
//
// with L = [len(A)]64 || [len(C)]64 in bits. The only software GF(2^128)
// multiplications are a few per 64 KiB chunk. Working with R = GHASH·H rather
// than GHASH itself means H never has to be inverted, so H = 0 needs no
// special case.
//
// When the Go FIPS 140-only mode forbids caller-chosen GCM nonces, the
// package takes GHASH from the random-nonce GCM instead, reading the nonce it
// chose from its output; the encryption itself is plain AES-CTR either way.
//
// Sealer, TagVerifier and the reader from NewCTRReader are not safe for
// concurrent use.
package gcmstream

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// ErrAuthentication is returned, wrapped, by TagVerifier.Verify when the tag
// does not match the ciphertext and additional data.
var ErrAuthentication = errors.New("gcmstream: message authentication failed")

// ErrTooLarge is returned, wrapped, when the data exceeds the GCM limit of
// 2^32-2 blocks (64 GiB - 32 bytes) of ciphertext, or the additional data
// exceeds 2^61-1 bytes.
var ErrTooLarge = errors.New("gcmstream: message too large for GCM")

// NonceSize is the only supported nonce length in bytes.
const NonceSize = 12

// MinTagSize is the shortest supported tag length in bytes.
const MinTagSize = 12

// MaxTagSize is the longest supported tag length in bytes.
const MaxTagSize = 16

// MaxDataSize is the largest ciphertext, in bytes, that GCM allows: 2^32-2
// blocks, 64 GiB - 32 bytes.
const MaxDataSize uint64 = (1<<32 - 2) * blockSize

const (
	blockSize        = 16
	defaultChunkSize = 64 << 10
	maxAADSize       = 1<<61 - 1
)

// options are internal tuning knobs; tests use them to exercise chunk
// boundaries with small inputs and the FIPS fallback path.
type options struct {
	chunkSize   int  // a positive multiple of blockSize
	randomNonce bool // take GHASH from the random-nonce GCM
}

func defaultOptions() options { return options{chunkSize: defaultChunkSize} }

// hasher computes R(X) = GHASH_H(pad(X))·H values for one key and nonce.
type hasher struct {
	block       cipher.Block
	aead        cipher.AEAD // GCM with 16-byte tags, used for GHASH only
	randomNonce bool        // aead is the random-nonce GCM
	nonce       [NonceSize]byte
	ej0         fieldElement // E_K(J0)
	h           fieldElement // H = E_K(0^128)
	chunkSize   int
	hChunk      fieldElement // H^(chunkSize/16)
	lhChunk     fieldElement // L · H for a chunkSize-byte X
	scratch     [NonceSize + blockSize]byte
}

func newHasher(key, nonce []byte, opts options) (*hasher, error) {
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("gcmstream: nonce is %d bytes; only %d-byte GCM nonces are supported", len(nonce), NonceSize)
	}
	if opts.chunkSize <= 0 || opts.chunkSize%blockSize != 0 {
		return nil, fmt.Errorf("gcmstream: internal chunk size %d is not a positive multiple of %d", opts.chunkSize, blockSize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("gcmstream: %w", err)
	}
	g := &hasher{block: block, randomNonce: opts.randomNonce, chunkSize: opts.chunkSize}
	if !g.randomNonce {
		g.aead, err = cipher.NewGCM(block)
		if err != nil {
			// FIPS 140-only mode refuses caller-chosen nonces.
			g.randomNonce = true
		}
	}
	if g.randomNonce {
		g.aead, err = cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("gcmstream: %w", err)
		}
	}
	copy(g.nonce[:], nonce)

	var b [blockSize]byte
	block.Encrypt(b[:], b[:])
	g.h = loadElement(b[:])
	g.ej0 = g.encryptJ0(g.nonce[:])
	g.hChunk = g.h.pow(uint64(g.chunkSize / blockSize))
	g.lhChunk = lengthBlock(uint64(g.chunkSize), 0).mul(g.h)
	clear(b[:])
	return g, nil
}

// encryptJ0 returns E_K(nonce || 00000001).
func (g *hasher) encryptJ0(nonce []byte) fieldElement {
	var j0 [blockSize]byte
	copy(j0[:], nonce)
	j0[blockSize-1] = 1
	g.block.Encrypt(j0[:], j0[:])
	x := loadElement(j0[:])
	clear(j0[:])
	return x
}

// sum returns R(x) = GHASH_H(pad(x))·H for a non-empty x of at most
// chunkSize bytes.
func (g *hasher) sum(x []byte) fieldElement {
	var t, ej0 fieldElement
	if g.randomNonce {
		out := g.aead.Seal(g.scratch[:0], nil, nil, x)
		t = loadElement(out[NonceSize:])
		ej0 = g.encryptJ0(out[:NonceSize])
	} else {
		out := g.aead.Seal(g.scratch[:0], g.nonce[:], nil, x)
		t = loadElement(out)
		ej0 = g.ej0
	}
	lh := g.lhChunk
	if len(x) != g.chunkSize {
		lh = lengthBlock(uint64(len(x)), 0).mul(g.h)
	}
	return t.add(ej0).add(lh)
}

// absorb returns R(X || x) given acc = R(X), for X a whole number of blocks
// and x of at most chunkSize bytes.
func (g *hasher) absorb(acc fieldElement, x []byte) fieldElement {
	if len(x) == 0 {
		return acc
	}
	hm := g.hChunk
	if len(x) != g.chunkSize {
		hm = g.h.pow(blocks(uint64(len(x))))
	}
	return acc.mul(hm).add(g.sum(x))
}

// absorbAll is absorb for an x of any length.
func (g *hasher) absorbAll(acc fieldElement, x []byte) fieldElement {
	for len(x) > g.chunkSize {
		acc = g.absorb(acc, x[:g.chunkSize])
		x = x[g.chunkSize:]
	}
	return g.absorb(acc, x)
}

// tag returns the full 16-byte GCM tag for additional data with R value ra
// and length aLen, and ciphertext with R value rc and length cLen.
func (g *hasher) tag(ra fieldElement, aLen uint64, rc fieldElement, cLen uint64) [blockSize]byte {
	s := ra.mul(g.h.pow(blocks(cLen))).add(rc).add(lengthBlock(aLen, cLen).mul(g.h))
	var t [blockSize]byte
	s.add(g.ej0).store(t[:])
	return t
}

// blocks returns the number of 16-byte blocks in n bytes, rounding up.
func blocks(n uint64) uint64 { return (n + blockSize - 1) / blockSize }

// newCTR returns the GCM keystream for the data: AES-CTR from inc32(J0).
func newCTR(block cipher.Block, nonce []byte) cipher.Stream {
	var iv [blockSize]byte
	copy(iv[:], nonce)
	iv[blockSize-1] = 2
	return cipher.NewCTR(block, iv[:])
}

func checkTagLen(tagLen int) error {
	if tagLen < MinTagSize || tagLen > MaxTagSize {
		return fmt.Errorf("gcmstream: tag length %d out of range %d..%d", tagLen, MinTagSize, MaxTagSize)
	}
	return nil
}

// Sealer encrypts a stream with AES-GCM. Write encrypts and passes the
// ciphertext on to the underlying writer; Close completes the tag, which Tag
// then returns. A Sealer holds one 64 KiB buffer whatever the message size.
type Sealer struct {
	g      *hasher
	ctr    cipher.Stream
	w      io.Writer
	tagLen int
	ra     fieldElement // R(A)
	aLen   uint64
	rc     fieldElement // R of the ciphertext hashed so far
	n      uint64       // ciphertext bytes written
	buf    []byte       // ciphertext of the current chunk, not yet hashed
	tag    []byte
	err    error
	closed bool
}

// NewSealer returns a Sealer that encrypts with key (16, 24 or 32 bytes) and
// the 12-byte nonce, authenticates aad as GCM additional data, and writes
// the ciphertext to w. tagLen is the tag length in bytes, 12 to 16 (CMS uses
// 12 by default). The caller must never reuse a key and nonce pair.
func NewSealer(key, nonce []byte, tagLen int, aad []byte, w io.Writer) (*Sealer, error) {
	return newSealer(key, nonce, tagLen, aad, w, defaultOptions())
}

func newSealer(key, nonce []byte, tagLen int, aad []byte, w io.Writer, opts options) (*Sealer, error) {
	if err := checkTagLen(tagLen); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, errors.New("gcmstream: nil writer")
	}
	if uint64(len(aad)) > maxAADSize {
		return nil, fmt.Errorf("gcmstream: %d bytes of additional data: %w", len(aad), ErrTooLarge)
	}
	g, err := newHasher(key, nonce, opts)
	if err != nil {
		return nil, err
	}
	return &Sealer{
		g:      g,
		ctr:    newCTR(g.block, nonce),
		w:      w,
		tagLen: tagLen,
		ra:     g.absorbAll(fieldElement{}, aad),
		aLen:   uint64(len(aad)),
		buf:    make([]byte, 0, opts.chunkSize),
	}, nil
}

// Write encrypts p and writes the ciphertext to the underlying writer. After
// an error from the underlying writer, the Sealer is unusable and every
// further call returns that error.
func (s *Sealer) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.closed {
		return 0, errors.New("gcmstream: Write after Close")
	}
	if uint64(len(p)) > MaxDataSize-s.n {
		return 0, fmt.Errorf("gcmstream: encrypting more than %d bytes: %w", MaxDataSize, ErrTooLarge)
	}
	written := 0
	for len(p) > 0 {
		start := len(s.buf)
		k := min(len(p), cap(s.buf)-start)
		s.buf = s.buf[:start+k]
		ct := s.buf[start:]
		s.ctr.XORKeyStream(ct, p[:k])
		s.n += uint64(k)
		if m, err := s.w.Write(ct); err != nil || m != k {
			if err == nil {
				err = io.ErrShortWrite
			}
			s.err = fmt.Errorf("gcmstream: writing ciphertext: %w", err)
			return written + m, s.err
		}
		written += k
		p = p[k:]
		if len(s.buf) == cap(s.buf) {
			s.rc = s.g.absorb(s.rc, s.buf)
			s.buf = s.buf[:0]
		}
	}
	return written, nil
}

// Close completes the tag. It does not close the underlying writer. Calling
// Close again has no effect.
func (s *Sealer) Close() error {
	if s.closed {
		return s.err
	}
	s.closed = true
	if s.err != nil {
		return s.err
	}
	s.rc = s.g.absorb(s.rc, s.buf)
	s.buf = nil
	full := s.g.tag(s.ra, s.aLen, s.rc, s.n)
	s.tag = append([]byte(nil), full[:s.tagLen]...)
	return nil
}

// Tag returns a copy of the authentication tag, tagLen bytes long, or nil
// before a successful Close.
func (s *Sealer) Tag() []byte {
	if s.tag == nil {
		return nil
	}
	return append([]byte(nil), s.tag...)
}

// TagVerifier checks the GCM tag of a ciphertext stream without decrypting
// it. Write it the ciphertext, in order and in pieces of any size, then call
// Verify. A TagVerifier holds one 64 KiB buffer whatever the message size.
type TagVerifier struct {
	g        *hasher
	tagLen   int
	rc       fieldElement
	n        uint64
	buf      []byte
	finished bool
}

// NewTagVerifier returns a TagVerifier for key (16, 24 or 32 bytes), the
// 12-byte nonce and tags of tagLen bytes (12 to 16).
func NewTagVerifier(key, nonce []byte, tagLen int) (*TagVerifier, error) {
	return newTagVerifier(key, nonce, tagLen, defaultOptions())
}

func newTagVerifier(key, nonce []byte, tagLen int, opts options) (*TagVerifier, error) {
	if err := checkTagLen(tagLen); err != nil {
		return nil, err
	}
	g, err := newHasher(key, nonce, opts)
	if err != nil {
		return nil, err
	}
	return &TagVerifier{g: g, tagLen: tagLen, buf: make([]byte, 0, opts.chunkSize)}, nil
}

// Write hashes the next piece of ciphertext. It fails only after Verify or
// beyond the GCM size limit.
func (v *TagVerifier) Write(p []byte) (int, error) {
	if v.finished {
		return 0, errors.New("gcmstream: Write after Verify")
	}
	if uint64(len(p)) > MaxDataSize-v.n {
		return 0, fmt.Errorf("gcmstream: authenticating more than %d bytes: %w", MaxDataSize, ErrTooLarge)
	}
	v.n += uint64(len(p))
	written := len(p)
	chunk := cap(v.buf)
	for len(p) > 0 {
		if len(v.buf) == 0 && len(p) >= chunk {
			// Hash whole chunks straight from p, without copying.
			v.rc = v.g.absorb(v.rc, p[:chunk])
			p = p[chunk:]
			continue
		}
		k := copy(v.buf[len(v.buf):chunk], p)
		v.buf = v.buf[:len(v.buf)+k]
		p = p[k:]
		if len(v.buf) == chunk {
			v.rc = v.g.absorb(v.rc, v.buf)
			v.buf = v.buf[:0]
		}
	}
	return written, nil
}

// Verify checks tag against the ciphertext written so far and aad, the GCM
// additional data; in CMS the authenticated attributes follow the content,
// so they are given here, at the end. It returns nil if the tag is right and
// an error wrapping ErrAuthentication otherwise, including when tag has the
// wrong length. No more ciphertext may be written after Verify, but Verify
// may be called again.
func (v *TagVerifier) Verify(aad, tag []byte) error {
	if !v.finished {
		v.finished = true
		v.rc = v.g.absorb(v.rc, v.buf)
		v.buf = nil
	}
	if len(tag) != v.tagLen {
		return fmt.Errorf("gcmstream: tag is %d bytes, want %d: %w", len(tag), v.tagLen, ErrAuthentication)
	}
	if uint64(len(aad)) > maxAADSize {
		return fmt.Errorf("gcmstream: %d bytes of additional data: %w", len(aad), ErrTooLarge)
	}
	ra := v.g.absorbAll(fieldElement{}, aad)
	want := v.g.tag(ra, uint64(len(aad)), v.rc, v.n)
	ok := subtle.ConstantTimeCompare(want[:v.tagLen], tag) == 1
	clear(want[:])
	if !ok {
		return fmt.Errorf("gcmstream: tag mismatch: %w", ErrAuthentication)
	}
	return nil
}

// NewCTRReader returns a reader that decrypts the GCM ciphertext read from
// r with key (16, 24 or 32 bytes) and the 12-byte nonce. It does not
// authenticate: only use it on ciphertext whose tag a TagVerifier has
// already accepted, for instance by reading a spooled copy a second time.
func NewCTRReader(key, nonce []byte, r io.Reader) (io.Reader, error) {
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("gcmstream: nonce is %d bytes; only %d-byte GCM nonces are supported", len(nonce), NonceSize)
	}
	if r == nil {
		return nil, errors.New("gcmstream: nil reader")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("gcmstream: %w", err)
	}
	return &ctrReader{r: r, ctr: newCTR(block, nonce)}, nil
}

type ctrReader struct {
	r   io.Reader
	ctr cipher.Stream
	n   uint64
	err error
}

func (c *ctrReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	if uint64(n) > MaxDataSize-c.n {
		c.err = fmt.Errorf("gcmstream: decrypting more than %d bytes: %w", MaxDataSize, ErrTooLarge)
		return 0, c.err
	}
	c.ctr.XORKeyStream(p[:n], p[:n])
	c.n += uint64(n)
	return n, err
}
