// Package ber reads and writes the BER encoding of ASN.1 as a stream, so that
// CMS messages of any size pass through in constant memory: indefinite
// lengths, constructed OCTET STRINGs split into segments, and definite lengths
// up to 2^62 bytes.
//
// Small elements (certificates, signer infos, recipient infos) are lifted out
// whole with ReadRaw or ReadDER and parsed with golang.org/x/crypto/cryptobyte
// or crypto/x509; large ones (encapsulated or encrypted content) are read with
// StringReader.
package ber

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Tag classes.
const (
	ClassUniversal   = 0
	ClassApplication = 1
	ClassContext     = 2
	ClassPrivate     = 3
)

// Universal tags used by CMS.
const (
	TagBoolean         = 1
	TagInteger         = 2
	TagBitString       = 3
	TagOctetString     = 4
	TagNull            = 5
	TagOID             = 6
	TagSequence        = 16
	TagSet             = 17
	TagUTCTime         = 23
	TagGeneralizedTime = 24
)

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 64

// ErrSyntax is wrapped by every error about malformed encoding.
var ErrSyntax = errors.New("ber: malformed encoding")

// ErrTooLarge is wrapped when an element is bigger than the caller's limit.
var ErrTooLarge = errors.New("ber: element larger than allowed")

// Header describes one element: its tag and the length of its contents.
type Header struct {
	Class       int
	Tag         int
	Constructed bool
	// Length is the content length, or -1 for the indefinite form.
	Length int64
	// raw holds the encoded identifier and length octets.
	raw []byte
}

// Indefinite reports whether the element uses the indefinite length form.
func (h Header) Indefinite() bool { return h.Length < 0 }

// Is reports whether the element has the given class and tag.
func (h Header) Is(class, tag int) bool { return h.Class == class && h.Tag == tag }

// String names the tag for error messages, e.g. "[0] constructed".
func (h Header) String() string {
	form := "primitive"
	if h.Constructed {
		form = "constructed"
	}
	switch h.Class {
	case ClassUniversal:
		return fmt.Sprintf("universal %d %s", h.Tag, form)
	case ClassContext:
		return fmt.Sprintf("[%d] %s", h.Tag, form)
	default:
		return fmt.Sprintf("class %d tag %d %s", h.Class, h.Tag, form)
	}
}

// frame is one open constructed element.
type frame struct {
	end int64 // offset just past the contents; -1 when indefinite
}

// Decoder reads BER elements one by one from a stream.
//
// Next returns the header of the next element at the current level. The
// caller then either descends into it with Enter, skips it with Skip, reads it
// whole with ReadRaw/ReadDER, or streams its string contents with
// StringReader. Calling Next again without doing any of these skips the
// element. At the end of the current level Next returns io.EOF and the
// decoder moves up one level.
type Decoder struct {
	r       *bufio.Reader
	off     int64
	stack   []frame
	pending *Header
	active  *stringReader
	capture *captureBuf
	// inputLen is the size of an in-memory input (ToDER), 0 for streams.
	inputLen int64
}

type captureBuf struct {
	buf bytes.Buffer
	max int64
}

// NewDecoder returns a decoder reading from r.
func NewDecoder(r io.Reader) *Decoder {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Decoder{r: br}
}

// Offset returns the number of bytes consumed so far.
func (d *Decoder) Offset() int64 { return d.off }

// Depth returns how many constructed elements are open.
func (d *Decoder) Depth() int { return len(d.stack) }

func syntaxErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

func (d *Decoder) readByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err != nil {
		if err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	d.off++
	if d.capture != nil {
		if err := d.captureWrite([]byte{b}); err != nil {
			return 0, err
		}
	}
	return b, nil
}

func (d *Decoder) captureWrite(p []byte) error {
	if int64(d.capture.buf.Len()+len(p)) > d.capture.max {
		return fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, d.capture.max)
	}
	d.capture.buf.Write(p)
	return nil
}

// read reads exactly into p.
func (d *Decoder) read(p []byte) error {
	n, err := io.ReadFull(d.r, p)
	d.off += int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if d.capture != nil {
		return d.captureWrite(p)
	}
	return nil
}

