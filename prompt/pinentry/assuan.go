package pinentry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smimed/smimed/prompt"
)

// maxLine is the longest Assuan line, terminating LF included. libassuan
// refuses longer lines ("Line too long"), so commands are cut to fit.
const maxLine = 1000

// readBufSize bounds the lines we accept from the pinentry. Real pinentries
// keep to maxLine; the margin tolerates a sloppy one.
const readBufSize = 4096

// maxSecret bounds a PIN or passphrase (pinentry promises at least 2048
// characters).
const maxSecret = 64 << 10

// Assuan error codes (libgpg-error) that we map; an Assuan ERR carries
// (source << 24 | code) and we look at the low 16 bits.
const (
	gpgErrTimeout       = 62
	gpgErrCanceled      = 99
	gpgErrNotConfirmed  = 114
	gpgErrFullyCanceled = 198
)

// errProtocol is wrapped by every error about a malformed pinentry answer.
const errProtocol = constError("pinentry: protocol error")

// constError is an error that can be a constant.
type constError string

func (e constError) Error() string { return string(e) }

// escape percent-escapes s for an Assuan command argument: '%', CR, LF, every
// byte below 0x20 and DEL, and a leading space (which servers would strip).
func escape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' || c < 0x20 || c == 0x7f || (c == ' ' && i == 0) {
			b = fmt.Appendf(b, "%%%02X", c)
			continue
		}
		b = append(b, c)
	}
	return string(b)
}

// command builds "VERB escaped-arg" no longer than maxLine-1 bytes, cutting
// the argument at a character boundary (never inside an escape) and marking
// the cut with "...".
func command(verb, arg string) string {
	if arg == "" {
		return verb
	}
	line := verb + " " + escape(arg)
	if len(line) < maxLine {
		return line
	}
	const mark = "..."
	budget := maxLine - 1 - len(verb) - 1 - len(mark)
	n, cut := 0, 0
	for cut < len(arg) {
		r, size := utf8.DecodeRuneInString(arg[cut:])
		w := size
		if r < 0x20 || r == '%' || r == 0x7f || (cut == 0 && r == ' ') {
			w = 3
		}
		if n+w > budget {
			break
		}
		n += w
		cut += size
	}
	return verb + " " + escape(arg[:cut]) + mark
}

// unhex returns the value of the hex digit c, or -1.
func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// secretBuf accumulates a percent-decoded secret. It never reallocates
// without wiping the old array, and wipe zeroes what it holds.
type secretBuf struct {
	b []byte
}

func (s *secretBuf) appendByte(c byte) error {
	if len(s.b) == cap(s.b) {
		if len(s.b) >= maxSecret {
			return fmt.Errorf("%w: secret longer than %d bytes", errProtocol, maxSecret)
		}
		nb := make([]byte, len(s.b), max(256, 2*cap(s.b)))
		copy(nb, s.b)
		clear(s.b[:cap(s.b)])
		s.b = nb
	}
	s.b = append(s.b, c)
	return nil
}

// appendDecoded percent-decodes data (the payload of a D line) into s,
// without ever holding it in a string.
func (s *secretBuf) appendDecoded(data []byte) error {
	for i := 0; i < len(data); i++ {
		c := data[i]
		if c == '%' {
			if i+2 >= len(data) {
				return fmt.Errorf("%w: truncated escape in data line", errProtocol)
			}
			hi, lo := unhex(data[i+1]), unhex(data[i+2])
			if hi < 0 || lo < 0 {
				return fmt.Errorf("%w: bad escape in data line", errProtocol)
			}
			c = byte(hi<<4 | lo)
			i += 2
		}
		if err := s.appendByte(c); err != nil {
			return err
		}
	}
	return nil
}

func (s *secretBuf) wipe() {
	clear(s.b[:cap(s.b)])
	s.b = nil
}

// lineReader reads LF-terminated lines into a buffer it owns, so that data
// lines carrying a PIN can be wiped (a bufio.Reader's buffer cannot).
type lineReader struct {
	r          io.Reader
	buf        []byte
	start, end int
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: r, buf: make([]byte, readBufSize)}
}

