package cms

import (
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
)

// cbcChunk is how much content the CBC writer and reader process at once.
// It is a multiple of every block size.
const cbcChunk = 64 << 10

// cbcWriter encrypts a stream in CBC mode with PKCS #7 padding (RFC 5652
// §6.3) and writes the ciphertext to w in chunks.
type cbcWriter struct {
	mode   cipher.BlockMode
	w      io.Writer
	buf    []byte // plaintext not yet encrypted; cap cbcChunk+block size
	closed bool
	err    error
}

func newCBCWriter(mode cipher.BlockMode, w io.Writer) *cbcWriter {
	return &cbcWriter{mode: mode, w: w, buf: make([]byte, 0, cbcChunk+mode.BlockSize())}
}

func (c *cbcWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.closed {
		return 0, errors.New("cms: write after Close")
	}
	n := 0
	for len(p) > 0 {
		k := copy(c.buf[len(c.buf):cbcChunk], p)
		c.buf = c.buf[:len(c.buf)+k]
		p = p[k:]
		n += k
		if len(c.buf) == cbcChunk {
			c.mode.CryptBlocks(c.buf, c.buf)
			if _, err := c.w.Write(c.buf); err != nil {
				c.err = fmt.Errorf("cms: writing the message: %w", err)
				return n, c.err
			}
			c.buf = c.buf[:0]
		}
	}
	return n, nil
}

// Close pads and encrypts the last block. It does not close w.
func (c *cbcWriter) Close() error {
	if c.closed || c.err != nil {
		return c.err
	}
	c.closed = true
	bs := c.mode.BlockSize()
	pad := bs - len(c.buf)%bs
	for i := 0; i < pad; i++ {
		c.buf = append(c.buf, byte(pad))
	}
	c.mode.CryptBlocks(c.buf, c.buf)
	if _, err := c.w.Write(c.buf); err != nil {
		c.err = fmt.Errorf("cms: writing the message: %w", err)
	}
	clear(c.buf[:cap(c.buf)])
	return c.err
}

// cbcReader decrypts a CBC ciphertext stream. It holds back the last block
// until the ciphertext ends, then checks and strips the padding and runs
// finish (the parse of the rest of the message) before releasing the last
// chunk of plaintext and returning io.EOF.
type cbcReader struct {
	src    io.Reader
	mode   cipher.BlockMode
	finish func() error
	buf    []byte
	n      int // bytes in buf
	pOff   int // buf[pOff:pEnd] is plaintext ready to be read
	pEnd   int // buf[pEnd:n] is ciphertext not yet decrypted
	total  int64
	done   bool
	err    error
	closed bool
}

func newCBCReader(mode cipher.BlockMode, src io.Reader, finish func() error) *cbcReader {
	return &cbcReader{src: src, mode: mode, finish: finish, buf: make([]byte, cbcChunk+mode.BlockSize())}
}

func (c *cbcReader) Read(p []byte) (int, error) {
	if c.closed {
		return 0, errors.New("cms: read after Close")
	}
	for c.pOff == c.pEnd {
		if c.err != nil {
			return 0, c.err
		}
		if c.done {
			return 0, io.EOF
		}
		c.err = c.fill()
	}
	n := copy(p, c.buf[c.pOff:c.pEnd])
	c.pOff += n
	return n, nil
}

// fill reads the next chunk of ciphertext and decrypts all of it that is
// known not to be the last block.
func (c *cbcReader) fill() error {
	bs := c.mode.BlockSize()
	c.n = copy(c.buf, c.buf[c.pEnd:c.n])
	c.pOff, c.pEnd = 0, 0
	eof := false
	for c.n < len(c.buf) {
		m, err := c.src.Read(c.buf[c.n:])
		c.n += m
		c.total += int64(m)
		if err == io.EOF {
			eof = true
			break
		}
		if err != nil {
			return berErr("encryptedContent", err)
		}
	}
	if !eof {
		// More ciphertext follows, so every complete block but one may
		// be released; at least one byte stays behind.
		k := (c.n - 1) / bs * bs
		c.mode.CryptBlocks(c.buf[:k], c.buf[:k])
		c.pEnd = k
		return nil
	}
	if c.total == 0 || c.n%bs != 0 {
		return malformed("encryptedContent", "%d bytes of ciphertext is not a positive multiple of the %d-byte block", c.total, bs)
	}
	c.mode.CryptBlocks(c.buf[:c.n], c.buf[:c.n])
	pad, ok := pkcs7Padding(c.buf[:c.n], bs)
	if !ok {
		clear(c.buf)
		return fmt.Errorf("%w: bad padding (wrong key or altered message)", ErrDecryption)
	}
	if err := c.finish(); err != nil {
		clear(c.buf)
		return err
	}
	c.pEnd = c.n - pad
	c.done = true
	return nil
}

// Close releases the buffer. It does not drain the input.
func (c *cbcReader) Close() error {
	c.closed = true
	clear(c.buf)
	return nil
}

// pkcs7Padding returns the padding length of the decrypted data b, whose
// length is a positive multiple of bs, and whether the padding is valid. It
// runs in time independent of the padding bytes.
func pkcs7Padding(b []byte, bs int) (int, bool) {
	last := b[len(b)-1]
	pad := int(last)
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, bs)
	for i := 1; i <= bs; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		eq := subtle.ConstantTimeByteEq(b[len(b)-i], last)
		good &= subtle.ConstantTimeSelect(inPad, eq, 1)
	}
	return pad, good == 1
}
