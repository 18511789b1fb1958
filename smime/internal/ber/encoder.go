package ber

import (
	"fmt"
	"io"
)

// AppendHeader appends identifier and length octets to b. A negative length
// writes the indefinite form.
func AppendHeader(b []byte, class, tag int, constructed bool, length int64) []byte {
	id := byte(class << 6)
	if constructed {
		id |= 0x20
	}
	if tag < 0x1f {
		b = append(b, id|byte(tag))
	} else {
		b = append(b, id|0x1f)
		var t [5]byte
		i := len(t)
		for v := tag; ; v >>= 7 {
			i--
			t[i] = byte(v&0x7f) | 0x80
			if v < 0x80 {
				break
			}
		}
		t[len(t)-1] &^= 0x80
		b = append(b, t[i:]...)
	}
	switch {
	case length < 0:
		return append(b, 0x80)
	case length < 0x80:
		return append(b, byte(length))
	}
	n := 0
	for v := length; v > 0; v >>= 8 {
		n++
	}
	b = append(b, 0x80|byte(n))
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(length>>(8*i)))
	}
	return b
}

// EndOfContents is the two-byte marker that closes an indefinite length.
var endOfContents = []byte{0, 0}

// Encoder writes BER to a stream: definite-length elements prepared in
// memory, and indefinite-length constructed elements opened with Begin and
// closed with End, so large contents never need to be held whole.
type Encoder struct {
	w     io.Writer
	depth int
	err   error
}

// NewEncoder returns an encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

func (e *Encoder) write(p []byte) error {
	if e.err != nil {
		return e.err
	}
	_, e.err = e.w.Write(p)
	return e.err
}

// Begin opens an indefinite-length constructed element.
func (e *Encoder) Begin(class, tag int) error {
	e.depth++
	return e.write(AppendHeader(nil, class, tag, true, -1))
}

// End closes the innermost element opened with Begin.
func (e *Encoder) End() error {
	if e.depth == 0 {
		return fmt.Errorf("ber: End without Begin")
	}
	e.depth--
	return e.write(endOfContents)
}

// Raw writes an element that is already encoded.
func (e *Encoder) Raw(der []byte) error { return e.write(der) }

// Depth returns how many elements opened with Begin are still open.
func (e *Encoder) Depth() int { return e.depth }

// StringWriter opens a constructed, indefinite-length string element with
// the given tag and returns a writer that emits what it is given as
// primitive OCTET STRING segments of segSize bytes; Close writes the last
// segment and closes the element.
func (e *Encoder) StringWriter(class, tag, segSize int) (io.WriteCloser, error) {
	if segSize <= 0 {
		segSize = 16 << 10
	}
	if err := e.Begin(class, tag); err != nil {
		return nil, err
	}
	return &segmentWriter{e: e, buf: make([]byte, 0, segSize)}, nil
}

type segmentWriter struct {
	e      *Encoder
	buf    []byte
	closed bool
}

func (s *segmentWriter) Write(p []byte) (int, error) {
	if s.closed {
		return 0, fmt.Errorf("ber: write to closed string")
	}
	n := 0
	for len(p) > 0 {
		k := copy(s.buf[len(s.buf):cap(s.buf)], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
		n += k
		if len(s.buf) == cap(s.buf) {
			if err := s.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (s *segmentWriter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	var hdr [10]byte
	if err := s.e.write(AppendHeader(hdr[:0], ClassUniversal, TagOctetString, false, int64(len(s.buf)))); err != nil {
		return err
	}
	err := s.e.write(s.buf)
	s.buf = s.buf[:0]
	return err
}

func (s *segmentWriter) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.flush(); err != nil {
		return err
	}
	return s.e.End()
}
