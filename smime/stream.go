package smime

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
)

// ctxReader fails with the context's error once it is done, checked before
// every read.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ctxWriter fails with the context's error once it is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// canonWriter turns bare LF into CRLF on the way to w; CRLF and bare CR
// pass unchanged.
type canonWriter struct {
	w      io.Writer
	prevCR bool
	buf    []byte
}

func newCanonWriter(w io.Writer) *canonWriter { return &canonWriter{w: w} }

func (c *canonWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	out := c.buf[:0]
	start := 0
	for i := 0; i < len(p); i++ {
		k := bytes.IndexByte(p[i:], '\n')
		if k < 0 {
			break
		}
		i += k
		cr := c.prevCR
		if i > 0 {
			cr = p[i-1] == '\r'
		}
		if !cr {
			out = append(out, p[start:i]...)
			out = append(out, '\r')
			start = i // the '\n' goes out with the next piece
		}
	}
	if start == 0 && len(out) == 0 {
		// Nothing to change: write through without copying.
		c.prevCR = p[len(p)-1] == '\r'
		if _, err := c.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	out = append(out, p[start:]...)
	c.prevCR = p[len(p)-1] == '\r'
	if cap(out) <= 2*bufSize {
		c.buf = out
	}
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// base64Writer encodes to w in base64 with 76-character CRLF lines (RFC
// 2045 section 6.8). Every 57 input bytes make one full line, encoded
// straight into the output buffer.
type base64Writer struct {
	w    io.Writer
	part [57]byte // input waiting for a full line
	n    int
	out  []byte
}

const (
	b64LineIn  = 57
	b64LineOut = 76
)

func newBase64Writer(w io.Writer) *base64Writer {
	return &base64Writer{w: w, out: make([]byte, 0, 32<<10)}
}

func (b *base64Writer) line(in []byte) {
	k := len(b.out)
	b.out = b.out[:k+base64.StdEncoding.EncodedLen(len(in))+2]
	base64.StdEncoding.Encode(b.out[k:], in)
	b.out[len(b.out)-2], b.out[len(b.out)-1] = '\r', '\n'
}

func (b *base64Writer) flush() error {
	if len(b.out) == 0 {
		return nil
	}
	_, err := b.w.Write(b.out)
	b.out = b.out[:0]
	return err
}

func (b *base64Writer) Write(p []byte) (int, error) {
	total := len(p)
	if b.n > 0 {
		k := copy(b.part[b.n:], p)
		b.n += k
		p = p[k:]
		if b.n < b64LineIn {
			return total, nil
		}
		b.line(b.part[:])
		b.n = 0
	}
	for len(p) >= b64LineIn {
		if cap(b.out)-len(b.out) < b64LineOut+2 {
			if err := b.flush(); err != nil {
				return 0, err
			}
		}
		b.line(p[:b64LineIn])
		p = p[b64LineIn:]
	}
	b.n = copy(b.part[:], p)
	if cap(b.out)-len(b.out) < b64LineOut+2 {
		if err := b.flush(); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// Close writes the last, shorter line.
func (b *base64Writer) Close() error {
	if b.n > 0 {
		b.line(b.part[:b.n])
		b.n = 0
	}
	return b.flush()
}

// base64Reader decodes a base64 body, ignoring the line breaks, spaces and
// tabs between its characters. Anything else that is not base64 is
// ErrBadMessage, as is a body whose length is not a multiple of four
// (unless it carries no padding at all, which is accepted).
type base64Reader struct {
	r      io.Reader
	what   string
	in     []byte // undecoded input left over from the last read
	out    []byte // decoded, not yet read
	outBuf []byte
	err    error
}

func newBase64Reader(r io.Reader, what string) *base64Reader {
	bp := copyBufs.Get().(*[]byte)
	return &base64Reader{r: r, what: what, in: (*bp)[:0]}
}

// errReleased is what a base64Reader returns once released; nothing reads
// one then.
var errReleased = errors.New("smime: internal error: base64 reader used after release")

// release recycles the input buffer; the caller reads d no more.
func (d *base64Reader) release() {
	if d.in == nil {
		return
	}
	b := d.in[:cap(d.in)]
	d.in, d.out, d.err = nil, nil, errReleased
	if len(b) == copyBufSize {
		copyBufs.Put(&b)
	}
}

// compactBase64 removes CR, LF, space and tab from b in place and returns
// the new length. Whole lines are moved at once.
func compactBase64(b []byte) int {
	j := 0
	for i := 0; i < len(b); {
		end := len(b)
		if nl := bytes.IndexByte(b[i:], '\n'); nl >= 0 {
			end = i + nl
		}
		seg := b[i:end]
		if k := len(seg); k > 0 && seg[k-1] == '\r' {
			seg = seg[:k-1]
		}
		if hasSpaceOrControl(seg) {
			for _, c := range seg {
				if c != ' ' && c != '\t' && c != '\r' {
					b[j] = c
					j++
				}
			}
		} else {
			j += copy(b[j:], seg)
		}
		i = end + 1
	}
	return j
}

// hasSpaceOrControl reports whether b holds a byte at or below the space
// (or, as a false alarm that only costs time, a byte with the high bit
// set). No base64 character is one.
func hasSpaceOrControl(b []byte) bool {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if x&swarMSB != 0 || swarHasLess(x, 0x21) {
			return true
		}
	}
	for _, c := range b[i:] {
		if c <= ' ' || c >= 0x80 {
			return true
		}
	}
	return false
}

func (d *base64Reader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

func (d *base64Reader) fill() {
	carry := len(d.in)
	buf := d.in[:cap(d.in)]
	n, rerr := d.r.Read(buf[carry:])
	n = carry + compactBase64(buf[carry:carry+n])
	if rerr != nil && rerr != io.EOF {
		d.err = rerr
		return
	}
	usable := n - n%4
	dec := base64.StdEncoding
	if rerr == io.EOF {
		usable = n
		if n%4 != 0 && bytes.IndexByte(buf[:n], '=') < 0 {
			dec = base64.RawStdEncoding
		}
	}
	if need := dec.DecodedLen(usable); cap(d.outBuf) < need {
		d.outBuf = make([]byte, need)
	}
	k, err := dec.Decode(d.outBuf[:cap(d.outBuf)], buf[:usable])
	if err != nil {
		d.err = badf("%s: invalid base64: %v", d.what, err)
		return
	}
	d.out = d.outBuf[:k]
	m := copy(buf, buf[usable:n])
	d.in = buf[:m]
	if rerr == io.EOF {
		d.err = io.EOF
	}
}

// decodeErrReader marks quoted-printable decoding errors from r as ErrBadMessage with what
// was being decoded; other errors pass unchanged.
type decodeErrReader struct {
	r    io.Reader
	what string
}

func (d decodeErrReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		if isQPError(err) {
			err = badf("%s: %v", d.what, err)
		}
	}
	return n, err
}

func isQPError(err error) bool {
	// mime/quotedprintable reports bad input with plain fmt errors whose
	// text starts with "quotedprintable:".
	s := err.Error()
	return len(s) > 16 && s[:16] == "quotedprintable:"
}

// transferDecoder returns a reader that undoes the Content-Transfer-Encoding
// cte over body. Identity encodings (7bit, 8bit, binary, none) return body.
func transferDecoder(body io.Reader, cte, what string) (io.Reader, error) {
	switch cte {
	case "base64":
		return newBase64Reader(body, what), nil
	case "quoted-printable":
		return decodeErrReader{quotedprintable.NewReader(body), what + ": quoted-printable"}, nil
	case "", "7bit", "8bit", "binary":
		return body, nil
	}
	return nil, errorf(ErrUnsupported, "%s: Content-Transfer-Encoding %q", what, cte)
}

// countWriter counts bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// errWriter remembers the first error and then does nothing, so code that
// writes many small pieces checks once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
