package smime

import (
	"io"
	"sync"
)

// Pipelining: the base64 stage of a pkcs7-mime body runs in its own
// goroutine, so that on a machine with two or more cores it overlaps the
// cipher or the hash. A fixed number of fixed-size buffers circulate, so
// memory stays bounded.
const (
	asyncBuffers = 4
	asyncBufSize = 64 << 10
)

// bufPool recycles the stage buffers between messages.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, asyncBufSize)
	return &b
}}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:asyncBufSize] }

func putBuf(b []byte) {
	b = b[:cap(b)]
	bufPool.Put(&b)
}

// asyncWriter hands what is written to it to a goroutine that writes it to
// w. Close must be called (it waits for the goroutine); the first error of
// w is returned by a later Write or by Close.
type asyncWriter struct {
	w      io.Writer
	ch     chan []byte
	free   chan []byte
	done   chan struct{}
	cur    []byte
	closed bool

	mu  sync.Mutex
	err error
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{
		w:    w,
		ch:   make(chan []byte, asyncBuffers),
		free: make(chan []byte, asyncBuffers+1),
		done: make(chan struct{}),
	}
	for i := 0; i < asyncBuffers+1; i++ {
		a.free <- getBuf()[:0]
	}
	go a.loop()
	return a
}

func (a *asyncWriter) loop() {
	defer close(a.done)
	for b := range a.ch {
		if a.getErr() == nil {
			if _, err := a.w.Write(b); err != nil {
				a.mu.Lock()
				a.err = err
				a.mu.Unlock()
			}
		}
		a.free <- b[:0]
	}
}

func (a *asyncWriter) getErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	if err := a.getErr(); err != nil {
		return 0, err
	}
	n := len(p)
	for len(p) > 0 {
		if a.cur == nil {
			a.cur = <-a.free
		}
		k := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+k]
		p = p[k:]
		if len(a.cur) == cap(a.cur) {
			a.ch <- a.cur
			a.cur = nil
		}
	}
	return n, nil
}

// Close sends what is buffered, waits until the goroutine has written
// everything and returns the first error. It may be called more than once.
func (a *asyncWriter) Close() error {
	if !a.closed {
		a.closed = true
		if len(a.cur) > 0 {
			a.ch <- a.cur
		}
		a.cur = nil
		close(a.ch)
		<-a.done
		// Every buffer is back in free now.
		for i := 0; i < asyncBuffers+1; i++ {
			putBuf(<-a.free)
		}
	}
	return a.getErr()
}

// asyncReader reads r in a goroutine, ahead of its caller. Close must be
// called; it stops the goroutine and waits for it, so r is never read after
// Close returns.
type asyncReader struct {
	ch   chan asyncChunk
	free chan []byte
	stop chan struct{}
	done chan struct{}
	cur  []byte
	buf  []byte // the buffer cur points into
	err  error
	once sync.Once
}

type asyncChunk struct {
	b   []byte
	err error
}

func newAsyncReader(r io.Reader) *asyncReader {
	a := &asyncReader{
		ch:   make(chan asyncChunk, asyncBuffers),
		free: make(chan []byte, asyncBuffers+1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for i := 0; i < asyncBuffers+1; i++ {
		a.free <- getBuf()
	}
	go func() {
		defer close(a.done)
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.stop:
				return
			}
			n, err := io.ReadFull(r, b)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			select {
			case a.ch <- asyncChunk{b[:n], err}:
			case <-a.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *asyncReader) Read(p []byte) (int, error) {
	for len(a.cur) == 0 {
		if a.err != nil {
			return 0, a.err
		}
		if a.buf != nil {
			a.free <- a.buf[:cap(a.buf)]
			a.buf = nil
		}
		c := <-a.ch
		a.buf, a.cur, a.err = c.b, c.b, c.err
	}
	n := copy(p, a.cur)
	a.cur = a.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it.
func (a *asyncReader) Close() error {
	a.once.Do(func() {
		close(a.stop)
		<-a.done
		// The goroutine has ended: every buffer is in ch, in free or in
		// buf.
		if a.buf != nil {
			putBuf(a.buf)
			a.buf, a.cur = nil, nil
		}
		for {
			select {
			case c := <-a.ch:
				putBuf(c.b)
				continue
			case b := <-a.free:
				putBuf(b)
				continue
			default:
			}
			break
		}
	})
	return nil
}
