package smime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// multipartReader splits a multipart body (RFC 2046 section 5.1) into its
// sections, streaming: first the preamble, then each body part, giving the
// exact bytes received. A section's bytes end before the line break that
// precedes the next delimiter line, which belongs to the delimiter.
//
// go-message's textproto.MultipartReader parses part headers and drops the
// preamble and epilogue; detached signatures need a part's exact bytes
// (header as received, LF or CRLF line by line), and signing needs the
// preamble and epilogue to rewrite a multipart faithfully, so this package
// scans boundaries itself and uses textproto only for header fields.
//
// It works on whole buffers: bytes.Index finds the next "\n--boundary", and
// everything before it goes out in one piece.
type multipartReader struct {
	br     *bufio.Reader
	dash   []byte // "--" + boundary
	nlDash []byte // "\n--" + boundary

	pendHeld []byte // the held line break, going out before pending
	pending  []byte // section bytes ready to be read (may point into br)
	held     []byte // the line break after the last line, held back
	heldBuf  [2]byte
	pendBuf  [2]byte

	atLineStart bool
	sectionDone bool // the current section reached its delimiter
	final       bool // the delimiter was the close delimiter
	sections    int  // sections started: 1 = preamble, 2 = first part, ...
	heldAtEnd   bool // a line break preceded the delimiter that ended the section
	err         error
}

// newMultipartReader reads the body of a multipart entity from br, which
// the reader then owns until the close delimiter.
func newMultipartReader(br *bufio.Reader, boundary string) (*multipartReader, error) {
	if boundary == "" {
		return nil, badf("multipart entity without a boundary parameter")
	}
	if len(boundary) > maxBoundary {
		return nil, badf("multipart boundary longer than %d characters", maxBoundary)
	}
	return &multipartReader{
		br:          br,
		dash:        []byte("--" + boundary),
		nlDash:      []byte("\n--" + boundary),
		atLineStart: true,
		sections:    1,
	}, nil
}

// Read reads the current section.
func (m *multipartReader) Read(p []byte) (int, error) {
	for len(m.pendHeld) == 0 && len(m.pending) == 0 {
		if m.sectionDone {
			return 0, io.EOF
		}
		if m.err != nil {
			return 0, m.err
		}
		m.fill()
	}
	n := copy(p, m.pendHeld)
	m.pendHeld = m.pendHeld[n:]
	k := copy(p[n:], m.pending)
	m.pending = m.pending[k:]
	return n + k, nil
}

// fill makes some progress: section bytes become pending, or the
// delimiter ending the section is found, or an error is recorded.
func (m *multipartReader) fill() {
	if m.br.Buffered() == 0 {
		if _, err := m.br.Peek(1); err != nil {
			m.fail(err)
			return
		}
	}
	for {
		data, _ := m.br.Peek(m.br.Buffered())
		if m.scan(data, false, false) {
			return
		}
		// Undecided: read more, or decide with what there is.
		if _, err := m.br.Peek(len(data) + 1); err != nil {
			eof := err == io.EOF
			if !eof && !errors.Is(err, bufio.ErrBufferFull) {
				m.err = err
				return
			}
			data, _ = m.br.Peek(m.br.Buffered())
			if !m.scan(data, true, eof) {
				m.fail(io.EOF)
			}
			return
		}
	}
}

// fail records the end of input (or a read error) inside a section.
func (m *multipartReader) fail(err error) {
	switch {
	case err != io.EOF:
		m.err = err
	case m.sections == 1:
		m.err = badf("multipart: no boundary delimiter line found")
	default:
		m.err = badf("multipart: truncated, the closing boundary is missing")
	}
}

// delimiter results.
const (
	notDelimiter = iota
	needMore
	isDelimiter
	isClose
)

