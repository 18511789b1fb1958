package smime

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"io"
	"math/rand/v2"
	"mime/quotedprintable"
	"strings"
	"testing"
	"testing/iotest"
)

// splitResult is what a multipart body splits into.
type splitResult struct {
	sections []string // preamble, then parts
	epilogue string
	err      bool
}

// refSplit is a simple in-memory reference: whole lines, one at a time.
func refSplit(data []byte, boundary string) splitResult {
	dash := "--" + boundary
	var res splitResult
	var cur []byte
	lineStart := true
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		line := data
		if i >= 0 {
			line = data[:i+1]
		}
		data = data[len(line):]
		if lineStart && strings.HasPrefix(string(line), dash) {
			rest := line[len(dash):]
			isClose := bytes.HasPrefix(rest, []byte("--"))
			if isClose || isBlankTail(rest) {
				// The line break before the delimiter belongs to it.
				cur = bytes.TrimSuffix(cur, []byte("\n"))
				cur = bytes.TrimSuffix(cur, []byte("\r"))
				res.sections = append(res.sections, string(cur))
				cur = nil
				if isClose {
					res.epilogue = string(data)
					return res
				}
				continue
			}
		}
		cur = append(cur, line...)
		lineStart = i >= 0
	}
	res.err = true
	return res
}

// streamSplit splits with multipartReader.
func streamSplit(r io.Reader, boundary string, bufSize int) splitResult {
	mr, err := newMultipartReader(bufio.NewReaderSize(r, bufSize), boundary)
	if err != nil {
		return splitResult{err: true}
	}
	var res splitResult
	for {
		b, err := io.ReadAll(mr)
		if err != nil {
			return splitResult{err: true}
		}
		res.sections = append(res.sections, string(b))
		if err := mr.Next(); err == io.EOF {
			break
		} else if err != nil {
			return splitResult{err: true}
		}
	}
	ep, err := io.ReadAll(mr.Epilogue())
	if err != nil {
		return splitResult{err: true}
	}
	res.epilogue = string(ep)
	return res
}

func TestMultipartReaderTable(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want splitResult
	}{
		{"simple", "pre\r\n--b\r\none\r\n--b\r\ntwo\r\n--b--\r\nepi\r\n", splitResult{sections: []string{"pre", "one", "two"}, epilogue: "epi\r\n"}},
		{"no-preamble", "--b\r\none\r\n--b--", splitResult{sections: []string{"", "one"}}},
		{"lf", "--b\nx\ny\n--b\n\n--b--\n", splitResult{sections: []string{"", "x\ny", ""}}},
		{"mixed-line-ends", "--b\r\nx\ny\r\n--b--\n", splitResult{sections: []string{"", "x\ny"}}},
		{"lwsp-after-boundary", "--b  \t\r\nx\r\n--b--  \r\n", splitResult{sections: []string{"", "x"}}},
		{"prefix-is-not-boundary", "--b\r\n--bx\r\n--b-\r\n --b\r\n--b--\r\n", splitResult{sections: []string{"", "--bx\r\n--b-\r\n --b"}}},
		{"empty-part", "--b\r\n\r\n--b--\r\n", splitResult{sections: []string{"", ""}}},
		{"blank-lines-kept", "--b\r\n\r\n\r\nx\r\n\r\n\r\n--b--\r\n", splitResult{sections: []string{"", "\r\n\r\nx\r\n\r\n"}}},
		{"lone-cr-kept", "--b\r\nx\r\r\n--b--\r\n", splitResult{sections: []string{"", "x\r"}}},
		{"truncated", "--b\r\nx\r\n", splitResult{err: true}},
		{"no-delimiter", "just text\r\n", splitResult{err: true}},
		{"empty", "", splitResult{err: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if ref := refSplit([]byte(c.in), "b"); !equalSplit(ref, c.want) {
				t.Fatalf("reference = %+v, want %+v", ref, c.want)
			}
			for _, r := range readers([]byte(c.in)) {
				if got := streamSplit(r, "b", 4096); !equalSplit(got, c.want) {
					t.Fatalf("stream = %+v, want %+v", got, c.want)
				}
			}
		})
	}
}

func readers(b []byte) []io.Reader {
	return []io.Reader{bytes.NewReader(b), iotest.OneByteReader(bytes.NewReader(b)), iotest.HalfReader(bytes.NewReader(b)), iotest.DataErrReader(bytes.NewReader(b))}
}

