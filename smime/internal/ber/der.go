package ber

import (
	"bufio"
	"bytes"
	"io"
)

// ToDER re-encodes one BER element held in memory with definite lengths
// throughout and constructed strings (OCTET, BIT, character strings) joined
// into primitive ones. It does not reorder SET OF members: CMS requires the
// sender to have encoded the parts that are signed in DER already, and the
// signature is checked over the bytes as received.
func ToDER(ber []byte) ([]byte, error) {
	d := NewDecoder(bufio.NewReaderSize(bytes.NewReader(ber), 512))
	d.inputLen = int64(len(ber))
	h, err := d.Next()
	if err != nil {
		return nil, err
	}
	out, err := d.derElement(h, nil)
	if err != nil {
		return nil, err
	}
	if _, err := d.Next(); err != io.EOF {
		return nil, syntaxErr("trailing data after element")
	}
	return out, nil
}

// isString reports whether a universal tag is a string type whose
// constructed form is a concatenation of segments.
func isString(tag int) bool {
	switch tag {
	case TagOctetString, 12, 18, 19, 20, 21, 22, 25, 26, 27, 28, 30:
		return true
	}
	return false
}

func (d *Decoder) derElement(h Header, out []byte) ([]byte, error) {
	if !h.Constructed {
		if h.Length > d.inputLen-d.off {
			return nil, syntaxErr("%v element of %d bytes overruns the input", h, h.Length)
		}
		out = AppendHeader(out, h.Class, h.Tag, false, h.Length)
		start := len(out)
		out = append(out, make([]byte, h.Length)...)
		d.pending = nil
		if err := d.read(out[start:]); err != nil {
			return nil, err
		}
		return out, nil
	}
	if h.Class == ClassUniversal && (isString(h.Tag) || h.Tag == TagBitString) {
		if h.Tag == TagBitString {
			return nil, syntaxErr("constructed BIT STRING is not supported")
		}
		s, err := d.StringReader()
		if err != nil {
			return nil, err
		}
		content, err := io.ReadAll(s)
		if err != nil {
			return nil, err
		}
		out = AppendHeader(out, h.Class, h.Tag, false, int64(len(content)))
		return append(out, content...), nil
	}
	if err := d.Enter(); err != nil {
		return nil, err
	}
	var body []byte
	for {
		ch, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		body, err = d.derElement(ch, body)
		if err != nil {
			return nil, err
		}
	}
	out = AppendHeader(out, h.Class, h.Tag, true, int64(len(body)))
	return append(out, body...), nil
}
