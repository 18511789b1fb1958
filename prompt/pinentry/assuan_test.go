package pinentry

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/smimed/smimed/prompt"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"100%", "100%25"},
		{"a\nb\r\nc", "a%0Ab%0D%0Ac"},
		{"tab\there\x00\x1f\x7f", "tab%09here%00%1F%7F"},
		{" leading", "%20leading"},
		{"ünïcode ✓", "ünïcode ✓"},
		{"%0A", "%250A"},
	}
	for _, tt := range tests {
		if got := escape(tt.in); got != tt.want {
			t.Errorf("escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCommandFitsAssuanLine(t *testing.T) {
	tests := []struct {
		name, arg string
	}{
		{"short", "hello"},
		{"long ascii", strings.Repeat("a", 5000)},
		{"long escapes", strings.Repeat("%\n", 2000)},
		{"long multibyte", strings.Repeat("✓", 2000)},
		{"invalid utf-8", strings.Repeat("\xff", 2000)},
		{"exactly at the limit", strings.Repeat("b", maxLine-1-len("SETDESC "))},
		{"one over the limit", strings.Repeat("b", maxLine-len("SETDESC "))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := command("SETDESC", tt.arg)
			if len(line) >= maxLine {
				t.Errorf("line of %d bytes, limit %d", len(line), maxLine-1)
			}
			if strings.ContainsAny(line, "\r\n") {
				t.Errorf("raw line break in %q", line)
			}
			fits := len("SETDESC "+escape(tt.arg)) < maxLine
			if fits && line != "SETDESC "+escape(tt.arg) {
				t.Errorf("argument that fits was changed: %q", line)
			}
			if !fits && !strings.HasSuffix(line, "...") {
				t.Errorf("cut line does not end in ...: %q", line[max(0, len(line)-5):])
			}
			if !fits {
				// Cut at a character boundary, never inside an escape.
				body := strings.TrimSuffix(strings.TrimPrefix(line, "SETDESC "), "...")
				var dec secretBuf
				if err := dec.appendDecoded([]byte(body)); err != nil {
					t.Fatalf("cut inside an escape: %v", err)
				}
				if !strings.HasPrefix(tt.arg, string(dec.b)) {
					t.Errorf("cut text is not a prefix of the argument")
				}
				if utf8.ValidString(tt.arg) && !utf8.Valid(dec.b) {
					t.Errorf("cut inside a character")
				}
			}
		})
	}
	if got := command("GETPIN", ""); got != "GETPIN" {
		t.Errorf("command without argument = %q", got)
	}
}

func TestAppendDecoded(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"1234", "1234", false},
		{"12%2534", "12%34", false},
		{"a%0Ab%0d", "a\nb\r", false},
		{"%C3%BC", "ü", false},
		{"%", "", true},
		{"%4", "", true},
		{"%zz", "", true},
		{"ab%g0", "", true},
	}
	for _, tt := range tests {
		var b secretBuf
		err := b.appendDecoded([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("appendDecoded(%q) err = %v", tt.in, err)
			continue
		}
		if err == nil && string(b.b) != tt.want {
			t.Errorf("appendDecoded(%q) = %q, want %q", tt.in, b.b, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), tt.in) {
			t.Errorf("error %q repeats the data", err)
		}
	}
}

func TestSecretBufGrowsAndWipes(t *testing.T) {
	var b secretBuf
	if err := b.appendDecoded(bytes.Repeat([]byte("x"), 200)); err != nil {
		t.Fatal(err)
	}
	first := b.b[:cap(b.b)]
	if err := b.appendDecoded(bytes.Repeat([]byte("y"), 200)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, make([]byte, len(first))) {
		t.Error("old array not wiped when growing")
	}
	last := b.b[:cap(b.b)]
	b.wipe()
	if !bytes.Equal(last, make([]byte, len(last))) || b.b != nil {
		t.Error("wipe left bytes")
	}
	var big secretBuf
	err := big.appendDecoded(bytes.Repeat([]byte("z"), maxSecret+1))
	if !errors.Is(err, errProtocol) {
		t.Errorf("over-long secret: %v", err)
	}
}

