//go:build linux

package dbus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/smimed/smimed/ipc"
)

var update = flag.Bool("update", false, "rewrite docs/org.smimed.Smimed1.xml from the code")

const helperEnv = "SMIMED_DBUS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "client" {
		os.Exit(helperClient())
	}
	os.Exit(m.Run())
}

// onlyReader hides everything but Read, so the client cannot see a length
// or a file and must stream through a pipe.
type onlyReader struct{ r io.Reader }

func (r onlyReader) Read(p []byte) (int, error) { return r.r.Read(p) }

// onlyWriter hides everything but Write.
type onlyWriter struct{ w io.Writer }

func (w onlyWriter) Write(p []byte) (int, error) { return w.w.Write(p) }

func TestRoundTripEveryMethod(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	c := e.client(t)
	ctx := t.Context()

	st, err := c.Status(ctx)
	if err != nil || st.Version != "test" || st.PID != os.Getpid() || st.Identities != 1 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	caller := f.lastCaller()
	exe, _ := os.Executable()
	if caller.UID != uint32(os.Getuid()) || caller.PID != uint32(os.Getpid()) || caller.Exe != exe || !strings.HasPrefix(caller.Name, ":") {
		t.Errorf("caller in ctx = %+v, want uid %d pid %d exe %s", caller, os.Getuid(), os.Getpid(), exe)
	}
	ids, err := c.Identities(ctx)
	if err != nil || len(ids) != 1 || ids[0].ID != "id1" || !ids[0].CanSign {
		t.Errorf("Identities = %+v, %v", ids, err)
	}
	toks, err := c.Tokens(ctx)
	if err != nil || toks == nil || len(toks) != 0 {
		t.Errorf("Tokens = %#v, %v; want an empty, non-nil list", toks, err)
	}

	id, err := c.ImportPKCS12(ctx, []byte("p12"), []byte("secret"))
	if err != nil || id.ID != "imported" || id.Label != "p12" {
		t.Errorf("ImportPKCS12 = %+v, %v", id, err)
	}
	if a := f.lastRequest().(importArgs); string(a.password) != "secret" {
		t.Errorf("password arrived as %q", a.password)
	}
	if _, err := c.ImportPKCS12(ctx, []byte("p12"), nil); err != nil {
		t.Fatal(err)
	}
	if a := f.lastRequest().(importArgs); a.password != nil {
		t.Errorf("nil password arrived as %q, want nil (ask the user)", a.password)
	}
	if _, err := c.ImportPKCS12(ctx, []byte("p12"), []byte{}); err != nil {
		t.Fatal(err)
	}
	if a := f.lastRequest().(importArgs); a.password == nil {
		t.Errorf("empty password arrived as nil, want empty")
	}

	for name, fn := range map[string]func(context.Context, []byte) ([]ipc.Certificate, error){
		"TrustAdd": c.TrustAdd, "TrustRemove": c.TrustRemove, "CertsAdd": c.CertsAdd,
	} {
		cs, err := fn(ctx, []byte{1, 2, 3})
		if err != nil || len(cs) != 1 || cs[0].SHA256 != "010203" {
			t.Errorf("%s = %+v, %v", name, cs, err)
		}
		if got := f.lastRequest().([]byte); !bytes.Equal(got, []byte{1, 2, 3}) {
			t.Errorf("%s got %x", name, got)
		}
	}
	if cs, err := c.TrustList(ctx); err != nil || len(cs) != 1 {
		t.Errorf("TrustList = %+v, %v", cs, err)
	}
	if cs, err := c.CertsList(ctx); err != nil || len(cs) != 1 {
		t.Errorf("CertsList = %+v, %v", cs, err)
	}
	l, err := c.CertsFind(ctx, "x@example.org")
	if err != nil || l.Email != "x@example.org" || l.Reason != "none-found" || l.Certificates == nil {
		t.Errorf("CertsFind = %+v, %v", l, err)
	}

	// The message methods, through each way a payload can travel.
	dir := t.TempDir()
	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	inFile := filepath.Join(dir, "in")
	if err := os.WriteFile(inFile, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	ways := []struct {
		name string
		in   func() io.Reader
		out  func() (io.Writer, func() []byte)
	}{
		{"bytes", func() io.Reader { return bytes.NewReader(msg) }, bufOut},
		{"pipe", func() io.Reader { return onlyReader{bytes.NewReader(msg)} }, func() (io.Writer, func() []byte) {
			var b bytes.Buffer
			return onlyWriter{&b}, b.Bytes
		}},
		{"files", func() io.Reader {
			f, err := os.Open(inFile)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Close() })
			return f
		}, func() (io.Writer, func() []byte) {
			f, err := os.CreateTemp(dir, "out")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = f.Close() })
			return f, func() []byte {
				b, err := os.ReadFile(f.Name())
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}},
		{"os-pipes", func() io.Reader {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, _ = pw.Write(msg)
				_ = pw.Close()
			}()
			t.Cleanup(func() { _ = pr.Close() })
			return pr
		}, func() (io.Writer, func() []byte) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(&b, pr)
				close(done)
			}()
			return pw, func() []byte {
				_ = pw.Close() // the daemon closed its copy; ours ends the stream
				<-done
				return b.Bytes()
			}
		}},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			out, got := w.out()
			req := ipc.SignRequest{From: "me@example.org", Opaque: true, Subject: "s", Counterpart: "you"}
			if err := c.Sign(ctx, req, w.in(), out); err != nil {
				t.Fatal(err)
			}
			if want := "signed by me@example.org\n" + string(msg); string(got()) != want {
				t.Errorf("Sign wrote %q, want %q", got(), want)
			}
			if r := f.lastRequest().(ipc.SignRequest); r != req {
				t.Errorf("Sign request arrived as %+v, want %+v", r, req)
			}

			out, got = w.out()
			ereq := ipc.EncryptRequest{To: []string{"a@x", "b@x"}, Sign: true, From: "me@x", Subject: "s"}
			if err := c.Encrypt(ctx, ereq, w.in(), out); err != nil {
				t.Fatal(err)
			}
			if want := "encrypted to a@x,b@x\n" + string(msg); string(got()) != want {
				t.Errorf("Encrypt wrote %q, want %q", got(), want)
			}
			if r := f.lastRequest().(ipc.EncryptRequest); !reflect.DeepEqual(r, ereq) {
				t.Errorf("Encrypt request arrived as %+v, want %+v", r, ereq)
			}

			for _, m := range []string{"Decrypt", "Verify"} {
				out, got = w.out()
				oreq := ipc.OpenRequest{From: "them@x", Subject: "s"}
				fn := c.Decrypt
				if m == "Verify" {
					fn = c.Verify
				}
				st, err := fn(ctx, oreq, w.in(), out)
				if err != nil {
					t.Fatalf("%s: %v", m, err)
				}
				if string(got()) != string(msg) {
					t.Errorf("%s wrote %q", m, got())
				}
				if st.Signature != "good" || st.Signer.Email != "them@x" || st.Encrypted != (m == "Decrypt") || len(st.Layers) != 1 {
					t.Errorf("%s status = %+v", m, st)
				}
				if r := f.lastRequest().(ipc.OpenRequest); r != oreq {
					t.Errorf("%s request arrived as %+v", m, r)
				}
			}
		})
	}
}