// readLine returns the next line without its LF (and without a CR before
// it). The slice is valid until the next call.
func (l *lineReader) readLine() ([]byte, error) {
	for {
		if i := bytes.IndexByte(l.buf[l.start:l.end], '\n'); i >= 0 {
			line := l.buf[l.start : l.start+i]
			l.start += i + 1
			return bytes.TrimSuffix(line, []byte{'\r'}), nil
		}
		if l.start > 0 {
			// Move the partial line to the front and wipe what it leaves.
			n := copy(l.buf, l.buf[l.start:l.end])
			clear(l.buf[n:l.end])
			l.start, l.end = 0, n
		}
		if l.end == len(l.buf) {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, len(l.buf))
		}
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if n > 0 {
			continue
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

func (l *lineReader) wipe() {
	clear(l.buf)
	l.start, l.end = 0, 0
}

// assuanError is an ERR line from the pinentry. Its text comes from the
// pinentry (never from the user's input) and is safe to show.
type assuanError struct {
	Code uint32
	Text string
}

func (e *assuanError) Error() string {
	if e.Text == "" {
		return "pinentry: ERR " + strconv.FormatUint(uint64(e.Code), 10)
	}
	return "pinentry: ERR " + strconv.FormatUint(uint64(e.Code), 10) + " " + e.Text
}

// Is lets errors.Is match the prompt errors the code stands for.
func (e *assuanError) Is(target error) bool {
	switch target {
	case prompt.ErrCancelled:
		c := e.Code & 0xffff
		return c == gpgErrCanceled || c == gpgErrFullyCanceled || c == gpgErrNotConfirmed
	case prompt.ErrTimeout:
		return e.Code&0xffff == gpgErrTimeout
	}
	return false
}

func parseErr(rest []byte) *assuanError {
	code, text, _ := bytes.Cut(rest, []byte{' '})
	n, err := strconv.ParseUint(string(code), 10, 32)
	if err != nil {
		return &assuanError{Text: printable(rest)}
	}
	return &assuanError{Code: uint32(n), Text: printable(text)}
}

// printable keeps diagnostic text from a peer to a bounded, single-line,
// printable string.
func printable(b []byte) string {
	const limit = 200
	if len(b) > limit {
		b = b[:limit]
	}
	out := make([]byte, 0, len(b))
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			c = '?'
		}
		out = append(out, c)
	}
	return string(bytes.ToValidUTF8(out, []byte("?")))
}

// conn is one Assuan conversation with a pinentry, client side.
type conn struct {
	lr *lineReader
	w  io.Writer
}

// greeting reads the server's first line, which must be OK.
func (c *conn) greeting() error {
	line, err := c.lr.readLine()
	if err != nil {
		return fmt.Errorf("pinentry: reading greeting: %w", err)
	}
	switch {
	case isVerb(line, "OK"):
		return nil
	case isVerb(line, "ERR"):
		return parseErr(arg(line))
	}
	return fmt.Errorf("%w: greeting %q", errProtocol, printable(line))
}

// transact sends one command line and reads the answer up to OK or ERR.
// D lines are decoded into data when it is non-nil and are a protocol error
// otherwise; status (S) and comment (#) lines are ignored; an INQUIRE is
// answered with CAN (we have nothing to give).
func (c *conn) transact(line string, data *secretBuf) error {
	if _, err := io.WriteString(c.w, line+"\n"); err != nil {
		return fmt.Errorf("pinentry: sending %s: %w", verbOf(line), err)
	}
	for {
		resp, err := c.lr.readLine()
		if err != nil {
			return fmt.Errorf("pinentry: waiting for the answer to %s: %w", verbOf(line), err)
		}
		switch {
		case isVerb(resp, "OK"):
			return nil
		case isVerb(resp, "ERR"):
			return parseErr(arg(resp))
		case isVerb(resp, "D"):
			if data == nil {
				return fmt.Errorf("%w: unexpected data line in answer to %s", errProtocol, verbOf(line))
			}
			if err := data.appendDecoded(arg(resp)); err != nil {
				return err
			}
		case isVerb(resp, "S"), len(resp) > 0 && resp[0] == '#', len(resp) == 0:
			// status and comment lines carry nothing we need
		case isVerb(resp, "INQUIRE"):
			if _, err := io.WriteString(c.w, "CAN\n"); err != nil {
				return fmt.Errorf("pinentry: answering INQUIRE: %w", err)
			}
		default:
			// Do not echo the line: it might be a garbled data line.
			return fmt.Errorf("%w: unexpected line in answer to %s", errProtocol, verbOf(line))
		}
	}
}

// isVerb reports whether line is verb alone or verb followed by a space.
func isVerb(line []byte, verb string) bool {
	if !bytes.HasPrefix(line, []byte(verb)) {
		return false
	}
	return len(line) == len(verb) || line[len(verb)] == ' '
}

// arg returns what follows the verb and its space.
func arg(line []byte) []byte {
	_, rest, _ := bytes.Cut(line, []byte{' '})
	return rest
}

// verbOf returns a command line's verb, for error messages (never its
// argument).
func verbOf(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return v
}
