//go:build unix

package dbus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/smimed/smimed/ipc"
)

// maxBytesReply bounds the result of a *Bytes method, far above what a
// BytesLimit input turns into.
const maxBytesReply = 8 * BytesLimit

// closeFDs closes the descriptors a message carried, for calls that do not
// use them. (godbus only substitutes descriptors at the top level of a body,
// and leaves those of calls it refuses itself open; neither can be reached
// from here.)
func closeFDs(body []any) {
	for _, v := range body {
		if fd, ok := v.(godbus.UnixFD); ok {
			_ = unix.Close(int(fd))
		}
	}
}

// fdStream is a descriptor received from a caller.
type fdStream struct {
	f *os.File
	// restore says that we set O_NONBLOCK, which the caller may share with
	// other processes, and must clear it again.
	restore bool
	// nonblock says that the descriptor is in non-blocking mode, so that
	// a deadline can interrupt its reads and writes. (A regular file never
	// needs that: its reads and writes do not wait for a peer.)
	nonblock bool
}

// openFD takes ownership of fd. Pipes and sockets are switched to
// non-blocking mode so that their reads and writes can be interrupted when
// the request is cancelled. Their original mode is restored at close.
func openFD(fd int, name string, write bool) (*fdStream, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, badArg("%s is not a usable file descriptor", name)
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		_ = unix.Close(fd)
		return nil, badArg("%s is not a usable file descriptor", name)
	}
	kind := st.Mode & unix.S_IFMT
	acc := flags & unix.O_ACCMODE
	switch {
	case kind == unix.S_IFDIR:
		_ = unix.Close(fd)
		return nil, badArg("%s is a directory", name)
	case write && acc == unix.O_RDONLY:
		_ = unix.Close(fd)
		return nil, badArg("%s is not open for writing", name)
	case !write && acc == unix.O_WRONLY:
		_ = unix.Close(fd)
		return nil, badArg("%s is not open for reading", name)
	}
	s := &fdStream{nonblock: flags&unix.O_NONBLOCK != 0}
	if (kind == unix.S_IFIFO || kind == unix.S_IFSOCK) && !s.nonblock {
		if unix.SetNonblock(fd, true) == nil {
			s.restore, s.nonblock = true, true
		}
	}
	s.f = os.NewFile(uintptr(fd), name)
	return s, nil
}

func (s *fdStream) close() {
	if s.restore {
		if rc, err := s.f.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) { _ = unix.SetNonblock(int(fd), false) })
		}
	}
	_ = s.f.Close()
}

// streamReader is the input the service reads: bounded by the size limit
// and interrupted when the request is cancelled. It deliberately offers
// only Read, so copies go through small buffers.
type streamReader struct {
	r        io.Reader
	ctx      context.Context
	left     int64
	limit    int64
	exceeded atomic.Bool
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.exceeded.Load() {
		return 0, r.tooLarge()
	}
	if int64(len(p))-1 > r.left {
		p = p[:r.left+1] // one byte more tells that the limit is exceeded
	}
	n, err := r.r.Read(p)
	if int64(n) > r.left {
		r.exceeded.Store(true)
		n = int(r.left)
		r.left = 0
		return n, r.tooLarge()
	}
	r.left -= int64(n)
	if err != nil && err != io.EOF {
		if r.ctx.Err() != nil {
			return n, ipc.Errorf(ipc.Cancelled, "the caller went away")
		}
		return n, ipc.Errorf(ipc.Internal, "reading the input: %w", err)
	}
	return n, err
}

func (r *streamReader) tooLarge() error {
	return ipc.Errorf(ipc.TooLarge, "the message exceeds the limit of %d bytes", r.limit)
}

// streamWriter is the output the service writes to.
type streamWriter struct {
	w   io.Writer
	ctx context.Context
}

func (w *streamWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		var ie *ipc.Error
		switch {
		case errors.As(err, &ie):
		case w.ctx.Err() != nil:
			err = ipc.Errorf(ipc.Cancelled, "the caller went away")
		default:
			err = ipc.Errorf(ipc.Internal, "writing the output: %w", err)
		}
	}
	return n, err
}

// withStreams runs op with the descriptors at body[inIdx] and body[outIdx]
// as its input and output. It closes them before returning, so the reply
// follows the end of the output. The values must be real descriptors that
// arrived with the message: godbus would also hand over fd-typed values
// without descriptors, and plain integers, as UnixFD.
func (s *Server) withStreams(ctx context.Context, body []any, inIdx, outIdx int, op func(io.Reader, io.Writer) error) error {
	inFD, ok1 := body[inIdx].(godbus.UnixFD)
	outFD, ok2 := body[outIdx].(godbus.UnixFD)
	if !ok1 || !ok2 {
		closeFDs(body)
		return badArg("in and out must be file descriptors passed with the call")
	}
	if inFD == outFD {
		// The same descriptor twice (a crafted message): give each stream
		// its own.
		dup, err := unix.FcntlInt(uintptr(inFD), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			_ = unix.Close(int(inFD))
			return badArg("in is not a usable file descriptor")
		}
		outFD = godbus.UnixFD(dup)
	}
	in, err := openFD(int(inFD), "in", false)
	if err != nil {
		_ = unix.Close(int(outFD))
		return err
	}
	defer in.close()
	out, err := openFD(int(outFD), "out", true)
	if err != nil {
		return err
	}
	defer out.close()

	if in.nonblock || out.nonblock {
		stop := interruptOnCancel(ctx, in, out)
		defer stop()
	}

	r := &streamReader{r: in.f, ctx: ctx, left: s.maxBytes, limit: s.maxBytes}
	err = op(r, &streamWriter{w: out.f, ctx: ctx})
	if r.exceeded.Load() {
		return r.tooLarge()
	}
	return err
}

// interruptOnCancel makes the blocked reads and writes of the streams fail
// when ctx is cancelled, and returns the function that stops watching ctx.
func interruptOnCancel(ctx context.Context, streams ...*fdStream) (stop func() bool) {
	return context.AfterFunc(ctx, func() {
		past := time.Unix(1, 0)
		for _, s := range streams {
			_ = s.f.SetDeadline(past)
		}
	})
}

// withBytes runs op on a byte-array payload and returns what it wrote.
func (s *Server) withBytes(ctx context.Context, method string, data []byte, op func(io.Reader, io.Writer) error) ([]byte, error) {
	limit := min(int64(BytesLimit), s.maxBytes)
	if int64(len(data)) > limit {
		return nil, ipc.Errorf(ipc.TooLarge, "%d bytes exceed the limit of %d bytes of %sBytes; pass the message as a file descriptor to %s",
			len(data), limit, method, method)
	}
	out := &boundedBuffer{max: maxBytesReply, method: method}
	if err := op(bytes.NewReader(data), &streamWriter{w: out, ctx: ctx}); err != nil {
		return nil, err
	}
	return out.buf.Bytes(), nil
}

// boundedBuffer collects the result of a *Bytes method.
type boundedBuffer struct {
	buf    bytes.Buffer
	max    int
	method string
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		return 0, ipc.Errorf(ipc.TooLarge, "the result exceeds %d bytes; pass the message as a file descriptor to %s", b.max, b.method)
	}
	return b.buf.Write(p)
}