func bufOut() (io.Writer, func() []byte) {
	var b bytes.Buffer
	return &b, b.Bytes
}

func TestBytesVariantsRaw(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	obj := connect(t, e.addr).Object(BusName, ObjectPath)
	opts := map[string]godbus.Variant{"from": godbus.MakeVariant("me@x"), "future-option": godbus.MakeVariant(42)}

	var signed []byte
	if err := obj.Call(Interface+".SignBytes", 0, opts, []byte("m")).Store(&signed); err != nil {
		t.Fatal(err)
	}
	if string(signed) != "signed by me@x\nm" {
		t.Errorf("SignBytes = %q", signed)
	}
	var content []byte
	var status string
	if err := obj.Call(Interface+".VerifyBytes", 0, map[string]godbus.Variant{}, []byte("m")).Store(&content, &status); err != nil {
		t.Fatal(err)
	}
	var st ipc.MessageStatus
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Signature != "good" || string(content) != "m" {
		t.Errorf("VerifyBytes = %q, %s (%v)", content, status, err)
	}

	// Above BytesLimit: TooLarge, with a hint to use the fd variant.
	err := obj.Call(Interface+".SignBytes", 0, opts, make([]byte, BytesLimit+1)).Err
	var de godbus.Error
	if !errors.As(err, &de) || de.Name != DBusErrorName(ipc.TooLarge) || !strings.Contains(de.Error(), "file descriptor") {
		t.Errorf("SignBytes above the limit: %v", err)
	}
}

