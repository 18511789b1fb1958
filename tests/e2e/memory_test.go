//go:build linux

package e2e_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeLargeMessage writes a text mail of at least size bytes: 7-bit CRLF
// lines of 76 characters.
func writeLargeMessage(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: large\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", 2)[:76] + "\r\n"
	for n := int64(0); n < size; n += int64(len(line)) {
		w.WriteString(line)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A 100 MiB message signed and verified through file descriptors: the
// daemon's peak memory (VmHWM) grows by less than 64 MiB.
func TestLargeMessageBoundedMemory(t *testing.T) {
	t.Parallel()
	const (
		size  = 100 << 20
		bound = 64 << 10 // KiB
	)
	pp := newPeople(t)
	s := newSandbox(t, options{})
	s.importP12(pp.alice)
	s.trustRoot(pp.pki)

	// Warm up: one small signature, so the key's unlock (scrypt's 32 MiB)
	// and the code paths are in the baseline.
	small := s.file("small.eml", []byte(message))
	s.setPINs(passphrase)
	s.must("sign", "--from", alice, "--in", small, "--out", filepath.Join(s.root, "small.signed"))
	s.must("verify", "--in", filepath.Join(s.root, "small.signed"))
	before := vmKiB(t, s.pid(), "VmHWM")

	big := filepath.Join(s.root, "big.eml")
	writeLargeMessage(t, big, size)
	signed := filepath.Join(s.root, "big.signed")
	s.setPINs(passphrase)
	s.must("sign", "--from", alice, "--in", big, "--out", signed)
	afterSign := vmKiB(t, s.pid(), "VmHWM")
	if fi, err := os.Stat(signed); err != nil || fi.Size() < size {
		t.Fatalf("signed output: %v %v", fi, err)
	}

	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if r := s.ctlTo(devnull, "verify", "--in", signed); r.code != 0 {
		t.Fatalf("verify of the large message: %v", r)
	}
	afterVerify := vmKiB(t, s.pid(), "VmHWM")
	t.Logf("smimed VmHWM: %d KiB before, %d KiB after signing 100 MiB, %d KiB after verifying it", before, afterSign, afterVerify)
	if afterVerify-before >= bound {
		t.Errorf("smimed's peak memory grew by %d KiB for a 100 MiB message, want < %d KiB", afterVerify-before, bound)
	}
}
