package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// input is a request's message stream: it enforces the size limit and
// hashes every byte that passes (the audit line's message digest), so the
// message is never held in memory.
type input struct {
	r        io.Reader
	max      int64
	h        hash.Hash
	n        int64 // bytes read and hashed
	eof      bool  // the whole input was read
	tooLarge bool
	msg      io.Reader // what the engine reads: replayed header, then the rest
}

func newInput(r io.Reader, max int64) *input {
	in := &input{r: r, max: max, h: sha256.New()}
	in.msg = in
	return in
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// Read reads from the underlying stream, counting and hashing, and fails
// with a *tooLargeError once more than max bytes arrive.
func (in *input) Read(p []byte) (int, error) {
	if in.tooLarge {
		return 0, &tooLargeError{max: in.max}
	}
	if room := in.max - in.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := in.r.Read(p)
	if in.n+int64(n) > in.max {
		n = int(in.max - in.n)
		in.h.Write(p[:n])
		in.n += int64(n)
		in.tooLarge = true
		return n, &tooLargeError{max: in.max}
	}
	in.h.Write(p[:n])
	in.n += int64(n)
	if err == io.EOF {
		in.eof = true
	}
	return n, err
}

// reader is what the engine reads.
func (in *input) reader() io.Reader { return in.msg }

// drain reads the rest of the input so that the digest covers the whole
// message, unless the request was cancelled or the limit exceeded (then the
// audit line says the digest is partial).
func (in *input) drain(ctx context.Context) {
	if in.eof || in.tooLarge || ctx.Err() != nil {
		return
	}
	_, _ = io.Copy(io.Discard, in.msg)
}

// digest returns the hex SHA-256 of the bytes read so far.
func (in *input) digest() string { return hex.EncodeToString(in.h.Sum(nil)) }

// maxPeekHeader bounds how much of the header section header() reads
// ahead.
const maxPeekHeader = 1 << 20

// msgHeader is what the message's own header fields say, for choosing the
// identity and for the prompt text when the request does not say it.
type msgHeader struct {
	from    string   // the From address, lower case
	to      []string // To and Cc addresses
	subject string   // decoded Subject
}

// header reads the header section ahead (bounded), keeps it for the engine
// to read again, and returns what it names. Unparsable fields are left
// empty: the engine reports a malformed message itself.
func (in *input) header() (msgHeader, error) {
	br := bufio.NewReaderSize(in.msg, 64<<10)
	var hdr bytes.Buffer
	var readErr error
	for hdr.Len() < maxPeekHeader {
		line, err := br.ReadSlice('\n')
		hdr.Write(line)
		if len(line) > 0 && len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // end of the header section
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			break
		}
	}
	in.msg = io.MultiReader(bytes.NewReader(hdr.Bytes()), br)
	if readErr != nil {
		return msgHeader{}, readErr
	}
	text := hdr.Bytes()
	if !bytes.HasSuffix(text, []byte("\n\n")) && !bytes.HasSuffix(text, []byte("\r\n\r\n")) {
		text = append(bytes.Clone(text), "\r\n\r\n"...)
	}
	m, err := mail.ReadMessage(bytes.NewReader(text))
	if err != nil {
		return msgHeader{}, nil
	}
	var h msgHeader
	if list, err := m.Header.AddressList("From"); err == nil && len(list) > 0 {
		h.from = strings.ToLower(list[0].Address)
	}
	for _, field := range []string{"To", "Cc"} {
		if list, err := m.Header.AddressList(field); err == nil {
			for _, a := range list {
				h.to = append(h.to, strings.ToLower(a.Address))
			}
		}
	}
	subject := m.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	h.subject = subject
	return h, nil
}

// or returns a when it is not empty, else b.
func or(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}

// address normalises an address as a client may give it ("Bob
// <bob@example.org>", " BOB@example.org") to its lower-case addr-spec.
func address(s string) string {
	s = strings.TrimSpace(s)
	if strings.ContainsAny(s, "<\"") {
		if a, err := mail.ParseAddress(s); err == nil {
			s = a.Address
		}
	}
	return strings.ToLower(s)
}