// TestSmallPayloads: a small in-memory payload travels in memory files
// (the daemon sees a descriptor), or as a byte array through the *Bytes
// variant when the connection cannot pass descriptors.
func TestSmallPayloads(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	c := e.client(t)
	ctx := t.Context()
	req := ipc.SignRequest{From: "me@x"}
	for _, fds := range []bool{true, false} {
		c.fds = fds
		var out bytes.Buffer
		if err := c.Sign(ctx, req, strings.NewReader("m"), &out); err != nil {
			t.Fatalf("fds %v: %v", fds, err)
		}
		if out.String() != "signed by me@x\nm" {
			t.Errorf("fds %v: Sign wrote %q", fds, out.String())
		}
		want := "*dbus.streamReader"
		if !fds {
			want = "*bytes.Reader"
		}
		f.mu.Lock()
		got := f.signIn
		f.mu.Unlock()
		if got != want {
			t.Errorf("fds %v: the service read a %s, want a %s", fds, got, want)
		}
		out.Reset()
		st, err := c.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader([]byte("m")), &out)
		if err != nil || st.Signature != "good" || out.String() != "m" {
			t.Errorf("fds %v: Verify = %+v, %q, %v", fds, st, out.String(), err)
		}
	}
	// Without descriptors, a payload of unknown length cannot travel.
	err := c.Sign(ctx, req, onlyReader{strings.NewReader("m")}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot pass file descriptors") {
		t.Errorf("Sign of a stream without descriptors: %v", err)
	}
}

func TestEveryErrorName(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	c := e.client(t)
	raw := connect(t, e.addr).Object(BusName, ObjectPath)
	for _, name := range ipc.AllErrorNames() {
		t.Run(string(name), func(t *testing.T) {
			f.setErr(ipc.Errorf(name, "message for %s: %w", name, errors.New("hidden cause")))
			_, err := c.Status(t.Context())
			var ie *ipc.Error
			if !errors.As(err, &ie) || ie.Name != name || ie.Message != "message for "+string(name)+": hidden cause" {
				t.Fatalf("Status error = %#v", err)
			}
			if !isName(err, name) {
				t.Errorf("errors.Is(err, &ipc.Error{Name: %s}) is false", name)
			}
			// On the wire: org.smimed.Error.<Name> with the message.
			err = raw.Call(Interface+".Status", 0).Err
			var de godbus.Error
			if !errors.As(err, &de) || de.Name != "org.smimed.Error."+string(name) {
				t.Errorf("D-Bus error = %#v, want org.smimed.Error.%s", err, name)
			}
			// Also through the fd path.
			err = c.Sign(t.Context(), ipc.SignRequest{}, onlyReader{strings.NewReader("x")}, io.Discard)
			if !isName(err, name) {
				t.Errorf("Sign error = %v", err)
			}
		})
	}
	t.Run("plain error is Internal without details", func(t *testing.T) {
		f.setErr(errors.New("secret internals"))
		_, err := c.Status(t.Context())
		if !isName(err, ipc.Internal) || strings.Contains(err.Error(), "secret") {
			t.Errorf("Status error = %v", err)
		}
		if !strings.Contains(e.log.String(), "secret internals") {
			t.Errorf("the cause is not in the daemon log")
		}
	})
	t.Run("context.Canceled is Cancelled", func(t *testing.T) {
		f.setErr(fmt.Errorf("prompt: %w", context.Canceled))
		_, err := c.Status(t.Context())
		if !isName(err, ipc.Cancelled) {
			t.Errorf("Status error = %v", err)
		}
	})
	t.Run("unknown name is Internal", func(t *testing.T) {
		f.setErr(&ipc.Error{Name: "Not A Name", Message: "m"})
		_, err := c.Status(t.Context())
		if !isName(err, ipc.Internal) {
			t.Errorf("Status error = %v", err)
		}
	})
}