func equalSplit(a, b splitResult) bool {
	if a.err || b.err {
		return a.err == b.err
	}
	return strings.Join(a.sections, "\x00|") == strings.Join(b.sections, "\x00|") && len(a.sections) == len(b.sections) && a.epilogue == b.epilogue
}

// TestMultipartReaderRandom compares the streaming reader with the
// reference on random bodies made of the pieces boundaries are made of,
// through readers that deliver one byte, half a buffer, and so on.
func TestMultipartReaderRandom(t *testing.T) {
	tokens := []string{"--b", "--b--", "--bb", "\r\n", "\n", "\r", "x", " ", "\t", "-", "--", "b", "yy"}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		var sb strings.Builder
		n := rng.IntN(40)
		for j := 0; j < n; j++ {
			sb.WriteString(tokens[rng.IntN(len(tokens))])
		}
		in := []byte(sb.String())
		want := refSplit(in, "b")
		for k, r := range readers(in) {
			if got := streamSplit(r, "b", 4096); !equalSplit(got, want) {
				t.Fatalf("input %q reader %d:\nstream    %+v\nreference %+v", in, k, got, want)
			}
		}
	}
}

func TestMultipartReaderLongLines(t *testing.T) {
	// Lines far longer than the buffer, with a CR at every possible buffer
	// edge, must come through byte for byte.
	for _, size := range []int{16, 17, 33, 64} {
		body := strings.Repeat("a", size*3-1) + "\r\n--b\r\n" + strings.Repeat("c\r", size*2) + "\r\n--b--\r\n"
		want := refSplit([]byte(body), "b")
		for k, r := range readers([]byte(body)) {
			if got := streamSplit(r, "b", 16); !equalSplit(got, want) {
				t.Fatalf("size %d reader %d:\nstream    %+v\nreference %+v", size, k, got, want)
			}
		}
	}
}

func TestDualDigest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("ab\r\n\n\r")
	for i := 0; i < 2000; i++ {
		in := make([]byte, rng.IntN(300))
		for j := range in {
			in[j] = alphabet[rng.IntN(len(alphabet))]
		}
		d := newDualDigest([]crypto.Hash{crypto.SHA256, crypto.SHA512})
		for rest := in; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			d.Write(rest[:k])
			rest = rest[k:]
		}
		canon, raw := d.sums()
		var c bytes.Buffer
		cw := newCanonWriter(&c)
		cw.Write(in)
		wantCanon := sha256.Sum256(c.Bytes())
		if !bytes.Equal(canon[crypto.SHA256], wantCanon[:]) {
			t.Fatalf("canonical digest of %q wrong", in)
		}
		if bytes.Equal(c.Bytes(), in) {
			if raw != nil {
				t.Fatalf("raw digest for canonical input %q", in)
			}
			continue
		}
		wantRaw := sha512.Sum512(in)
		if raw == nil || !bytes.Equal(raw[crypto.SHA512], wantRaw[:]) {
			t.Fatalf("raw digest of %q wrong", in)
		}
	}
}

func TestCanonWriterChunks(t *testing.T) {
	in := []byte("a\nb\r\nc\rd\n\n\r\r\n")
	want := "a\r\nb\r\nc\rd\r\n\r\n\r\r\n"
	for split := 0; split <= len(in); split++ {
		var b bytes.Buffer
		w := newCanonWriter(&b)
		w.Write(in[:split])
		w.Write(in[split:])
		if b.String() != want {
			t.Fatalf("split %d: %q", split, b.String())
		}
	}
}

func TestReadHeader(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		max    int
		fields int
		err    error
		body   string
	}{
		{"crlf", "A: 1\r\nB: 2\r\n\r\nbody", 0, 2, nil, "body"},
		{"lf", "A: 1\nB: 2\n\nbody", 0, 2, nil, "body"},
		{"folded", "A: 1\r\n  more\r\nB: 2\r\n\r\n", 0, 2, nil, ""},
		{"no-body", "A: 1\r\nB: 2", 0, 2, nil, ""},
		{"no-header", "\r\nbody", 0, 0, nil, "body"},
		{"too-big", "A: " + strings.Repeat("x", 100) + "\r\n\r\n", 50, 0, ErrBadMessage, ""},
		{"garbage", "not a header\r\n\r\n", 0, 0, ErrBadMessage, ""},
		{"leading-space", " A: 1\r\n\r\n", 0, 0, ErrBadMessage, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(c.in), bufSize)
			h, err := readHeader(br, c.max)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(h.fields) != c.fields {
				t.Fatalf("%d fields, want %d", len(h.fields), c.fields)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != c.body {
				t.Fatalf("body = %q", rest)
			}
			if !strings.HasPrefix(c.in, string(h.raw)) || len(h.raw)+len(rest) != len(c.in) {
				t.Fatalf("raw = %q does not cover the header exactly", h.raw)
			}
		})
	}
}

func TestQPWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte("aZ =\t\r\n\x00\xc3\xbcF.rom")
	for i := 0; i < 5000; i++ {
		in := make([]byte, rng.IntN(400))
		for j := range in {
			in[j] = alphabet[rng.IntN(len(alphabet))]
		}
		if rng.IntN(4) == 0 {
			in = append([]byte("From me\n"), in...)
		}
		var out bytes.Buffer
		w := newQPWriter(&out)
		for rest := in; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			w.Write(rest[:k])
			rest = rest[k:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(out.Bytes(), []byte("\r\n")) {
			if len(line) > 76 {
				t.Fatalf("line of %d characters: %q", len(line), line)
			}
			if bytes.HasPrefix(line, []byte("From ")) {
				t.Fatalf("unescaped From line: %q", line)
			}
			for _, c := range line {
				if c >= 0x80 || c < 0x20 && c != '\t' {
					t.Fatalf("not 7-bit text: %q", line)
				}
			}
			if k := len(line); k > 0 && (line[k-1] == ' ' || line[k-1] == '\t') {
				t.Fatalf("trailing white space: %q", line)
			}
		}
		dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(out.Bytes())))
		if err != nil {
			t.Fatalf("decode %q: %v", out.Bytes(), err)
		}
		var want bytes.Buffer
		newCanonWriter(&want).Write(in)
		if !bytes.Equal(dec, want.Bytes()) {
			t.Fatalf("round trip of %q:\n got %q\nwant %q\nenc %q", in, dec, want.Bytes(), out.Bytes())
		}
	}
	// Clean text is copied unchanged.
	clean := "Hello there,\r\nthis line is fine.\r\n"
	var out bytes.Buffer
	w := newQPWriter(&out)
	w.Write([]byte(clean))
	w.Close()
	if out.String() != clean {
		t.Fatalf("clean text changed: %q", out.String())
	}
}

func TestQPSafeLine(t *testing.T) {
	ref := func(b []byte) bool {
		if len(b) > 76 || bytes.HasPrefix(b, []byte("From ")) {
			return false
		}
		for _, c := range b {
			if !(c >= 33 && c <= 126 && c != '=') && c != ' ' && c != '\t' {
				return false
			}
		}
		return len(b) == 0 || (b[len(b)-1] != ' ' && b[len(b)-1] != '\t')
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 200000; i++ {
		b := make([]byte, rng.IntN(80))
		for j := range b {
			b[j] = byte(32 + rng.IntN(95))
			if rng.IntN(40) == 0 {
				b[j] = byte(rng.IntN(256))
			}
		}
		if qpSafeLine(b) != ref(b) {
			t.Fatalf("qpSafeLine(%q) = %v", b, !ref(b))
		}
	}
}

func TestBase64Reader(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 3000; i++ {
		raw := make([]byte, rng.IntN(500))
		for j := range raw {
			raw[j] = byte(rng.IntN(256))
		}
		var enc bytes.Buffer
		w := newBase64Writer(&enc)
		w.Write(raw)
		w.Close()
		text := enc.Bytes()
		switch rng.IntN(4) {
		case 1:
			text = bytes.ReplaceAll(text, []byte("\r\n"), []byte("\n"))
		case 2:
			text = bytes.ReplaceAll(text, []byte("\r\n"), []byte(" \t\r\n "))
		case 3:
			text = bytes.TrimRight(bytes.ReplaceAll(text, []byte("="), nil), "\r\n")
		}
		for k, r := range readers(text) {
			got, err := io.ReadAll(newBase64Reader(r, "test"))
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("reader %d on %q: %v", k, text, err)
			}
		}
	}
	for _, bad := range []string{"QUJD!\r\n", "QQ==QUJD", "Q", "QUJDRA=x"} {
		if _, err := io.ReadAll(newBase64Reader(strings.NewReader(bad), "test")); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}
