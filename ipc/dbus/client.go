//go:build unix

package dbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// smallPayload is the size up to which the client passes a payload whose
// length it knows (a *bytes.Reader, *bytes.Buffer or *strings.Reader), and
// its result, in memory files instead of through pipes: no goroutines, and
// the daemon reads and writes them as regular files. When the connection
// cannot pass descriptors, such a payload goes as a byte array through the
// *Bytes variant instead. (godbus encodes and decodes byte arrays one
// element at a time, nearly a microsecond per byte of payload and result:
// a 4 KiB message took 3 ms that way, a tenth of that in memory files.)
const smallPayload = 64 << 10

// ClientOptions configures Dial.
type ClientOptions struct {
	// Address is a D-Bus address. Empty means the session bus: the address
	// in DBUS_SESSION_BUS_ADDRESS, or else $XDG_RUNTIME_DIR/bus when that
	// socket exists. The client never launches a bus.
	Address string
}

// Client calls smimed over D-Bus. It implements ipc.Service and is safe for
// concurrent use. Errors the daemon reports are *ipc.Error values with the
// name and message it sent, so errors.Is(err, &ipc.Error{Name: ipc.PinLocked})
// works. Errors that mean the daemon cannot be reached wrap ErrUnreachable.
//
// D-Bus cannot cancel a call. When ctx ends, a method returns at once and
// closes the pipes it made, so a Sign, Encrypt, Decrypt or Verify reading or
// writing them on the daemon fails. Anything else, small in-memory payloads
// included (see stream), runs on until it is done, or until the Client is
// closed: leaving the bus cancels every request of this client on the
// daemon.
//
// RegisterPromptAgent lets the client show the daemon's prompts for its own
// requests itself.
type Client struct {
	conn *godbus.Conn
	obj  godbus.BusObject
	fds  bool // the connection can pass file descriptors

	agentMu   sync.Mutex
	agent     ipc.PromptAgent // registered with the daemon; nil when none
	agentCtx  context.Context // parent of the prompts' contexts; ends at unregistration or Close
	agentStop context.CancelFunc
	asks      map[askKey]context.CancelFunc // prompts being shown
	early     map[askKey]time.Time          // Cancels that came before their Ask
}

var _ ipc.Service = (*Client)(nil)

// Dial connects to the bus. It does not check that smimed runs: the bus
// may start it on the first call (D-Bus activation). When there is no bus,
// the error wraps ErrUnreachable.
func Dial(ctx context.Context, opts ClientOptions) (*Client, error) {
	addr := opts.Address
	if addr == "" {
		addr = sessionBusAddress()
		if addr == "" {
			return nil, fmt.Errorf("%w: no session bus (DBUS_SESSION_BUS_ADDRESS is not set)", ErrUnreachable)
		}
	}
	type result struct {
		conn *godbus.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := godbus.Connect(addr)
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("%w: connecting to the bus at %s: %v", ErrUnreachable, addr, r.err)
		}
		return &Client{conn: r.conn, obj: r.conn.Object(BusName, ObjectPath), fds: r.conn.SupportsUnixFDs()}, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func sessionBusAddress() string {
	if a := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		return a
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		p := filepath.Join(dir, "bus")
		if fi, err := os.Stat(p); err == nil && fi.Mode().Type() == os.ModeSocket {
			return "unix:path=" + p
		}
	}
	return ""
}

// Close closes the connection to the bus. Requests still running on the
// daemon are cancelled, because this caller leaves the bus.
func (c *Client) Close() error { return c.conn.Close() }

// Signals subscribes to the daemon's signals and delivers their names
// ("IdentitiesChanged", "CertificatesChanged") until ctx is done or the
// connection closes; then the channel is closed. A slow reader gets each
// pending name once, not every repetition. Signals emitted after Signals
// returns are delivered.
func (c *Client) Signals(ctx context.Context) (<-chan string, error) {
	match := []godbus.MatchOption{
		godbus.WithMatchSender(BusName),
		godbus.WithMatchObjectPath(ObjectPath),
		godbus.WithMatchInterface(Interface),
	}
	in := make(chan *godbus.Signal, 16)
	c.conn.Signal(in)
	if err := c.conn.AddMatchSignalContext(ctx, match...); err != nil {
		c.conn.RemoveSignal(in)
		return nil, c.mapError("Signals", err)
	}
	out := make(chan string)
	go func() {
		defer close(out)
		defer func() {
			c.conn.RemoveSignal(in)
			if c.conn.Connected() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				_ = c.conn.RemoveMatchSignalContext(rctx, match...)
			}
		}()
		var pending []string
		for {
			var send chan<- string
			var next string
			if len(pending) > 0 {
				send, next = out, pending[0]
			}
			select {
			case <-ctx.Done():
				return
			case sig, ok := <-in:
				if !ok {
					return
				}
				name, ok := strings.CutPrefix(sig.Name, Interface+".")
				if !ok || sig.Path != ObjectPath || slices.Contains(pending, name) {
					continue
				}
				pending = append(pending, name)
			case send <- next:
				pending = pending[1:]
			}
		}
	}()
	return out, nil
}

