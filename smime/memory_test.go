package smime

import (
	"context"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// genMessage streams a message of about size bytes without holding it: a
// header, then lines of a repeating pattern. With text it is a 7bit
// text/plain body (longer than the sniff buffer, so it is re-encoded);
// otherwise a base64 application/octet-stream body (passed through).
type genMessage struct {
	head []byte
	left int64
	line []byte
	off  int
}

func newGenMessage(size int64, text bool) *genMessage {
	head := "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: big\r\n" +
		"Content-Type: application/octet-stream; name=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	line := []byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n")
	if text {
		head = "From: alice@example.com\r\nTo: bob@example.org\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n"
		line = []byte("The quick brown fox jumps over the lazy dog = 0123456789 and again and again.\r\n")
	}
	return &genMessage{head: []byte(head), left: size, line: line}
}

func (g *genMessage) Read(p []byte) (int, error) {
	n := 0
	if len(g.head) > 0 {
		n = copy(p, g.head)
		g.head = g.head[n:]
		return n, nil
	}
	for n < len(p) && g.left > 0 {
		k := copy(p[n:], g.line[g.off:])
		if int64(k) > g.left {
			k = int(g.left)
		}
		n += k
		g.left -= int64(k)
		g.off = (g.off + k) % len(g.line)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// heapPeak samples the heap in use until stop is called and returns the
// highest value seen above the starting point.
func heapPeak() (stop func() uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base && ms.HeapInuse-base > peak.Load() {
				peak.Store(ms.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

// TestConstantMemory pushes a 100 MiB message through each writer, a pipe
// and Open, and checks that the heap never grows by more than 32 MiB. It
// asserts memory only, never time.
func TestConstantMemory(t *testing.T) {
	f := getFixture(t)
	const size = 100 << 20
	const limit = 32 << 20
	e := EncryptOptions{Recipients: []Recipient{{Certificate: f.alice.Cert}}}
	gcm := EncryptOptions{Recipients: []Recipient{{Certificate: f.carol.Cert}}, AllowModern: true}
	opaque := signOpts(f.alice)
	opaque.Opaque = true
	cases := []struct {
		name  string
		text  bool
		write func(ctx context.Context, w io.Writer, r io.Reader) error
	}{
		{"sign-detached", false, func(ctx context.Context, w io.Writer, r io.Reader) error { return Sign(ctx, w, r, signOpts(f.alice)) }},
		{"sign-detached-text-reencoded", true, func(ctx context.Context, w io.Writer, r io.Reader) error { return Sign(ctx, w, r, signOpts(f.alice)) }},
		{"sign-opaque", false, func(ctx context.Context, w io.Writer, r io.Reader) error { return Sign(ctx, w, r, opaque) }},
		{"encrypt-cbc", false, func(ctx context.Context, w io.Writer, r io.Reader) error { return Encrypt(ctx, w, r, e) }},
		{"encrypt-gcm", false, func(ctx context.Context, w io.Writer, r io.Reader) error { return Encrypt(ctx, w, r, gcm) }},
		{"sign-and-encrypt", false, func(ctx context.Context, w io.Writer, r io.Reader) error {
			return SignAndEncrypt(ctx, w, r, signOpts(f.alice), e)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			stop := heapPeak()
			pr, pw := io.Pipe()
			go func() {
				pw.CloseWithError(c.write(ctx, pw, newGenMessage(size, c.text)))
			}()
			out := &countWriter{w: io.Discard}
			o := f.opts()
			o.FindKey = keyFor(f.alice, f.carol)
			o.SpoolDir = t.TempDir()
			st, err := Open(ctx, out, pr, o)
			pr.CloseWithError(io.ErrClosedPipe)
			peak := stop()
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if out.n < size {
				t.Fatalf("only %d bytes came out", out.n)
			}
			if st.Signed && st.Signature != OutcomeGood || st.Encrypted && st.Decryption != DecryptionOK {
				t.Fatalf("status = %+v", st)
			}
			t.Logf("%s: %d MiB through, heap peak +%.1f MiB", c.name, out.n>>20, float64(peak)/(1<<20))
			if peak > limit {
				t.Fatalf("heap grew by %.1f MiB for a %d MiB message (limit %d MiB)", float64(peak)/(1<<20), size>>20, limit>>20)
			}
		})
	}
}