// delimiterAt looks at a line starting at data[0]. atEnd says no more
// data will come (end of input, or a full buffer). It returns what the line
// is and, for a delimiter, its length including the line break.
func (m *multipartReader) delimiterAt(data []byte, atEnd bool) (int, int) {
	if len(data) < len(m.dash) {
		if !atEnd && bytes.HasPrefix(m.dash, data) {
			return needMore, 0
		}
		return notDelimiter, 0
	}
	if !bytes.HasPrefix(data, m.dash) {
		return notDelimiter, 0
	}
	rest := data[len(m.dash):]
	nl := bytes.IndexByte(rest, '\n')
	line := rest
	if nl >= 0 {
		line = rest[:nl+1]
	}
	if bytes.HasPrefix(line, []byte("--")) {
		if nl < 0 && !atEnd {
			return needMore, 0
		}
		return isClose, len(m.dash) + len(line)
	}
	if len(line) == 1 && line[0] == '-' && nl < 0 && !atEnd {
		return needMore, 0
	}
	if !isBlankTail(line) {
		return notDelimiter, 0
	}
	if nl < 0 && !atEnd {
		return needMore, 0
	}
	return isDelimiter, len(m.dash) + len(line)
}

// scan processes data (the buffered input) and reports whether it made
// progress. atEnd says no more data will come before a decision must be
// made (end of input, or a full buffer); eof says the input has ended.
func (m *multipartReader) scan(data []byte, atEnd, eof bool) bool {
	if len(data) == 0 {
		return false
	}
	if m.atLineStart {
		switch kind, n := m.delimiterAt(data, atEnd); kind {
		case needMore:
			return false
		case isDelimiter, isClose:
			m.br.Discard(n)
			m.heldAtEnd = len(m.held) > 0
			m.held = nil
			m.sectionDone = true
			m.final = kind == isClose
			return true
		}
	}
	// The next line that may be a delimiter.
	if i := bytes.Index(data, m.nlDash); i >= 0 {
		m.emitLines(data, i)
		return true
	}
	// None in data. If the last line so far might still become one, stop
	// before it.
	if j := bytes.LastIndexByte(data, '\n'); j >= 0 && (bytes.HasPrefix(m.dash, data[j+1:]) || bytes.HasPrefix(data[j+1:], m.dash)) {
		m.emitLines(data, j)
		return true
	}
	// Everything is content; a final CR may begin the CRLF before a
	// delimiter, so it waits.
	n := len(data)
	if data[n-1] == '\r' && !eof {
		n--
	}
	if n == 0 {
		return false
	}
	m.emit(data[:n], nil)
	m.br.Discard(n)
	m.atLineStart = false
	return true
}

// emitLines makes data[:nl] pending, holding back the line break that ends
// at data[nl] ('\n'), and consumes through it.
func (m *multipartReader) emitLines(data []byte, nl int) {
	eol := nl
	if nl > 0 && data[nl-1] == '\r' {
		eol = nl - 1
	}
	m.emit(data[:eol], data[eol:nl+1])
	m.br.Discard(nl + 1)
	m.atLineStart = true
}

// emit queues the held line break and content, and holds eol back. content
// may point into the bufio buffer: it stays valid until the next fill.
func (m *multipartReader) emit(content, eol []byte) {
	m.pendHeld = append(m.pendBuf[:0], m.held...)
	m.pending = content
	if eol != nil {
		m.held = append(m.heldBuf[:0], eol...)
	} else {
		m.held = nil
	}
}

// isBlankTail reports whether the rest of a delimiter line is only
// linear white space and the line break.
func isBlankTail(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

// Next skips what is left of the current section and starts the next body
// part. It returns io.EOF after the close delimiter.
func (m *multipartReader) Next() error {
	for !m.sectionDone {
		if m.err != nil {
			return m.err
		}
		m.pendHeld, m.pending = nil, nil
		m.fill()
	}
	m.pendHeld, m.pending = nil, nil
	if m.final {
		return io.EOF
	}
	m.sectionDone = false
	m.atLineStart = true
	m.sections++
	return nil
}

// Epilogue returns the bytes after the close delimiter line. Only valid
// once Next has returned io.EOF.
func (m *multipartReader) Epilogue() io.Reader { return m.br }
