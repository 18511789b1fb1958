//go:build linux

package dbus

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// busConfig is a session bus configuration like Debian's session.conf, with
// the socket at a path of our own. With anyUID, every user may connect.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    %s
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
  <limit name="max_incoming_bytes">1000000000</limit>
  <limit name="max_incoming_unix_fds">250000000</limit>
  <limit name="max_outgoing_bytes">1000000000</limit>
  <limit name="max_outgoing_unix_fds">250000000</limit>
  <limit name="max_message_size">1000000000</limit>
  <limit name="max_connections_per_user">100000</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
  <limit name="max_replies_per_connection">50000</limit>
</busconfig>
`

// startBus runs a private dbus-daemon for the test and returns its address.
func startBus(t testing.TB, anyUID bool) string {
	t.Helper()
	exe, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Fatalf("these tests need dbus-daemon (apt-get install -y dbus-daemon): %v", err)
	}
	dir, err := os.MkdirTemp("", "smimed-dbus-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	socket := filepath.Join(dir, "bus")
	allow := ""
	if anyUID {
		allow = `<allow user="*"/>`
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, busConfig, socket, allow), 0o644); err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pr.Close() }()
	var stderr bytes.Buffer
	cmd := exec.Command(exe, "--config-file="+cfg, "--nofork", "--print-address=3")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dbus-daemon: %v", err)
	}
	_ = pw.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v; stderr: %s", err, stderr.String())
	}
	if anyUID {
		if err := os.Chmod(socket, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(addr)
}

// connect opens a raw godbus connection to addr.
func connect(t testing.TB, addr string) *godbus.Conn {
	t.Helper()
	conn, err := godbus.Connect(addr)
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// nameWatch reports owner changes of BusName.
type nameWatch struct {
	ch chan [2]string // old, new owner
}

func watchName(t testing.TB, addr string) *nameWatch {
	t.Helper()
	conn := connect(t, addr)
	sigs := make(chan *godbus.Signal, 16)
	conn.Signal(sigs)
	err := conn.AddMatchSignal(godbus.WithMatchSender("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged"), godbus.WithMatchArg(0, BusName))
	if err != nil {
		t.Fatal(err)
	}
	w := &nameWatch{ch: make(chan [2]string, 16)}
	go func() {
		for s := range sigs {
			if s.Name == "org.freedesktop.DBus.NameOwnerChanged" && len(s.Body) == 3 {
				w.ch <- [2]string{s.Body[1].(string), s.Body[2].(string)}
			}
		}
	}()
	return w
}

// acquired waits until someone owns the name.
func (w *nameWatch) acquired(t testing.TB) {
	t.Helper()
	for ch := range w.ch {
		if ch[1] != "" {
			return
		}
	}
}

// released waits until nobody owns the name.
func (w *nameWatch) released(t *testing.T) {
	t.Helper()
	for ch := range w.ch {
		if ch[1] == "" {
			return
		}
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a bus with a server serving a fake.
type env struct {
	addr   string
	fake   *fake
	srv    *Server
	log    *syncBuffer
	cancel context.CancelFunc
	runErr chan error
}

// newEnv starts a bus (unless addr is given) and a server on it, and waits
// until the server owns the name.
func newEnv(t testing.TB, f *fake, opts ServerOptions, addr string) *env {
	t.Helper()
	if addr == "" {
		addr = startBus(t, false)
	}
	e := &env{addr: addr, fake: f, log: &syncBuffer{}, runErr: make(chan error, 1)}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	conn := connect(t, addr)
	srv, err := NewServer(conn, f, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	w := watchName(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.runErr <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		f.unblock()
		if err := <-e.runErr; err != nil && !strings.Contains(err.Error(), "connection closed") {
			t.Errorf("Run: %v", err)
		}
	})
	w.acquired(t)
	return e
}

func (e *env) client(t testing.TB) *Client {
	t.Helper()
	c, err := Dial(t.Context(), ClientOptions{Address: e.addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fake is an ipc.Service that records its calls. Configure it before the
// server starts or through its setters.
type fake struct {
	mu       sync.Mutex
	calls    map[string]int
	callers  []ipc.Caller
	requests []any // requests and arguments, in call order
	err      error
	panicIn  string
	hook     func(ctx context.Context) error // run by Sign, when set
	signIn   string                          // the type of the last Sign's input

	blockMu sync.Mutex
	block   chan struct{} // when set, Sign waits for it to close or for ctx
	entered chan string   // told when a blocking Sign starts
	ctxErrs chan error    // told the ctx error when a blocking Sign is cancelled

	active, maxActive atomic.Int32
}

func newFake() *fake {
	return &fake{calls: map[string]int{}, entered: make(chan string, 100), ctxErrs: make(chan error, 100)}
}

func (f *fake) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fake) setPanic(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.panicIn = method
}

// setHook makes Sign run fn with its context first and fail with fn's
// error.
func (f *fake) setHook(fn func(ctx context.Context) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = fn
}

// blockSign makes Sign wait until unblock.
func (f *fake) blockSign() {
	f.blockMu.Lock()
	defer f.blockMu.Unlock()
	f.block = make(chan struct{})
}

func (f *fake) unblock() {
	f.blockMu.Lock()
	defer f.blockMu.Unlock()
	if f.block != nil {
		close(f.block)
		f.block = nil
	}
}

func (f *fake) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fake) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fake) lastRequest() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		return nil
	}
	return f.requests[len(f.requests)-1]
}

func (f *fake) lastCaller() ipc.Caller {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.callers[len(f.callers)-1]
}

// enter records a call and applies the configured failure.
func (f *fake) enter(ctx context.Context, method string, req any) (func(), error) {
	f.mu.Lock()
	f.calls[method]++
	c, _ := ipc.CallerFrom(ctx)
	f.callers = append(f.callers, c)
	f.requests = append(f.requests, req)
	err, panicIn := f.err, f.panicIn
	f.mu.Unlock()
	if panicIn == method {
		panic("fake panics in " + method)
	}
	n := f.active.Add(1)
	for {
		m := f.maxActive.Load()
		if n <= m || f.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	return func() { f.active.Add(-1) }, err
}

func (f *fake) Status(ctx context.Context) (ipc.DaemonStatus, error) {
	done, err := f.enter(ctx, "Status", nil)
	defer done()
	return ipc.DaemonStatus{Version: "test", PID: os.Getpid(), Keystore: "file", Identities: 1}, err
}

func (f *fake) Identities(ctx context.Context) ([]ipc.Identity, error) {
	done, err := f.enter(ctx, "Identities", nil)
	defer done()
	return []ipc.Identity{{ID: "id1", Emails: []string{"a@example.org"}, CanSign: true}}, err
}

func (f *fake) Tokens(ctx context.Context) ([]ipc.Token, error) {
	done, err := f.enter(ctx, "Tokens", nil)
	defer done()
	return nil, err // nil must arrive as an empty list
}

type importArgs struct{ data, password []byte }

func (f *fake) ImportPKCS12(ctx context.Context, data, password []byte) (ipc.Identity, error) {
	done, err := f.enter(ctx, "ImportPKCS12", importArgs{bytes.Clone(data), bytes.Clone(password)})
	defer done()
	return ipc.Identity{ID: "imported", Label: string(data)}, err
}

func certsFrom(data []byte) []ipc.Certificate {
	return []ipc.Certificate{{SHA256: fmt.Sprintf("%x", data), Emails: []string{"b@example.org"}}}
}

func (f *fake) TrustAdd(ctx context.Context, certs []byte) ([]ipc.Certificate, error) {
	done, err := f.enter(ctx, "TrustAdd", bytes.Clone(certs))
	defer done()
	return certsFrom(certs), err
}

func (f *fake) TrustList(ctx context.Context) ([]ipc.Certificate, error) {
	done, err := f.enter(ctx, "TrustList", nil)
	defer done()
	return certsFrom([]byte("anchor")), err
}

func (f *fake) TrustRemove(ctx context.Context, certs []byte) ([]ipc.Certificate, error) {
	done, err := f.enter(ctx, "TrustRemove", bytes.Clone(certs))
	defer done()
	return certsFrom(certs), err
}

func (f *fake) CertsAdd(ctx context.Context, data []byte) ([]ipc.Certificate, error) {
	done, err := f.enter(ctx, "CertsAdd", bytes.Clone(data))
	defer done()
	return certsFrom(data), err
}

func (f *fake) CertsList(ctx context.Context) ([]ipc.Certificate, error) {
	done, err := f.enter(ctx, "CertsList", nil)
	defer done()
	return certsFrom([]byte("book")), err
}

func (f *fake) CertsFind(ctx context.Context, email string) (ipc.CertLookup, error) {
	done, err := f.enter(ctx, "CertsFind", email)
	defer done()
	return ipc.CertLookup{Email: email, Reason: "none-found"}, err
}

// Sign writes "signed by <from>\n" and the input. It blocks first when
// blockSign was called.
func (f *fake) Sign(ctx context.Context, req ipc.SignRequest, in io.Reader, out io.Writer) error {
	done, err := f.enter(ctx, "Sign", req)
	defer done()
	if err != nil {
		return err
	}
	f.mu.Lock()
	hook := f.hook
	f.signIn = fmt.Sprintf("%T", in)
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return err
		}
	}
	f.blockMu.Lock()
	block := f.block
	f.blockMu.Unlock()
	if block != nil {
		f.entered <- "Sign"
		select {
		case <-block:
		case <-ctx.Done():
			f.ctxErrs <- ctx.Err()
			return ctx.Err()
		}
	}
	if _, err := fmt.Fprintf(out, "signed by %s\n", req.From); err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return err
}

func (f *fake) Encrypt(ctx context.Context, req ipc.EncryptRequest, in io.Reader, out io.Writer) error {
	done, err := f.enter(ctx, "Encrypt", req)
	defer done()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "encrypted to %s\n", strings.Join(req.To, ",")); err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return err
}

func (f *fake) open(ctx context.Context, method string, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	done, err := f.enter(ctx, method, req)
	defer done()
	st := ipc.MessageStatus{Signed: true, Signature: "good", Signer: ipc.SignerSummary{Email: req.From},
		Decryption: "none", Layers: []ipc.Layer{{Type: "signed"}}}
	if method == "Decrypt" {
		st.Encrypted, st.Decryption = true, "ok"
	}
	if err != nil {
		return ipc.MessageStatus{}, err
	}
	if _, err := io.Copy(out, in); err != nil {
		return ipc.MessageStatus{}, err
	}
	return st, nil
}

func (f *fake) Decrypt(ctx context.Context, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	return f.open(ctx, "Decrypt", req, in, out)
}

func (f *fake) Verify(ctx context.Context, req ipc.OpenRequest, in io.Reader, out io.Writer) (ipc.MessageStatus, error) {
	return f.open(ctx, "Verify", req, in, out)
}

var _ ipc.Service = (*fake)(nil)

// isName reports whether err is the *ipc.Error name.
func isName(err error, name ipc.ErrorName) bool {
	return errors.Is(err, &ipc.Error{Name: name})
}