// Status implements ipc.Service.
func (c *Client) Status(ctx context.Context) (ipc.DaemonStatus, error) {
	var st ipc.DaemonStatus
	return st, c.callJSON(ctx, "Status", &st)
}

// Identities implements ipc.Service.
func (c *Client) Identities(ctx context.Context) ([]ipc.Identity, error) {
	var ids []ipc.Identity
	return ids, c.callJSON(ctx, "Identities", &ids)
}

// Tokens implements ipc.Service.
func (c *Client) Tokens(ctx context.Context) ([]ipc.Token, error) {
	var ts []ipc.Token
	return ts, c.callJSON(ctx, "Tokens", &ts)
}

// ImportPKCS12 implements ipc.Service. A nil password lets the daemon ask
// the user.
func (c *Client) ImportPKCS12(ctx context.Context, data, password []byte) (ipc.Identity, error) {
	opts := map[string]godbus.Variant{}
	if password != nil {
		opts["password"] = godbus.MakeVariant(password)
	}
	var id ipc.Identity
	return id, c.callJSON(ctx, "ImportPKCS12", &id, data, opts)
}

// TrustAdd implements ipc.Service.
func (c *Client) TrustAdd(ctx context.Context, certs []byte) ([]ipc.Certificate, error) {
	var cs []ipc.Certificate
	return cs, c.callJSON(ctx, "TrustAdd", &cs, certs)
}

// TrustList implements ipc.Service.
func (c *Client) TrustList(ctx context.Context) ([]ipc.Certificate, error) {
	var cs []ipc.Certificate
	return cs, c.callJSON(ctx, "TrustList", &cs)
}

// TrustRemove implements ipc.Service.
func (c *Client) TrustRemove(ctx context.Context, certs []byte) ([]ipc.Certificate, error) {
	var cs []ipc.Certificate
	return cs, c.callJSON(ctx, "TrustRemove", &cs, certs)
}

// CertsAdd implements ipc.Service.
func (c *Client) CertsAdd(ctx context.Context, data []byte) ([]ipc.Certificate, error) {
	var cs []ipc.Certificate
	return cs, c.callJSON(ctx, "CertsAdd", &cs, data)
}

// CertsList implements ipc.Service.
func (c *Client) CertsList(ctx context.Context) ([]ipc.Certificate, error) {
	var cs []ipc.Certificate
	return cs, c.callJSON(ctx, "CertsList", &cs)
}

// CertsFind implements ipc.Service.
func (c *Client) CertsFind(ctx context.Context, email string) (ipc.CertLookup, error) {
	var l ipc.CertLookup
	return l, c.callJSON(ctx, "CertsFind", &l, email)
}

// Sign implements ipc.Service. See the Client type for how in and out
// travel.
func (c *Client) Sign(ctx context.Context, req ipc.SignRequest, in io.Reader, out io.Writer) error {
	_, err := c.stream(ctx, "Sign", encodeOptions(req), in, out)
	return err
}

// Encrypt implements ipc.Service.
func (c *Client) Encrypt(ctx context.Context, req ipc.EncryptRequest, in io.Reader, out io.Writer) error {
	_, err := c.stream(ctx, "Encrypt", encodeOptions(req), in, out)
	return err
}

// Decrypt implements ipc.Service.
func (c *Client) Decrypt(ctx context.Context, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	return c.openStream(ctx, "Decrypt", req, in, out)
}

// Verify implements ipc.Service.
func (c *Client) Verify(ctx context.Context, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	return c.openStream(ctx, "Verify", req, in, out)
}

func (c *Client) openStream(ctx context.Context, method string, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	var st ipc.MessageStatus
	body, err := c.stream(ctx, method, encodeOptions(req), in, out)
	if err != nil {
		return st, err
	}
	var s string
	if len(body) != 1 {
		return st, fmt.Errorf("smimed %s: malformed reply", method)
	}
	if s, _ = body[0].(string); s == "" {
		return st, fmt.Errorf("smimed %s: malformed reply", method)
	}
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return st, fmt.Errorf("smimed %s: malformed status in the reply: %w", method, err)
	}
	return st, nil
}