// discard skips n bytes.
func (d *Decoder) discard(n int64) error {
	if d.capture != nil {
		// Read straight into the capture buffer: no scratch allocation.
		if int64(d.capture.buf.Len())+n > d.capture.max {
			return fmt.Errorf("%w (limit %d bytes)", ErrTooLarge, d.capture.max)
		}
		m, err := io.CopyN(&d.capture.buf, d.r, n)
		d.off += m
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	for n > 0 {
		k := int64(1 << 30)
		if n < k {
			k = n
		}
		m, err := d.r.Discard(int(k))
		d.off += int64(m)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		n -= k
	}
	return nil
}

// Next returns the header of the next element at the current level, or
// io.EOF when the current level has ended (the decoder then moves up).
// At the top level io.EOF means the input has ended cleanly.
func (d *Decoder) Next() (Header, error) {
	if err := d.finishPending(); err != nil {
		return Header{}, err
	}
	return d.next()
}

// next is Next without finishing an unread element first.
func (d *Decoder) next() (Header, error) {
	if n := len(d.stack); n > 0 && d.stack[n-1].end >= 0 {
		top := d.stack[n-1]
		if d.off == top.end {
			d.stack = d.stack[:n-1]
			return Header{}, io.EOF
		}
		if d.off > top.end {
			return Header{}, syntaxErr("element overruns its container at offset %d", d.off)
		}
	}
	if len(d.stack) == 0 {
		if _, err := d.r.Peek(1); err == io.EOF {
			return Header{}, io.EOF
		}
	}
	h, err := d.readHeader()
	if err != nil {
		return Header{}, err
	}
	if h.Class == ClassUniversal && h.Tag == 0 {
		if h.Constructed || h.Length != 0 {
			return Header{}, syntaxErr("malformed end-of-contents at offset %d", d.off)
		}
		n := len(d.stack)
		if n == 0 || d.stack[n-1].end >= 0 {
			return Header{}, syntaxErr("end-of-contents outside an indefinite-length element at offset %d", d.off)
		}
		d.stack = d.stack[:n-1]
		return Header{}, io.EOF
	}
	if n := len(d.stack); n > 0 && d.stack[n-1].end >= 0 && h.Length >= 0 && d.off+h.Length > d.stack[n-1].end {
		return Header{}, syntaxErr("%v element of %d bytes overruns its container", h, h.Length)
	}
	if h.Length < 0 && !h.Constructed {
		return Header{}, syntaxErr("primitive element with indefinite length")
	}
	d.pending = &h
	return h, nil
}

func (d *Decoder) readHeader() (Header, error) {
	var raw [16]byte
	n := 0
	b, err := d.readByte()
	if err != nil {
		return Header{}, err
	}
	raw[n] = b
	n++
	h := Header{Class: int(b >> 6), Constructed: b&0x20 != 0, Tag: int(b & 0x1f)}
	if h.Tag == 0x1f {
		h.Tag = 0
		for i := 0; ; i++ {
			if i == 4 {
				return Header{}, syntaxErr("tag number too large")
			}
			b, err = d.readByte()
			if err != nil {
				return Header{}, err
			}
			raw[n] = b
			n++
			h.Tag = h.Tag<<7 | int(b&0x7f)
			if b&0x80 == 0 {
				break
			}
		}
	}
	b, err = d.readByte()
	if err != nil {
		return Header{}, err
	}
	raw[n] = b
	n++
	switch {
	case b == 0x80:
		h.Length = -1
	case b < 0x80:
		h.Length = int64(b)
	default:
		k := int(b & 0x7f)
		if k > 8 || k == 0x7f {
			return Header{}, syntaxErr("length of %d octets", k)
		}
		var l uint64
		for i := 0; i < k; i++ {
			b, err = d.readByte()
			if err != nil {
				return Header{}, err
			}
			raw[n] = b
			n++
			l = l<<8 | uint64(b)
		}
		if l > 1<<62 {
			return Header{}, syntaxErr("length %d too large", l)
		}
		h.Length = int64(l)
	}
	h.raw = append([]byte(nil), raw[:n]...)
	return h, nil
}

// finishPending skips an element the caller left unread.
func (d *Decoder) finishPending() error {
	if d.active != nil {
		if _, err := io.Copy(io.Discard, d.active); err != nil {
			return err
		}
		d.active = nil
	}
	if d.pending != nil {
		return d.Skip()
	}
	return nil
}

func (d *Decoder) takePending(op string) (Header, error) {
	if d.pending == nil {
		return Header{}, fmt.Errorf("ber: %s without a current element", op)
	}
	h := *d.pending
	d.pending = nil
	return h, nil
}

// Enter descends into the constructed element returned by the last Next.
func (d *Decoder) Enter() error {
	h, err := d.takePending("Enter")
	if err != nil {
		return err
	}
	if !h.Constructed {
		return syntaxErr("expected a constructed element, found %v", h)
	}
	if len(d.stack) >= maxDepth {
		return syntaxErr("nesting deeper than %d", maxDepth)
	}
	end := int64(-1)
	if h.Length >= 0 {
		end = d.off + h.Length
	}
	d.stack = append(d.stack, frame{end: end})
	return nil
}

// Skip discards the element returned by the last Next.
func (d *Decoder) Skip() error {
	h, err := d.takePending("Skip")
	if err != nil {
		return err
	}
	if h.Length >= 0 {
		return d.discard(h.Length)
	}
	d.pending = &h
	if err := d.Enter(); err != nil {
		return err
	}
	return d.skipToEnd()
}

// skipToEnd skips every remaining element of the current level.
func (d *Decoder) skipToEnd() error {
	for {
		_, err := d.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := d.Skip(); err != nil {
			return err
		}
	}
}

// Leave skips the rest of the current level and moves up to its parent.
func (d *Decoder) Leave() error {
	if err := d.finishPending(); err != nil {
		return err
	}
	if len(d.stack) == 0 {
		return fmt.Errorf("ber: Leave at top level")
	}
	return d.skipToEnd()
}

// ReadRaw returns the whole encoding (header and contents, as received) of
// the element returned by the last Next, refusing elements above max bytes.
func (d *Decoder) ReadRaw(max int64) ([]byte, error) {
	h, err := d.takePending("ReadRaw")
	if err != nil {
		return nil, err
	}
	if h.Length >= 0 {
		if int64(len(h.raw))+h.Length > max {
			return nil, fmt.Errorf("%w: %v of %d bytes (limit %d)", ErrTooLarge, h, h.Length, max)
		}
		out := make([]byte, len(h.raw)+int(h.Length))
		copy(out, h.raw)
		if err := d.read(out[len(h.raw):]); err != nil {
			return nil, err
		}
		return out, nil
	}
	if d.capture != nil {
		return nil, fmt.Errorf("ber: nested ReadRaw")
	}
	d.capture = &captureBuf{max: max}
	d.capture.buf.Write(h.raw)
	d.pending = &h
	err = d.Skip()
	buf := d.capture.buf.Bytes()
	d.capture = nil
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadDER is ReadRaw followed by ToDER: the element with every length made
// definite and every constructed string joined into one primitive string.
func (d *Decoder) ReadDER(max int64) ([]byte, error) {
	raw, err := d.ReadRaw(max)
	if err != nil {
		return nil, err
	}
	return ToDER(raw)
}

// ReadString reads a whole string-typed element (primitive or constructed)
// into memory, refusing more than max bytes of contents.
func (d *Decoder) ReadString(max int64) ([]byte, error) {
	sr, err := d.StringReader()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(sr, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: string over %d bytes", ErrTooLarge, max)
	}
	if _, err := io.Copy(io.Discard, sr); err != nil {
		return nil, err
	}
	return b, nil
}

// StringReader streams the contents of the string element (OCTET STRING or
// an implicitly tagged one) returned by the last Next. A constructed string's
// segments are joined. The element is consumed when the reader returns
// io.EOF; calling Next earlier discards the rest.
func (d *Decoder) StringReader() (io.Reader, error) {
	h, err := d.takePending("StringReader")
	if err != nil {
		return nil, err
	}
	sr := &stringReader{d: d, base: len(d.stack)}
	if h.Constructed {
		d.pending = &h
		if err := d.Enter(); err != nil {
			return nil, err
		}
	} else {
		sr.left = h.Length
	}
	d.active = sr
	return sr, nil
}

type stringReader struct {
	d    *Decoder
	base int   // stack depth of the string's parent level
	left int64 // bytes left in the current primitive segment
	done bool
	err  error
}

func (s *stringReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for s.left == 0 {
		if s.done || len(s.d.stack) == s.base {
			s.finish()
			return 0, io.EOF
		}
		h, err := s.d.next()
		if err == io.EOF {
			continue
		}
		if err != nil {
			s.err = err
			return 0, err
		}
		if h.Constructed {
			if err := s.d.Enter(); err != nil {
				s.err = err
				return 0, err
			}
			continue
		}
		s.d.pending = nil
		s.left = h.Length
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := io.ReadFull(s.d.r, p)
	s.d.off += int64(n)
	s.left -= int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.err = err
		return n, err
	}
	if s.d.capture != nil {
		if err := s.d.captureWrite(p[:n]); err != nil {
			s.err = err
			return n, err
		}
	}
	if s.left == 0 && len(s.d.stack) == s.base {
		s.finish()
	}
	return n, nil
}

func (s *stringReader) finish() {
	s.done = true
	if s.d.active == s {
		s.d.active = nil
	}
}
