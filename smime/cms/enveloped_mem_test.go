package cms

import (
	"bytes"
	"crypto/sha256"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"
)

// envGen is an endless reader of pseudo-random bytes: content that exists
// nowhere in memory as a whole.
type envGen struct{ x uint64 }

func (g *envGen) Read(p []byte) (int, error) {
	if g.x == 0 {
		g.x = 0x9e3779b97f4a7c15
	}
	for i := range p {
		g.x ^= g.x << 13
		g.x ^= g.x >> 7
		g.x ^= g.x << 17
		p[i] = byte(g.x >> 32)
	}
	return len(p), nil
}

// envHeapSampler records the highest HeapInuse seen while it runs.
type envHeapSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	peak uint64
}

func envSampleHeap() *envHeapSampler {
	s := &envHeapSampler{stop: make(chan struct{})}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		var ms runtime.MemStats
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			s.peak = max(s.peak, ms.HeapInuse)
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *envHeapSampler) Stop() uint64 {
	close(s.stop)
	s.done.Wait()
	return s.peak
}

// TestStreamingMemory encrypts 64 MiB from a generator into a pipe and
// decrypts it from the other end, for CBC and GCM. The heap must stay flat:
// a peak HeapInuse increase under 8 MiB and under 16 MiB allocated in all,
// for 64 MiB of content (and as much ciphertext) passing through.
func TestStreamingMemory(t *testing.T) {
	f := envPKI(t)
	const size = 64 << 20
	for _, c := range []ContentCipher{AES256CBC, AES256GCM} {
		t.Run(c.String(), func(t *testing.T) {
			spool := t.TempDir()
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			sampler := envSampleHeap()

			pr, pw := io.Pipe()
			sent := sha256.New()
			go func() {
				w, err := NewEncrypter(pw, EncryptOptions{Recipients: []Recipient{{Certificate: f.p256.Cert}}, Cipher: c})
				if err == nil {
					_, err = io.Copy(w, io.TeeReader(io.LimitReader(&envGen{}, size), sent))
					if cerr := w.Close(); err == nil {
						err = cerr
					}
				}
				pw.CloseWithError(err)
			}()
			er, err := NewEnvelopedReader(pr)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := er.Decrypt(f.p256.Key, f.p256.Cert, DecryptOptions{SpoolDir: spool})
			if err != nil {
				t.Fatal(err)
			}
			got := sha256.New()
			n, err := io.Copy(got, rc)
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()

			peak := sampler.Stop()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if n != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
				t.Fatalf("round trip of %d bytes differs (%d bytes back)", size, n)
			}
			heap := int64(peak) - int64(before.HeapInuse)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%v: peak HeapInuse +%.2f MiB, allocated %.2f MiB for %d MiB", c, float64(heap)/(1<<20), float64(alloc)/(1<<20), size>>20)
			if heap > 8<<20 {
				t.Errorf("peak heap grew by %d bytes", heap)
			}
			if alloc > 16<<20 {
				t.Errorf("allocated %d bytes", alloc)
			}
		})
	}
}