// callJSON calls method and decodes its JSON string result into v.
func (c *Client) callJSON(ctx context.Context, method string, v any, args ...any) error {
	call := c.obj.CallWithContext(ctx, Interface+"."+method, 0, args...)
	if call.Err != nil {
		return c.mapError(method, call.Err)
	}
	var s string
	if err := call.Store(&s); err != nil {
		return fmt.Errorf("smimed %s: malformed reply: %w", method, err)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("smimed %s: malformed JSON in the reply: %w", method, err)
	}
	return nil
}

// stream calls a message method and returns the rest of its reply.
//
// A payload of known small length travels with its result in memory files
// (see smallPayload), or as a byte array through the *Bytes variant when
// the connection cannot pass descriptors. Otherwise in and out travel as
// file descriptors. An *os.File that is a regular file, pipe or socket is
// passed as it is, and the daemon reads or writes it directly. Any other
// reader or writer, a terminal included, is connected through a pipe that
// goroutines copy, and stream returns only when those copies are done.
func (c *Client) stream(ctx context.Context, method string, opts map[string]godbus.Variant, in io.Reader, out io.Writer) ([]any, error) {
	if l, ok := in.(interface{ Len() int }); ok && l.Len() <= smallPayload {
		if !c.fds {
			return c.streamBytes(ctx, method, opts, in, out)
		}
		if src, dst, err := newMemFiles(); err == nil {
			return c.streamMemory(ctx, method, opts, src, dst, in, out)
		}
		// No memory files on this system: pipes, as for any reader.
	}
	if !c.fds {
		return nil, fmt.Errorf("smimed %s: the bus connection cannot pass file descriptors", method)
	}
	src, err := newSource(in)
	if err != nil {
		return nil, err
	}
	dst, err := newSink(out)
	if err != nil {
		src.abort()
		return nil, err
	}
	return c.callStreams(ctx, method, opts, src, dst)
}

// callStreams calls method with the descriptors of src and dst and waits
// for its reply and for their copies, if any.
func (c *Client) callStreams(ctx context.Context, method string, opts map[string]godbus.Variant, src, dst *handoff) ([]any, error) {
	var call *godbus.Call
	err := withFDs(src.send, dst.send, func(inFD, outFD uintptr) {
		call = c.obj.GoWithContext(ctx, Interface+"."+method, 0, make(chan *godbus.Call, 1),
			opts, godbus.UnixFD(inFD), godbus.UnixFD(outFD))
	})
	// The message is sent (or failed): our copies of the pipe ends the
	// daemon now holds must go, or the daemon never sees the end of its
	// output pipe and our copy of its input pipe could fill up.
	src.sent()
	dst.sent()
	if err != nil {
		src.abort()
		dst.abort()
		return nil, fmt.Errorf("smimed %s: passing the streams: %w", method, err)
	}
	call = <-call.Done
	if call.Err != nil {
		// Whatever the daemon did, stop copying.
		src.abort()
		dst.abort()
	}
	werr := dst.wait(ctx)
	rerr := src.wait(ctx)
	switch {
	case werr != nil:
		return nil, fmt.Errorf("writing the output: %w", werr)
	case rerr != nil:
		return nil, fmt.Errorf("reading the input: %w", rerr)
	case call.Err != nil:
		return nil, c.mapError(method, call.Err)
	}
	return call.Body, nil
}

// streamMemory passes in through the memory file src and, once the daemon
// has answered, copies what it wrote to the memory file dst to out, as the
// *Bytes variants would. It closes both files.
func (c *Client) streamMemory(ctx context.Context, method string, opts map[string]godbus.Variant, src, dst *os.File, in io.Reader, out io.Writer) ([]any, error) {
	defer src.Close()
	defer dst.Close()
	if _, err := io.Copy(src, in); err != nil {
		return nil, fmt.Errorf("reading the input: %w", err)
	}
	// The daemon shares the files' offsets: it reads from the start and
	// writes from the start.
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("smimed %s: passing the streams: %w", method, err)
	}
	body, err := c.callStreams(ctx, method, opts, &handoff{send: src}, &handoff{send: dst})
	if err != nil {
		return nil, err
	}
	// The daemon closed its copy of dst before it answered: the result is
	// complete.
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("smimed %s: reading the result: %w", method, err)
	}
	if _, err := io.Copy(out, dst); err != nil {
		return nil, fmt.Errorf("writing the output: %w", err)
	}
	return body, nil
}

