package smime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// Limits on what a header section may look like.
const (
	// defaultMaxHeaderBytes bounds one header section (the top-level
	// message's, or one MIME part's).
	defaultMaxHeaderBytes = 1 << 20
	// maxHeaderLine bounds one physical header line, before unfolding.
	maxHeaderLine = 64 << 10
	// bufSize is the read buffer of every MIME reader in this package; a
	// body line longer than it is handled in pieces. It must exceed
	// sniffLimit.
	bufSize = 80 << 10
	// maxBoundary is the longest multipart boundary accepted (RFC 2046
	// allows 70 characters; some producers exceed it a little).
	maxBoundary = 200
)

// field is one header field: canonical key, unfolded value, and its raw
// bytes as textproto keeps them (the received line or lines, each ended by
// CRLF).
type field struct {
	key   string
	value string
	raw   []byte
}

// header is one parsed header section.
type header struct {
	// raw holds the section exactly as received, including the blank line
	// that ends it (when there was one).
	raw []byte
	// fields are in the order received.
	fields []field
	// empty is true when the entity had no bytes at all.
	empty bool
}

// get returns the value of the first field named key, or "".
func (h *header) get(key string) string {
	for _, f := range h.fields {
		if strings.EqualFold(f.key, key) {
			return f.value
		}
	}
	return ""
}

// has reports whether a field named key is present.
func (h *header) has(key string) bool {
	for _, f := range h.fields {
		if strings.EqualFold(f.key, key) {
			return true
		}
	}
	return false
}

// readHeader reads one header section from br: lines up to and including
// the first empty line, or to the end of input. It keeps the exact bytes
// and parses them with go-message's textproto, which keeps each field's raw
// bytes. At most max bytes are read.
func readHeader(br *bufio.Reader, max int) (*header, error) {
	if max <= 0 {
		max = defaultMaxHeaderBytes
	}
	var raw []byte
	ended := false
	lineLen := 0
	for !ended {
		chunk, err := br.ReadSlice('\n')
		lineLen += len(chunk)
		if lineLen > maxHeaderLine {
			return nil, badf("header line longer than %d bytes", maxHeaderLine)
		}
		if len(raw)+len(chunk) > max {
			return nil, badf("header section longer than %d bytes", max)
		}
		if err == nil || err == io.EOF {
			// chunk is a complete line (or the last bytes of input).
			if lineLen == len(chunk) && (string(chunk) == "\r\n" || string(chunk) == "\n") {
				ended = true
			}
			lineLen = 0
		}
		raw = append(raw, chunk...)
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
		case err == io.EOF:
			if len(raw) == 0 {
				return &header{empty: true}, nil
			}
			ended = true
		default:
			return nil, err
		}
	}
	parse := raw
	if !bytes.HasSuffix(parse, []byte("\n\r\n")) && !bytes.HasSuffix(parse, []byte("\n\n")) &&
		string(parse) != "\r\n" && string(parse) != "\n" {
		// Header section ended by the end of input: finish it for the
		// parser.
		parse = append(bytes.Clone(parse), "\r\n\r\n"...)
	}
	hr := headerReaders.get(bytes.NewReader(parse))
	th, err := textproto.ReadHeader(hr)
	headerReaders.put(hr) // the parsed header holds copies
	if err != nil {
		return nil, badf("header: %v", err)
	}
	h := &header{raw: raw}
	for fs := th.Fields(); fs.Next(); {
		r, err := fs.Raw()
		if err != nil {
			return nil, badf("header field %q: %v", fs.Key(), err)
		}
		h.fields = append(h.fields, field{key: fs.Key(), value: fs.Value(), raw: r})
	}
	return h, nil
}

// contentType returns the media type (lower case) and its parameters (keys
// lower case). A missing Content-Type means text/plain; charset=us-ascii
// (RFC 2045 section 5.2). A malformed parameter list keeps the media type
// and drops the parameters; a malformed media type is an error.
func (h *header) contentType() (string, map[string]string, error) {
	v := h.get("Content-Type")
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{"charset": "us-ascii"}, nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		if errors.Is(err, mime.ErrInvalidMediaParameter) && mt != "" {
			return strings.ToLower(mt), map[string]string{}, nil
		}
		return "", nil, badf("Content-Type %q: %v", truncate(v, 80), err)
	}
	return strings.ToLower(mt), params, nil
}

// transferEncoding returns the Content-Transfer-Encoding, lower case, ""
// when absent.
func (h *header) transferEncoding() string {
	return strings.ToLower(strings.TrimSpace(h.get("Content-Transfer-Encoding")))
}

// fileName returns the name parameter of Content-Type or, failing that,
// the filename parameter of Content-Disposition.
func (h *header) fileName(ctParams map[string]string) string {
	if n := ctParams["name"]; n != "" {
		return n
	}
	if cd := h.get("Content-Disposition"); cd != "" {
		if _, p, err := mime.ParseMediaType(cd); err == nil {
			return p["filename"]
		}
	}
	return ""
}

// isContentField reports whether a header field belongs to the MIME entity
// (Content-* and MIME-Version) rather than to the message around it.
func isContentField(key string) bool {
	k := strings.ToLower(key)
	return strings.HasPrefix(k, "content-") || k == "mime-version"
}

// writeFields writes the raw bytes of fs.
func writeFields(w io.Writer, fs []field) error {
	for _, f := range fs {
		if _, err := w.Write(f.raw); err != nil {
			return err
		}
	}
	return nil
}

// newField makes a field from a key and an already formatted value. The
// value must be ASCII without CR or LF.
func newField(key, value string) field {
	return field{key: key, value: value, raw: []byte(key + ": " + value + "\r\n")}
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