func TestFiftyConcurrentClients(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	const clients, size = 50, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c := e.client(t)
		wg.Go(func() {
			data := pattern(int64(i), size)
			h := sha256.New()
			from := fmt.Sprintf("client%d@x", i)
			if err := c.Sign(t.Context(), ipc.SignRequest{From: from}, onlyReader{bytes.NewReader(data)}, h); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			want := sha256.Sum256(append([]byte("signed by "+from+"\n"), data...))
			if !bytes.Equal(h.Sum(nil), want[:]) {
				errs <- fmt.Errorf("client %d: wrong output", i)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.count("Sign"); n != clients {
		t.Errorf("Sign called %d times, want %d", n, clients)
	}
}

func TestSlowRequestsOverlap(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	f.blockSign()
	errs := make(chan error, 2)
	for i := range 2 {
		c := e.client(t)
		go func() {
			errs <- c.Sign(t.Context(), ipc.SignRequest{From: fmt.Sprint(i)}, strings.NewReader("m"), io.Discard)
		}()
	}
	// Both requests are inside the service at once: had the server run them
	// one after the other, the second would never enter while the first
	// blocks.
	<-f.entered
	<-f.entered
	if n := f.maxActive.Load(); n < 2 {
		t.Errorf("at most %d requests ran at once", n)
	}
	// Another method is not held up by them either.
	if _, err := e.client(t).Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.unblock()
	for range 2 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestCallerLeavingCancelsRequest(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	f.blockSign()
	c := e.client(t)
	done := make(chan error, 1)
	go func() {
		done <- c.Sign(context.Background(), ipc.SignRequest{}, onlyReader{strings.NewReader("m")}, io.Discard)
	}()
	<-f.entered
	_ = c.Close()
	if err := <-f.ctxErrs; !errors.Is(err, context.Canceled) {
		t.Errorf("request ctx ended with %v", err)
	}
	if err := <-done; !errors.Is(err, ErrUnreachable) {
		t.Errorf("Sign on a closed client = %v, want ErrUnreachable", err)
	}
	f.unblock()
	if _, err := e.client(t).Status(t.Context()); err != nil {
		t.Errorf("the server no longer serves: %v", err)
	}
}

func TestPanicIsInternalAndServerGoesOn(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	c := e.client(t)
	f.setPanic("Status")
	_, err := c.Status(t.Context())
	if !isName(err, ipc.Internal) {
		t.Fatalf("Status after a panic = %v, want Internal", err)
	}
	log := e.log.String()
	if !strings.Contains(log, "fake panics in Status") || !strings.Contains(log, "runtime/debug.Stack") {
		t.Errorf("the panic and its stack are not logged:\n%s", log)
	}
	f.setPanic("Sign")
	if err := c.Sign(t.Context(), ipc.SignRequest{}, onlyReader{strings.NewReader("m")}, io.Discard); !isName(err, ipc.Internal) {
		t.Errorf("Sign after a panic = %v, want Internal", err)
	}
	f.setPanic("")
	if _, err := c.Status(t.Context()); err != nil {
		t.Errorf("Status after the panic: %v", err)
	}
}

func openFDCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestMalformedArguments(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	conn := connect(t, e.addr)
	obj := conn.Object(BusName, ObjectPath)
	if _, err := e.client(t).Status(t.Context()); err != nil { // warm up the caller cache
		t.Fatal(err)
	}
	before := f.total()

	dir := t.TempDir()
	ro, err := os.Create(filepath.Join(dir, "ro"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ro.Close()
	readOnly := func() godbus.UnixFD {
		f, err := os.Open(ro.Name())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return godbus.UnixFD(f.Fd())
	}
	writable := func() godbus.UnixFD {
		f, err := os.OpenFile(ro.Name(), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return godbus.UnixFD(f.Fd())
	}
	dirFD := func() godbus.UnixFD {
		f, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return godbus.UnixFD(f.Fd())
	}
	noOpts := map[string]godbus.Variant{}
	cases := []struct {
		name   string
		method string
		args   []any
		errs   []string // acceptable D-Bus error names
	}{
		{"too few arguments", "Sign", []any{"x"}, []string{errInvalidArgs}},
		{"integers for descriptors", "Sign", []any{noOpts, int32(0), int32(1)}, []string{errInvalidArgs}},
		{"fd indices without descriptors", "Sign", []any{noOpts, godbus.UnixFDIndex(0), godbus.UnixFDIndex(1)},
			[]string{errInvalidArgs, "org.freedesktop.DBus.Error.InconsistentMessage"}},
		{"read-only out", "Sign", []any{noOpts, readOnly(), readOnly()}, []string{errInvalidArgs}},
		{"directory as in", "Verify", []any{noOpts, dirFD(), readOnly()}, []string{errInvalidArgs}},
		{"option of the wrong type", "SignBytes", []any{map[string]godbus.Variant{"opaque": godbus.MakeVariant("yes")}, []byte("m")}, []string{errInvalidArgs}},
		{"option of the wrong type with fds", "Encrypt", []any{map[string]godbus.Variant{"to": godbus.MakeVariant("a@x")}, readOnly(), writable()}, []string{errInvalidArgs}},
		{"string for bytes", "TrustAdd", []any{"PEM"}, []string{errInvalidArgs}},
		{"int for string", "CertsFind", []any{int32(7)}, []string{errInvalidArgs}},
		{"extra argument", "Status", []any{"x"}, []string{errInvalidArgs}},
		{"password of the wrong type", "ImportPKCS12", []any{[]byte("p12"), map[string]godbus.Variant{"password": godbus.MakeVariant("pw")}}, []string{errInvalidArgs}},
		{"string for an object path", "RegisterPromptAgent", []any{"/org/x"}, []string{errInvalidArgs}},
		{"argument to UnregisterPromptAgent", "UnregisterPromptAgent", []any{godbus.ObjectPath("/org/x")}, []string{errInvalidArgs}},
		{"unknown method", "Explode", nil, []string{errUnknownMethod}},
	}
	fdsBefore := openFDCount(t) // the test's own copies are open already
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := obj.Call(Interface+"."+tc.method, 0, tc.args...).Err
			var de godbus.Error
			if !errors.As(err, &de) || !slices.Contains(tc.errs, de.Name) {
				t.Fatalf("%s: error %#v, want one of %v", tc.method, err, tc.errs)
			}
			t.Logf("%s: %s", de.Name, de.Error())
		})
	}
	if n := f.total(); n != before {
		t.Errorf("the service was called %d times for malformed calls", n-before)
	}
	// The daemon closed every descriptor it was handed.
	if n := openFDCount(t); n != fdsBefore {
		t.Errorf("%d descriptors open after the malformed calls, %d before", n, fdsBefore)
	}
	if _, err := e.client(t).Status(t.Context()); err != nil {
		t.Errorf("the server no longer serves: %v", err)
	}
}

// pattern returns n deterministic bytes for a seed.
func pattern(seed, n int64) []byte {
	b := make([]byte, n)
	x := uint64(seed)*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// genReader produces n deterministic bytes without holding them.
type genReader struct {
	n, off int64
	x      uint64
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.n-g.off)]
	for i := range p {
		g.x = g.x*6364136223846793005 + 1442695040888963407
		p[i] = byte(g.x >> 56)
	}
	g.off += int64(len(p))
	return len(p), nil
}

func TestHundredMiBThroughFDsInBoundedMemory(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	c := e.client(t)
	const size = 100 << 20

	want := sha256.New()
	want.Write([]byte("signed by big@x\n"))
	if _, err := io.Copy(want, &genReader{n: size}); err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak := base
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	got := sha256.New()
	n := &countWriter{w: got}
	err := c.Sign(t.Context(), ipc.SignRequest{From: "big@x"}, &genReader{n: size}, n)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) || n.n != size+int64(len("signed by big@x\n")) {
		t.Fatalf("100 MiB arrived wrong (%d bytes)", n.n)
	}
	growth := int64(peak) - int64(base)
	t.Logf("heap growth while streaming 100 MiB: %.1f MiB", float64(growth)/(1<<20))
	if growth >= 32<<20 {
		t.Errorf("heap grew by %d bytes while streaming 100 MiB, want < 32 MiB", growth)
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.w.Write(p)
}

func TestSizeLimit(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{MaxMessageBytes: 1000}, "")
	c := e.client(t)
	// 8 MiB: the daemon stops reading early and the client must not hang
	// writing into the pipe.
	err := c.Sign(t.Context(), ipc.SignRequest{}, &genReader{n: 8 << 20}, io.Discard)
	if !isName(err, ipc.TooLarge) {
		t.Errorf("Sign of 8 MiB through fds with a 1000-byte limit = %v", err)
	}
	err = c.Sign(t.Context(), ipc.SignRequest{}, bytes.NewReader(make([]byte, 2000)), io.Discard)
	if !isName(err, ipc.TooLarge) {
		t.Errorf("Sign of 2000 bytes as bytes with a 1000-byte limit = %v", err)
	}
	if _, err := c.CertsAdd(t.Context(), make([]byte, 2000)); !isName(err, ipc.TooLarge) {
		t.Errorf("CertsAdd of 2000 bytes = %v", err)
	}
	var out bytes.Buffer
	if err := c.Sign(t.Context(), ipc.SignRequest{}, onlyReader{bytes.NewReader(make([]byte, 1000))}, &out); err != nil {
		t.Errorf("Sign of exactly the limit: %v", err)
	}
}

// helperClient runs in a re-executed test binary as another user: it calls
// the daemon and prints what came back.
func helperClient() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := map[string]string{"uid": fmt.Sprint(os.Getuid())}
	c, err := Dial(ctx, ClientOptions{Address: os.Getenv("SMIMED_TEST_BUS")})
	if err != nil {
		res["dial"] = err.Error()
	} else {
		record := func(key string, err error) {
			var ie *ipc.Error
			switch {
			case errors.As(err, &ie):
				res[key] = string(ie.Name)
			case err != nil:
				res[key] = "error: " + err.Error()
			default:
				res[key] = "ok"
			}
		}
		_, err := c.Status(ctx)
		record("Status", err)
		record("SignBytes", c.Sign(ctx, ipc.SignRequest{}, strings.NewReader("m"), io.Discard))
		record("Sign", c.Sign(ctx, ipc.SignRequest{}, onlyReader{strings.NewReader("m")}, io.Discard))
		record("RegisterPromptAgent", c.RegisterPromptAgent(ctx, &testAgent{}))
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func TestOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test runs the server as root and a client as uid 65534; run the tests as root (CI does)")
	}
	addr := startBus(t, true)
	f := newFake()
	newEnv(t, f, ServerOptions{AllowPromptAgents: true}, addr) // so that only the uid refuses agents

	// The test binary sits in a directory only root can enter; copy it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "smimed-dbus-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "helper")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Dir = dir
	cmd.Env = []string{helperEnv + "=client", "SMIMED_TEST_BUS=" + addr, "HOME=/nonexistent", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper client: %v\n%s", err, stderr.String())
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper client printed %q: %v", out, err)
	}
	if res["uid"] != "65534" {
		t.Fatalf("helper ran as uid %s", res["uid"])
	}
	for _, m := range []string{"Status", "SignBytes", "Sign", "RegisterPromptAgent"} {
		if res[m] != string(ipc.NotAuthorized) {
			t.Errorf("%s as uid 65534: %q, want NotAuthorized (all: %v)", m, res[m], res)
		}
	}
	if n := f.total(); n != 0 {
		t.Errorf("the service was called %d times for another user", n)
	}
}

func TestSecondServerFailsNameTaken(t *testing.T) {
	e := newEnv(t, newFake(), ServerOptions{}, "")
	srv, err := NewServer(connect(t, e.addr), newFake(), ServerOptions{Logger: nil})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Run(t.Context())
	if !errors.Is(err, ErrNameTaken) || !strings.Contains(err.Error(), "another smimed is already running") {
		t.Fatalf("second Run = %v, want ErrNameTaken", err)
	}
	t.Log(err)
	// The first server is unharmed.
	if _, err := e.client(t).Status(t.Context()); err != nil {
		t.Error(err)
	}
}

func TestSignals(t *testing.T) {
	e := newEnv(t, newFake(), ServerOptions{}, "")
	c := e.client(t)
	ctx, cancel := context.WithCancel(t.Context())
	sigs, err := c.Signals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.EmitIdentitiesChanged(); err != nil {
		t.Fatal(err)
	}
	if got := <-sigs; got != "IdentitiesChanged" {
		t.Errorf("got signal %q", got)
	}
	if err := e.srv.EmitCertificatesChanged(); err != nil {
		t.Fatal(err)
	}
	if got := <-sigs; got != "CertificatesChanged" {
		t.Errorf("got signal %q", got)
	}
	cancel()
	for range sigs { // closed once ctx is done
	}
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{}, "")
	w := watchName(t, e.addr)
	c := e.client(t)
	f.blockSign()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- c.Sign(t.Context(), ipc.SignRequest{From: "late@x"}, onlyReader{strings.NewReader("m")}, &out)
	}()
	<-f.entered
	e.cancel() // what SIGTERM does in the daemon

	// The name goes first, so new callers do not reach a daemon that stops.
	w.released(t)
	if _, err := e.client(t).Status(t.Context()); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Status after shutdown began = %v, want ErrUnreachable", err)
	}
	select {
	case err := <-e.runErr:
		t.Fatalf("Run returned (%v) while a request was running", err)
	default:
	}
	f.unblock()
	if err := <-done; err != nil || out.String() != "signed by late@x\nm" {
		t.Errorf("the running request ended with %v, output %q", err, out.String())
	}
	err := <-e.runErr
	e.runErr <- err // for the cleanup
	if err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestShutdownTimeoutCancelsRequests(t *testing.T) {
	f := newFake()
	e := newEnv(t, f, ServerOptions{ShutdownTimeout: time.Millisecond}, "")
	c := e.client(t)
	f.blockSign()
	done := make(chan error, 1)
	go func() {
		done <- c.Sign(t.Context(), ipc.SignRequest{}, onlyReader{strings.NewReader("m")}, io.Discard)
	}()
	<-f.entered
	e.cancel()
	if err := <-f.ctxErrs; !errors.Is(err, context.Canceled) {
		t.Errorf("request ctx ended with %v", err)
	}
	if err := <-done; !isName(err, ipc.Cancelled) {
		t.Errorf("Sign = %v, want Cancelled", err)
	}
}

