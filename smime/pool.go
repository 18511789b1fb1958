package smime

import (
	"bufio"
	"io"
	"sync"
)

// Buffers of the reading path, recycled between messages: a small message
// would otherwise allocate (and clear) a few hundred KiB of buffers per
// call, which a daemon serving one message after another pays for in
// garbage collections. A buffer goes back to its pool only once nothing
// can read or write it any more (every goroutine that used it has ended);
// on any doubt (an error path, a panic) it is simply left to the garbage
// collector.

// readerPool recycles bufio.Readers of one size.
type readerPool struct {
	size int
	pool sync.Pool
}

func newReaderPool(size int) *readerPool { return &readerPool{size: size} }

// get returns a reader of the pool's size reading r.
func (p *readerPool) get(r io.Reader) *bufio.Reader {
	if br, ok := p.pool.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, p.size)
}

// put recycles br, which the caller no longer uses. It drops br's source
// and buffered bytes first.
func (p *readerPool) put(br *bufio.Reader) {
	if br == nil || br.Size() != p.size {
		return
	}
	br.Reset(nil)
	p.pool.Put(br)
}

// The readers of the reading path, by size.
var (
	// mimeReaders are the MIME readers of every layer (bufSize).
	mimeReaders = newReaderPool(bufSize)
	// berReaders buffer a signature part for the BER decoder; the size
	// the decoder would choose itself.
	berReaders = newReaderPool(64 << 10)
	// bodyReaders buffer a pkcs7-mime body.
	bodyReaders = newReaderPool(32 << 10)
	// partReaders read the signature part of multipart/signed.
	partReaders = newReaderPool(16 << 10)
	// headerReaders feed one header section to the parser.
	headerReaders = newReaderPool(4096)
)

// copyBufSize is the buffer of copyBuf, io.Copy's own size.
const copyBufSize = 32 << 10

// copyBufs recycles the buffers of copyBuf and of base64Reader.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// copyBuf is io.Copy with a recycled buffer (io.CopyBuffer: a WriterTo or
// ReaderFrom is used as io.Copy uses it).
func copyBuf(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(dst, src, *bp)
	copyBufs.Put(bp)
	return n, err
}
