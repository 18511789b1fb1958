//go:build linux

package dbus

import (
	"bytes"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/smimed/smimed/ipc"
)

// BenchmarkTransport measures the transport alone: round trips through a
// real dbus-daemon to a server whose service does next to nothing. ping is
// the floor (org.freedesktop.DBus.Peer.Ping, answered by godbus itself);
// the verify rows pass 4 KiB: verify-fd as regular files, as smimectl does,
// verify-memory from a bytes.Reader into a buffer (memory files),
// verify-pipe from a plain reader through pipes. It reports p50 and p99
// and asserts nothing about time.
//
//	go test ./ipc/dbus -run '^$' -bench Transport -benchtime 2000x
func BenchmarkTransport(b *testing.B) {
	e := newEnv(b, newFake(), ServerOptions{}, "")
	c := e.client(b)
	ctx := b.Context()
	raw := connect(b, e.addr)

	b.Run("ping", func(b *testing.B) {
		obj := raw.Object(BusName, ObjectPath)
		timed(b, func() {
			if call := obj.CallWithContext(ctx, "org.freedesktop.DBus.Peer.Ping", 0); call.Err != nil {
				b.Fatal(call.Err)
			}
		})
	})
	b.Run("status", func(b *testing.B) {
		timed(b, func() {
			if _, err := c.Status(ctx); err != nil {
				b.Fatal(err)
			}
		})
	})
	in := benchFile(b, bytes.Repeat([]byte("0123456789abcdef"), 256))
	out := benchFile(b, nil)
	b.Run("verify-fd", func(b *testing.B) {
		timedWithSetup(b, func() { rewind(b, in, out) }, func() {
			if _, err := c.Verify(ctx, ipc.OpenRequest{}, in, out); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("verify-memory", func(b *testing.B) {
		data := bytes.Repeat([]byte("0123456789abcdef"), 256)
		var out bytes.Buffer
		timed(b, func() {
			out.Reset()
			if _, err := c.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(data), &out); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("verify-pipe", func(b *testing.B) {
		data := bytes.Repeat([]byte("0123456789abcdef"), 256)
		timed(b, func() {
			if _, err := c.Verify(ctx, ipc.OpenRequest{}, onlyReader{bytes.NewReader(data)}, io.Discard); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// timed runs f b.N times and reports its p50 and p99 latency.
func timed(b *testing.B, f func()) { timedWithSetup(b, func() {}, f) }

func timedWithSetup(b *testing.B, setup, f func()) {
	var l []time.Duration
	for b.Loop() {
		setup()
		start := time.Now()
		f()
		l = append(l, time.Since(start))
	}
	slices.Sort(l)
	pct := func(p float64) float64 { return float64(l[int(p*float64(len(l)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

func benchFile(b *testing.B, data []byte) *os.File {
	f, err := os.CreateTemp(b.TempDir(), "bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	if _, err := f.Write(data); err != nil {
		b.Fatal(err)
	}
	return f
}

func rewind(b *testing.B, in, out *os.File) {
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	if err := out.Truncate(0); err != nil {
		b.Fatal(err)
	}
}
