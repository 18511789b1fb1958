package pinentry

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/smimed/smimed/prompt/pinentry/pinentrytest"
)

// Text with '%', CR, LF, other control bytes and a leading space survives
// escape() and the real testpinentry's decoding byte for byte.
func TestEscapeRoundTripThroughTestpinentry(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "log")
	cmd := exec.Command(pinentrytest.Build(t))
	cmd.Env = append(os.Environ(), pinentrytest.Config{Log: logPath}.Env(t)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &conn{lr: newLineReader(stdout), w: stdin}
	texts := []string{
		"100% sure\r\nsecond line\rthird\n",
		" leading space, tab\there, bell\a, %0A literally",
		"ünïcödé ✓ and %%",
	}
	if err := c.greeting(); err != nil {
		t.Fatal(err)
	}
	for _, text := range texts {
		if err := c.transact(command("SETDESC", text), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.transact("BYE", nil); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	s := pinentrytest.ReadLog(t, logPath)[0]
	var got []string
	for _, c := range s.Commands {
		if c.Cmd == "SETDESC" {
			got = append(got, c.Arg)
		}
	}
	if len(got) != len(texts) {
		t.Fatalf("logged %d descriptions, want %d", len(got), len(texts))
	}
	for i := range texts {
		if got[i] != texts[i] {
			t.Errorf("round trip:\n%q\nbecame\n%q", texts[i], got[i])
		}
	}
}