func TestUnreachable(t *testing.T) {
	addr := startBus(t, false)
	c, err := Dial(t.Context(), ClientOptions{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Status(t.Context()); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Status without a daemon = %v, want ErrUnreachable", err)
	}
	if err := c.Sign(t.Context(), ipc.SignRequest{}, onlyReader{strings.NewReader("m")}, io.Discard); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Sign without a daemon = %v, want ErrUnreachable", err)
	}
	if _, err := Dial(t.Context(), ClientOptions{Address: "unix:path=" + filepath.Join(t.TempDir(), "nobus")}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Dial without a bus = %v, want ErrUnreachable", err)
	}
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	if _, err := Dial(t.Context(), ClientOptions{}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("Dial without a session bus = %v, want ErrUnreachable", err)
	}
}

func TestIntrospectionXMLInDocs(t *testing.T) {
	e := newEnv(t, newFake(), ServerOptions{}, "")
	var live string
	err := connect(t, e.addr).Object(BusName, ObjectPath).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&live)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "docs", "org.smimed.Smimed1.xml")
	if *update {
		if err := os.WriteFile(path, []byte(live), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	docs, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(docs) != live {
		t.Errorf("%s differs from what the server introspects; run go test ./ipc/dbus -run TestIntrospectionXMLInDocs -update", path)
	}
	for _, n := range ipc.AllErrorNames() {
		if !strings.Contains(live, DBusErrorName(n)+": ") {
			t.Errorf("the XML does not list %s", DBusErrorName(n))
		}
	}
}

// The daemon switches a caller's pipe to non-blocking mode while it uses it.
// The mode belongs to the open file description the caller shares, so it
// must be restored.
func TestCallerPipeModeRestored(t *testing.T) {
	e := newEnv(t, newFake(), ServerOptions{}, "")
	c := e.client(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil { // blocking, unlike os.Pipe
		t.Fatal(err)
	}
	r, w := os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
	defer func() { _ = r.Close() }()
	go func() {
		_, _ = w.Write([]byte("m"))
		_ = w.Close()
	}()
	var out bytes.Buffer
	if err := c.Sign(t.Context(), ipc.SignRequest{From: "p@x"}, r, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "signed by p@x\nm" {
		t.Errorf("Sign wrote %q", out.String())
	}
	flags, err := unix.FcntlInt(uintptr(p[0]), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Error("the caller's pipe was left in non-blocking mode")
	}
}
