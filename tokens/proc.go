package tokens

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/tokens/internal/wire"
)

// proc is one running worker process and the calls in flight to it.
type proc struct {
	module string // name, for messages
	log    *slog.Logger
	cmd    *exec.Cmd
	req    *os.File // we write requests here (the worker's fd 3)
	resp   *os.File // we read responses here (the worker's fd 4)

	wmu sync.Mutex // one frame at a time on req

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	dead    chan struct{} // closed when the process is gone
	deadErr error
	tail    *tailBuffer // last lines of the worker's stderr
}

// reply is a response with its secret part, or the failure of the call.
type reply struct {
	resp   wire.Response
	secret []byte
	err    error
}

// startProc starts a worker for module path: argv with path appended,
// executing exePath instead of argv[0] when it is set.
func startProc(name, path, exePath string, argv, env []string, log *slog.Logger) (*proc, error) {
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	respR, respW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		reqR.Close()
		reqW.Close()
		respR.Close()
		respW.Close()
		return nil, err
	}
	cmd := exec.Command(argv[0], append(argv[1:], path)...)
	if exePath != "" {
		cmd.Path = exePath
		cmd.Err = nil
	}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	// A module that prints to stdout must not corrupt the protocol: the
	// protocol has its own descriptors, stdout and stderr are logged.
	cmd.Stdout = errW
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{reqR, respW}
	setProcAttr(cmd)
	err = cmd.Start()
	reqR.Close()
	respW.Close()
	errW.Close()
	if err != nil {
		reqW.Close()
		respR.Close()
		errR.Close()
		return nil, fmt.Errorf("%w: starting the worker for %s: %v", ErrModuleFailed, name, err)
	}
	p := &proc{
		module:  name,
		log:     log.With("module", name, "worker_pid", cmd.Process.Pid),
		cmd:     cmd,
		req:     reqW,
		resp:    respR,
		pending: map[uint64]chan reply{},
		dead:    make(chan struct{}),
		tail:    &tailBuffer{max: 20},
	}
	stderrDone := make(chan struct{})
	go p.readStderr(errR, stderrDone)
	go p.readResponses()
	go func() {
		err := cmd.Wait()
		// Give the stderr reader a moment to collect the last words.
		select {
		case <-stderrDone:
		case <-time.After(200 * time.Millisecond):
		}
		p.markDead(fmt.Errorf("%w: the worker for %s exited (%v)%s", ErrModuleFailed, name, err, p.tail.suffix()))
	}()
	p.log.Debug("tokens: worker started", "path", path)
	return p, nil
}

func (p *proc) readStderr(r *os.File, done chan struct{}) {
	defer close(done)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		p.tail.add(line)
		p.log.Debug("tokens: worker output", "line", line)
	}
}

func (p *proc) readResponses() {
	for {
		f, err := wire.ReadFrame(p.resp)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				p.kill(fmt.Errorf("%w: reading from the worker for %s: %v", ErrModuleFailed, p.module, err))
			}
			return
		}
		var resp wire.Response
		if err := json.Unmarshal(f.Control, &resp); err != nil {
			f.Wipe()
			p.kill(fmt.Errorf("%w: the worker for %s sent garbage: %v", ErrModuleFailed, p.module, err))
			return
		}
		p.mu.Lock()
		ch, ok := p.pending[resp.ID]
		delete(p.pending, resp.ID)
		p.mu.Unlock()
		if !ok {
			f.Wipe() // the caller gave up; nobody wants the secret
			continue
		}
		ch <- reply{resp: resp, secret: f.Secret}
	}
}

// markDead fails every pending call with err and closes dead (once).
func (p *proc) markDead(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.dead:
		return
	default:
	}
	p.deadErr = err
	close(p.dead)
	for id, ch := range p.pending {
		ch <- reply{err: err}
		delete(p.pending, id)
	}
	p.req.Close()
	p.resp.Close()
	p.log.Debug("tokens: worker gone", "err", err)
}

// kill stops the process and fails pending calls with err.
func (p *proc) kill(err error) {
	_ = p.cmd.Process.Kill()
	p.markDead(err)
}

// alive reports whether the process is still there.
func (p *proc) alive() bool {
	select {
	case <-p.dead:
		return false
	default:
		return true
	}
}

// call sends req (with secret as the frame's secret part) and waits for
// the answer. A worker that does not answer within timeout is killed and
// the call fails with ErrModuleFailed. When ctx ends first the call returns
// ctx's error and the worker is left to finish; its late answer is wiped.
// The returned secret belongs to the caller, who must clear it.
func (p *proc) call(ctx context.Context, req wire.Request, secret []byte, timeout time.Duration) (wire.Response, []byte, error) {
	ch := make(chan reply, 1)
	p.mu.Lock()
	select {
	case <-p.dead:
		p.mu.Unlock()
		return wire.Response{}, nil, p.deadErr
	default:
	}
	p.nextID++
	req.ID = p.nextID
	p.pending[req.ID] = ch
	p.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	written := make(chan error, 1)
	go func() {
		p.wmu.Lock()
		defer p.wmu.Unlock()
		written <- wire.WriteFrame(p.req, req, secret)
	}()
	// The secret must not be wiped by the caller before it is written.
	select {
	case err := <-written:
		if err != nil {
			p.kill(fmt.Errorf("%w: writing to the worker for %s: %v", ErrModuleFailed, p.module, err))
			return wire.Response{}, nil, p.deadErr
		}
	case <-timer.C:
		err := fmt.Errorf("%w: %s did not take the %s request within %v; its worker was stopped", ErrModuleFailed, p.module, req.Op, timeout)
		p.kill(err)
		<-written
		return wire.Response{}, nil, err
	}

	select {
	case r := <-ch:
		return r.resp, r.secret, r.err
	case <-timer.C:
		err := fmt.Errorf("%w: %s did not answer %s within %v; its worker was stopped%s", ErrModuleFailed, p.module, req.Op, timeout, p.tail.suffix())
		p.kill(err)
		return wire.Response{}, nil, err
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.pending, req.ID)
		p.mu.Unlock()
		select { // the answer may have raced in
		case r := <-ch:
			clear(r.secret)
		default:
		}
		return wire.Response{}, nil, ctx.Err()
	}
}

// stop closes the request pipe (the worker finalises the module and
// exits) and kills the process if it has not gone after grace.
func (p *proc) stop(grace time.Duration) {
	p.wmu.Lock()
	p.req.Close()
	p.wmu.Unlock()
	select {
	case <-p.dead:
	case <-time.After(grace):
		p.kill(fmt.Errorf("%w: the worker for %s was stopped", ErrModuleFailed, p.module))
	}
	<-p.dead
}

// tailBuffer keeps the first and the last lines a worker printed, for
// error messages: a crash names its signal first ("SIGSEGV: segmentation
// violation", "signal arrived during cgo execution") and ends with
// register dumps.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	head  []string
	lines []string
}

const tailHead = 3

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	line = strings.TrimSpace(line)
	if line == "" {
		return
	}
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	if len(t.head) < tailHead {
		t.head = append(t.head, line)
		return
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// suffix returns "; its output: ..." with the first and last lines, or
// "".
func (t *tailBuffer) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.head) == 0 {
		return ""
	}
	out := strings.Join(t.head, " | ")
	if n := len(t.lines); n > 0 {
		if n > 2 {
			out += " | ..."
		}
		out += " | " + strings.Join(t.lines[max(0, n-2):], " | ")
	}
	return "; its output: " + out
}
