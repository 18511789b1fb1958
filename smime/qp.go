package smime

import (
	"bytes"
	"encoding/binary"
	"io"
)

// qpWriter encodes text as quoted-printable (RFC 2045 section 6.7) with
// CRLF hard line breaks. A line that is already safe (printable ASCII
// without "=", no trailing white space, at most 76 characters, not starting
// with "From ") is copied unchanged, so re-encoding clean text costs about
// one copy. Other lines are encoded byte by byte, with soft line breaks
// keeping every output line within 76 characters. LF and CRLF in the input
// are line breaks; a CR alone is encoded as =0D.
type qpWriter struct {
	w       io.Writer
	out     []byte
	partial []byte // input after the last line break
	col     int    // output column of the current line
	ws      byte   // white space held until we know whether the line ends
	err     error
}

const (
	qpMaxLine     = 76
	qpPartialMax  = 8 << 10
	qpFlushAt     = 32 << 10
	hexUpperDigit = "0123456789ABCDEF"
)

func newQPWriter(w io.Writer) *qpWriter {
	return &qpWriter{w: w, out: make([]byte, 0, qpFlushAt+1024)}
}

// SWAR ("SIMD within a register") helpers for qpSafeLine.
const (
	swarLSB = 0x0101010101010101
	swarMSB = 0x8080808080808080
)

// swarHasZero reports whether some byte of x is zero.
func swarHasZero(x uint64) bool { return (x-swarLSB)&^x&swarMSB != 0 }

// swarHasLess reports whether some byte of x is below n (n <= 128; x has
// no byte with the high bit set).
func swarHasLess(x uint64, n uint64) bool { return (x-swarLSB*n)&^x&swarMSB != 0 }

// qpLiteral reports whether c may stand for itself (white space aside).
func qpLiteral(c byte) bool { return c >= 33 && c <= 126 && c != '=' }

func (q *qpWriter) Write(p []byte) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	n := len(p)
	if len(q.partial) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			q.partial = append(q.partial, p...)
			if len(q.partial) > qpPartialMax {
				q.encode(q.partial, false)
				q.partial = q.partial[:0]
			}
			return n, q.flush(false)
		}
		q.partial = append(q.partial, p[:i+1]...)
		q.line(q.partial)
		q.partial = q.partial[:0]
		p = p[i+1:]
	}
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		q.line(p[:i+1])
		p = p[i+1:]
		if len(q.out) >= qpFlushAt {
			if err := q.flush(false); err != nil {
				return 0, err
			}
		}
	}
	if len(p) > qpPartialMax {
		q.encode(p, false)
	} else {
		q.partial = append(q.partial, p...)
	}
	return n, q.flush(false)
}

// line encodes one input line, which ends in LF.
func (q *qpWriter) line(l []byte) {
	content := l[:len(l)-1]
	if k := len(content); k > 0 && content[k-1] == '\r' {
		content = content[:k-1]
	}
	if q.col == 0 && q.ws == 0 && qpSafeLine(content) {
		q.out = append(q.out, content...)
		q.out = append(q.out, '\r', '\n')
		return
	}
	q.encode(content, true)
}

// qpSafeLine reports whether a whole line can be written unchanged.
func qpSafeLine(b []byte) bool {
	if len(b) > qpMaxLine || bytes.HasPrefix(b, []byte("From ")) {
		return false
	}
	// Eight bytes at a time: no byte with the high bit, no DEL, no "=",
	// and control characters only as tabs (checked one by one, rarely).
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if x&swarMSB != 0 || swarHasZero(x^(swarLSB*'=')) || swarHasZero(x^(swarLSB*0x7f)) {
			return false
		}
		if swarHasLess(x, 0x20) {
			for _, c := range b[i : i+8] {
				if c < 0x20 && c != '\t' {
					return false
				}
			}
		}
	}
	for _, c := range b[i:] {
		if !qpLiteral(c) && c != ' ' && c != '\t' {
			return false
		}
	}
	if k := len(b); k > 0 && (b[k-1] == ' ' || b[k-1] == '\t') {
		return false
	}
	return true
}

// encode writes b byte by byte; endOfLine adds a hard line break after it.
func (q *qpWriter) encode(b []byte, endOfLine bool) {
	for i, c := range b {
		if q.ws != 0 {
			q.literal(q.ws)
			q.ws = 0
		}
		switch {
		case c == ' ' || c == '\t':
			q.ws = c
		case c == 'F' && q.col == 0 && bytes.HasPrefix(b[i:], []byte("From ")):
			// "From " at the start of a line is changed to ">From " by
			// mbox stores; encoding the F keeps the signature intact.
			q.encoded(c)
		case qpLiteral(c):
			q.literal(c)
		default:
			q.encoded(c)
		}
	}
	if endOfLine {
		if q.ws != 0 {
			q.encoded(q.ws)
			q.ws = 0
		}
		q.out = append(q.out, '\r', '\n')
		q.col = 0
	}
}

func (q *qpWriter) softBreak(need int) {
	if q.col+need > qpMaxLine-1 {
		q.out = append(q.out, '=', '\r', '\n')
		q.col = 0
	}
}

func (q *qpWriter) literal(c byte) {
	q.softBreak(1)
	q.out = append(q.out, c)
	q.col++
}

func (q *qpWriter) encoded(c byte) {
	q.softBreak(3)
	q.out = append(q.out, '=', hexUpperDigit[c>>4], hexUpperDigit[c&15])
	q.col += 3
}

func (q *qpWriter) flush(all bool) error {
	if q.err != nil {
		return q.err
	}
	if len(q.out) == 0 || (!all && len(q.out) < qpFlushAt) {
		return nil
	}
	_, q.err = q.w.Write(q.out)
	q.out = q.out[:0]
	return q.err
}

// Close encodes what is left (a last line without a line break).
func (q *qpWriter) Close() error {
	if len(q.partial) > 0 {
		q.encode(q.partial, false)
		q.partial = q.partial[:0]
	}
	if q.ws != 0 {
		q.encoded(q.ws)
		q.ws = 0
	}
	return q.flush(true)
}