func (c *Client) streamBytes(ctx context.Context, method string, opts map[string]godbus.Variant, in io.Reader, out io.Writer) ([]any, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("reading the input: %w", err)
	}
	call := c.obj.CallWithContext(ctx, Interface+"."+method+"Bytes", 0, opts, data)
	if call.Err != nil {
		return nil, c.mapError(method, call.Err)
	}
	if len(call.Body) == 0 {
		return nil, fmt.Errorf("smimed %s: malformed reply", method)
	}
	res, ok := call.Body[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("smimed %s: malformed reply", method)
	}
	if _, err := out.Write(res); err != nil {
		return nil, fmt.Errorf("writing the output: %w", err)
	}
	return call.Body[1:], nil
}

// mapError turns a godbus error into what the client reports.
func (c *Client) mapError(method string, err error) error {
	var de godbus.Error
	if pe := (*godbus.Error)(nil); errors.As(err, &pe) && pe != nil {
		de = *pe
	} else if !errors.As(err, &de) {
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return err
		case !c.conn.Connected() || errors.Is(err, godbus.ErrClosed):
			return fmt.Errorf("%w: the bus connection closed: %v", ErrUnreachable, err)
		}
		return fmt.Errorf("smimed %s: %w", method, err)
	}
	msg := de.Error()
	switch de.Name {
	case errServiceUnknown, errNameHasNoOwner, errNoServer, errNoReply, errDisconnected:
		return fmt.Errorf("%w: %s", ErrUnreachable, msg)
	case errUnknownMethod, errUnknownObject, errNoSuchObject, errUnknownIface:
		return &ipc.Error{Name: ipc.Unsupported, Message: fmt.Sprintf("this smimed does not offer %s; it may be older than this client (%s)", method, msg)}
	}
	if name, ok := strings.CutPrefix(de.Name, ErrorPrefix); ok {
		return &ipc.Error{Name: ipc.ErrorName(name), Message: msg}
	}
	return fmt.Errorf("smimed %s: %s: %s", method, de.Name, msg)
}

// handoff is one stream of a call as a descriptor for the daemon.
type handoff struct {
	send  *os.File // the file whose descriptor travels
	own   bool     // send is our pipe end, closed once it has travelled
	local *os.File // our end of the pipe, nil when send is the caller's file
	done  chan error
}

// passable says whether the daemon may use f directly: regular files, pipes
// and sockets. Terminals and other devices are copied through a pipe.
func passable(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	m := fi.Mode()
	return m.IsRegular() || m&(os.ModeNamedPipe|os.ModeSocket) != 0
}

func newSource(r io.Reader) (*handoff, error) {
	if f, ok := r.(*os.File); ok && passable(f) {
		return &handoff{send: f}, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("making a pipe for the input: %w", err)
	}
	h := &handoff{send: pr, own: true, local: pw, done: make(chan error, 1)}
	go func() {
		er := &errReader{r: r}
		_, _ = io.Copy(pw, er) // a write error means the daemon stopped reading
		_ = pw.Close()
		h.done <- er.err
	}()
	return h, nil
}

func newSink(w io.Writer) (*handoff, error) {
	if f, ok := w.(*os.File); ok && passable(f) {
		return &handoff{send: f}, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("making a pipe for the output: %w", err)
	}
	h := &handoff{send: pw, own: true, local: pr, done: make(chan error, 1)}
	go func() {
		ew := &errWriter{w: w}
		_, _ = io.Copy(ew, pr)
		_ = pr.Close() // the daemon gets EPIPE when we could not write
		h.done <- ew.err
	}()
	return h, nil
}

func (h *handoff) sent() {
	if h.own {
		_ = h.send.Close()
	}
}

// abort stops the copy goroutine, if any, by closing our end of the pipe.
func (h *handoff) abort() {
	if h.own {
		_ = h.send.Close()
	}
	if h.local != nil {
		_ = h.local.Close()
	}
}

// wait returns the copy goroutine's error once it is done; when ctx ends
// first it closes the pipe and returns without waiting.
func (h *handoff) wait(ctx context.Context) error {
	if h.done == nil {
		return nil
	}
	select {
	case err := <-h.done:
		return err
	case <-ctx.Done():
		h.abort()
		return nil
	}
}

// withFDs runs fn with the descriptors of a and b, without switching them
// to blocking mode as (*os.File).Fd would.
func withFDs(a, b *os.File, fn func(a, b uintptr)) error {
	ra, err := a.SyscallConn()
	if err != nil {
		return err
	}
	rb, err := b.SyscallConn()
	if err != nil {
		return err
	}
	var inner error
	err = ra.Control(func(fa uintptr) {
		inner = rb.Control(func(fb uintptr) { fn(fa, fb) })
	})
	if err != nil {
		return err
	}
	return inner
}

// errReader remembers the error of the reader it wraps.
type errReader struct {
	r   io.Reader
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// errWriter remembers the error of the writer it wraps.
type errWriter struct {
	w   io.Writer
	err error
}

func (w *errWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
	}
	return n, err
}
