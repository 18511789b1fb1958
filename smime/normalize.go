package smime

import (
	"bufio"
	"io"
	"strings"
)

// Limits of the transfer-encoding normaliser.
const (
	// sniffLimit is how much of a 7bit (or unlabelled) leaf is buffered to
	// check that it really is 7-bit clean; a longer leaf is re-encoded.
	sniffLimit = 64 << 10
	// maxLineLen is RFC 5322's line limit, without the CRLF.
	maxLineLen = 998
	// maxMIMEDepth bounds multipart nesting while signing.
	maxMIMEDepth = 32
)

// normalizer rewrites a MIME entity into the form that is signed or
// encrypted: CRLF line breaks everywhere, and every leaf in a transfer
// encoding that survives 7-bit relays (RFC 8551 section 3.1.2), so that the
// signature stays valid after transport. It streams: memory does not
// depend on the entity's size.
type normalizer struct {
	maxHeader int
}

// entity writes the normalised entity with header h and body to w.
func (n *normalizer) entity(w io.Writer, h *header, body *bufio.Reader, depth int) error {
	if depth > maxMIMEDepth {
		return errorf(ErrTooDeep, "MIME parts nested deeper than %d", maxMIMEDepth)
	}
	mt, params, err := h.contentType()
	if err != nil {
		return err
	}
	if strings.HasPrefix(mt, "multipart/") {
		return n.multipart(w, h, params["boundary"], body, depth)
	}
	return n.leaf(w, h, mt, body)
}

// multipart rewrites a multipart entity: its own header (a transfer
// encoding of 8bit or binary is dropped, since every part becomes 7-bit),
// preamble, each part in turn, epilogue.
func (n *normalizer) multipart(w io.Writer, h *header, boundary string, body *bufio.Reader, depth int) error {
	mr, err := newMultipartReader(body, boundary)
	if err != nil {
		return err
	}
	fields := h.fields
	switch h.transferEncoding() {
	case "8bit", "binary":
		fields = withoutField(fields, "Content-Transfer-Encoding")
	}
	ew := &errWriter{w: w}
	if err := writeFields(ew, fields); err != nil {
		return err
	}
	ew.printf("\r\n")
	cw := newCanonWriter(ew)
	// Preamble.
	if _, err := io.Copy(cw, mr); err != nil {
		return err
	}
	if ew.err != nil {
		return ew.err
	}
	first := true
	for {
		err := mr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if first {
			if mr.heldAtEnd {
				ew.printf("\r\n")
			}
			ew.printf("--%s\r\n", boundary)
		} else {
			ew.printf("\r\n--%s\r\n", boundary)
		}
		first = false
		if ew.err != nil {
			return ew.err
		}
		pr := bufio.NewReaderSize(mr, bufSize)
		ph, err := readHeader(pr, n.maxHeader)
		if err != nil {
			return err
		}
		if ph.empty {
			// A part with no bytes at all: keep it empty.
			continue
		}
		if err := n.entity(ew, ph, pr, depth+1); err != nil {
			return err
		}
		// Drain what the part's own parser left (nothing, normally).
		if _, err := io.Copy(io.Discard, pr); err != nil {
			return err
		}
	}
	if first {
		return badf("multipart entity with no body parts")
	}
	ew.printf("\r\n--%s--\r\n", boundary)
	cw = newCanonWriter(ew)
	if _, err := io.Copy(cw, mr.Epilogue()); err != nil {
		return err
	}
	return ew.err
}

// leaf rewrites a single-part entity.
func (n *normalizer) leaf(w io.Writer, h *header, mt string, body *bufio.Reader) error {
	cte := h.transferEncoding()
	switch cte {
	case "quoted-printable", "base64":
		// Already 7-bit safe: only the line breaks become CRLF.
		return passThrough(w, h.fields, body)
	case "", "7bit":
		// Check the first sniffLimit bytes; pass the leaf through if it
		// ends within them and is clean 7-bit text.
		peek, err := body.Peek(sniffLimit + 1)
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return err
		}
		if len(peek) <= sniffLimit && err != bufio.ErrBufferFull && isClean7bit(peek) {
			return passThrough(w, h.fields, body)
		}
	case "8bit", "binary":
	default:
		// An encoding we do not know (x-uuencode...): it cannot be
		// decoded, so it is passed on as it is.
		return passThrough(w, h.fields, body)
	}
	// Re-encode: quoted-printable keeps text readable, base64 for the rest.
	enc := "base64"
	if strings.HasPrefix(mt, "text/") {
		enc = "quoted-printable"
	}
	fields := append(withoutField(h.fields, "Content-Transfer-Encoding"), newField("Content-Transfer-Encoding", enc))
	ew := &errWriter{w: w}
	if err := writeFields(ew, fields); err != nil {
		return err
	}
	ew.printf("\r\n")
	if ew.err != nil {
		return ew.err
	}
	var enc2 io.WriteCloser
	if enc == "base64" {
		enc2 = newBase64Writer(ew)
	} else {
		enc2 = newQPWriter(ew)
	}
	if _, err := io.Copy(enc2, body); err != nil {
		return err
	}
	if err := enc2.Close(); err != nil {
		return err
	}
	return ew.err
}

// passThrough writes the header unchanged and the body with CRLF line
// breaks.
func passThrough(w io.Writer, fields []field, body io.Reader) error {
	if err := writeFields(w, fields); err != nil {
		return err
	}
	if _, err := w.Write([]byte("\r\n")); err != nil {
		return err
	}
	_, err := io.Copy(newCanonWriter(w), body)
	return err
}

// isClean7bit reports whether b is 7-bit text a relay passes unchanged: no
// NUL, no byte above 127, CR only before LF, lines of at most 998 octets.
func isClean7bit(b []byte) bool {
	line := 0
	for i, c := range b {
		switch {
		case c == 0 || c >= 0x80:
			return false
		case c == '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return false
			}
		case c == '\n':
			line = 0
			continue
		}
		if c != '\r' {
			line++
			if line > maxLineLen {
				return false
			}
		}
	}
	return true
}

// withoutField returns fs without the fields named key (a new slice).
func withoutField(fs []field, key string) []field {
	out := make([]field, 0, len(fs))
	for _, f := range fs {
		if !strings.EqualFold(f.key, key) {
			out = append(out, f)
		}
	}
	return out
}

// splitMessage reads the top-level header of msg and splits it into the
// fields that stay outside the protected entity (From, To, Subject, Date,
// Message-ID, ...) and those that move into it (Content-*, MIME-Version;
// the outside gets its own MIME-Version: 1.0).
// A message with no Content-Type gets text/plain; charset=us-ascii.
func splitMessage(br *bufio.Reader, maxHeader int) (outer []field, inner *header, err error) {
	h, err := readHeader(br, maxHeader)
	if err != nil {
		return nil, nil, err
	}
	if h.empty {
		return nil, nil, badf("empty message")
	}
	inner = &header{}
	for _, f := range h.fields {
		if isContentField(f.key) {
			inner.fields = append(inner.fields, f)
		} else {
			outer = append(outer, f)
		}
	}
	if !inner.has("Content-Type") {
		inner.fields = append([]field{newField("Content-Type", "text/plain; charset=us-ascii")}, inner.fields...)
	}
	return outer, inner, nil
}