func TestLineReader(t *testing.T) {
	data := "OK hello\r\nD 12%25\n\nS X\nlast"
	lr := newLineReader(iotest.OneByteReader(strings.NewReader(data)))
	for _, want := range []string{"OK hello", "D 12%25", "", "S X"} {
		got, err := lr.readLine()
		if err != nil || string(got) != want {
			t.Fatalf("readLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := lr.readLine(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("unterminated line: %v", err)
	}
	lr.wipe()
	if !bytes.Equal(lr.buf, make([]byte, len(lr.buf))) {
		t.Error("wipe left bytes")
	}

	long := newLineReader(strings.NewReader(strings.Repeat("x", readBufSize+10) + "\n"))
	if _, err := long.readLine(); !errors.Is(err, errProtocol) {
		t.Errorf("over-long line: %v", err)
	}
}

// fakeServer answers the client's commands from a script: for each verb the
// lines to send back (default "OK"). It records what it received.
type fakeServer struct {
	greeting string
	replies  map[string][]string
	received []string
	inquired string // what the client sent after an INQUIRE
}

func (f *fakeServer) run(t *testing.T) *conn {
	t.Helper()
	cr, sw := io.Pipe() // server -> client
	sr, cw := io.Pipe() // client -> server
	done := make(chan struct{})
	t.Cleanup(func() {
		cw.Close()
		cr.Close()
		<-done
	})
	go func() {
		defer close(done)
		defer sw.Close()
		in := bufio.NewScanner(sr)
		greeting := f.greeting
		if greeting == "" {
			greeting = "OK fake"
		}
		io.WriteString(sw, greeting+"\n")
		for in.Scan() {
			line := in.Text()
			verb, _, _ := strings.Cut(line, " ")
			if verb == "CAN" || verb == "END" {
				f.inquired = line
				continue
			}
			f.received = append(f.received, line)
			reply, ok := f.replies[verb]
			if !ok {
				reply = []string{"OK"}
			}
			for _, r := range reply {
				if _, err := io.WriteString(sw, r+"\n"); err != nil {
					return
				}
				if strings.HasPrefix(r, "INQUIRE") {
					if !in.Scan() {
						return
					}
					f.inquired = in.Text()
				}
			}
		}
	}()
	return &conn{lr: newLineReader(cr), w: cw}
}

func TestTransact(t *testing.T) {
	tests := []struct {
		name      string
		replies   []string
		want      string
		wantErr   error
		wantInErr string
	}{
		{"one data line", []string{"D 1234", "OK"}, "1234", nil, ""},
		{"status, comments and blank lines ignored", []string{"S PASSWORD_FROM_CACHE", "# comment", "", "D 12", "OK"}, "12", nil, ""},
		{"several data lines concatenate", []string{"D ab%25", "D %0Acd", "OK"}, "ab%\ncd", nil, ""},
		{"empty PIN", []string{"OK"}, "", nil, ""},
		{"bare D", []string{"D", "D x", "OK"}, "x", nil, ""},
		{"INQUIRE is cancelled", []string{"INQUIRE QUALITY abc", "ERR 83886179 cancelled", "OK"}, "", prompt.ErrCancelled, ""},
		{"cancel", []string{"ERR 83886179 Operation cancelled <Pinentry>"}, "", prompt.ErrCancelled, "Operation cancelled"},
		{"cancel from another source", []string{"ERR 99"}, "", prompt.ErrCancelled, ""},
		{"fully cancelled", []string{"ERR 83886278 Fully canceled"}, "", prompt.ErrCancelled, ""},
		{"not confirmed", []string{"ERR 83886194 Not confirmed"}, "", prompt.ErrCancelled, ""},
		{"pinentry timeout", []string{"ERR 83886142 Timeout"}, "", prompt.ErrTimeout, ""},
		{"other ERR", []string{"ERR 83886254 Unknown option"}, "", nil, "Unknown option"},
		{"garbage line not echoed", []string{"D 98", "XYZZY 9876"}, "", errProtocol, ""},
		{"bad escape not echoed", []string{"D 98%zz76"}, "", errProtocol, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeServer{replies: map[string][]string{"GETPIN": tt.replies}}
			c := f.run(t)
			if err := c.greeting(); err != nil {
				t.Fatal(err)
			}
			var pin secretBuf
			err := c.transact("GETPIN", &pin)
			if tt.wantErr == nil && tt.wantInErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if string(pin.b) != tt.want {
					t.Errorf("pin = %q, want %q", pin.b, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("err = %v, want it to say %q", err, tt.wantInErr)
			}
			for _, secret := range []string{"9876", "98", "76"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats data the pinentry sent", err)
				}
			}
			if strings.HasPrefix(tt.replies[0], "INQUIRE") && f.inquired != "CAN" {
				t.Errorf("INQUIRE answered with %q, want CAN", f.inquired)
			}
		})
	}
}

func TestTransactRejectsDataWhereNoneIsExpected(t *testing.T) {
	f := &fakeServer{replies: map[string][]string{"CONFIRM": {"D 1234", "OK"}}}
	c := f.run(t)
	if err := c.greeting(); err != nil {
		t.Fatal(err)
	}
	if err := c.transact("CONFIRM", nil); !errors.Is(err, errProtocol) || strings.Contains(err.Error(), "1234") {
		t.Errorf("err = %v", err)
	}
}

func TestGreeting(t *testing.T) {
	for _, tt := range []struct {
		greeting string
		ok       bool
	}{
		{"OK Pleased to meet you", true},
		{"OK", true},
		{"ERR 1 no", false},
		{"HELLO", false},
	} {
		f := &fakeServer{greeting: tt.greeting}
		err := f.run(t).greeting()
		if (err == nil) != tt.ok {
			t.Errorf("greeting %q: err = %v", tt.greeting, err)
		}
	}
}

// The whole conversation, in order, against the in-process fake.
func TestConverseOrder(t *testing.T) {
	f := &fakeServer{replies: map[string][]string{"GETPIN": {"D 4321", "OK"}, "OPTION": {"ERR 83886254 Unknown option"}}}
	c := &Client{env: []string{"GPG_TTY=/dev/pts/9", "TERM=xterm", "LANG=de_DE.UTF-8", "LC_MESSAGES=C"}}
	var pin secretBuf
	ctx, cancel := context.WithTimeout(context.Background(), 90e9)
	defer cancel()
	r := prompt.Request{Kind: prompt.PIN, Operation: prompt.OpSign, KeyLabel: "CN=A", Error: "Wrong PIN", TriesLeft: 2}
	if err := c.converse(ctx, f.run(t), r, &pin, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if string(pin.b) != "4321" {
		t.Errorf("pin = %q", pin.b)
	}
	want := []string{
		"OPTION ttyname=/dev/pts/9",
		"OPTION ttytype=xterm",
		"OPTION lc-ctype=de_DE.UTF-8",
		"OPTION lc-messages=C",
		"SETTIMEOUT 90",
		"SETKEYINFO --clear",
		"SETTITLE smimed: PIN",
		command("SETDESC", r.Description()),
		"SETPROMPT PIN:",
		"SETERROR Wrong PIN",
		"GETPIN",
	}
	if strings.Join(f.received, "\n") != strings.Join(want, "\n") {
		t.Errorf("conversation:\n%s\nwant:\n%s", strings.Join(f.received, "\n"), strings.Join(want, "\n"))
	}
}

func TestConverseFailsOnRequiredCommand(t *testing.T) {
	f := &fakeServer{replies: map[string][]string{"SETDESC": {"ERR 1 Line too long"}}}
	c := &Client{}
	err := c.converse(context.Background(), f.run(t), prompt.Request{Kind: prompt.Confirm}, nil, func() bool { return true })
	if err == nil || !strings.Contains(err.Error(), "Line too long") {
		t.Errorf("err = %v", err)
	}
	for _, line := range f.received {
		if line == "CONFIRM" {
			t.Error("asked after a failed SETDESC")
		}
	}
}

func FuzzDecodeEscape(f *testing.F) {
	for _, s := range []string{"", "1234", "%", "a\r\nb", "100%25", "✓\x00\x7f", strings.Repeat("%\n", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Decoding arbitrary data never panics.
		var junk secretBuf
		_ = junk.appendDecoded([]byte(s))
		junk.wipe()

		// Escaping round-trips, and a command line always fits Assuan's limit
		// with no raw line break.
		var b secretBuf
		if err := b.appendDecoded([]byte(escape(s))); err != nil {
			t.Fatalf("decode(escape(%q)): %v", s, err)
		}
		if string(b.b) != s {
			t.Fatalf("round trip %q -> %q", s, b.b)
		}
		line := command("SETDESC", s)
		if len(line) >= maxLine || strings.ContainsAny(line, "\r\n") {
			t.Fatalf("bad command line for %q: %q", s, line)
		}
	})
}
