package prompt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gauge is an instrumented Prompter that records how many Asks overlap.
type gauge struct {
	cur, max, calls atomic.Int32
	hold            time.Duration
}

func (g *gauge) Ask(ctx context.Context, r Request) (*Secret, error) {
	n := g.cur.Add(1)
	defer g.cur.Add(-1)
	g.calls.Add(1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-time.After(g.hold):
	case <-ctx.Done():
		return nil, ContextError(ctx, "gauge")
	}
	if r.Kind == PIN {
		return NewSecret([]byte(r.KeyLabel)), nil
	}
	return nil, nil
}

func TestSerializedOneAtATime(t *testing.T) {
	for _, tt := range []struct {
		name    string
		wrapped bool
		wantMax int32
	}{
		{"serialized", true, 1},
		{"bare prompter overlaps (control)", false, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &gauge{hold: 5 * time.Millisecond}
			var p Prompter = g
			if tt.wrapped {
				p = Serialized(g)
			}
			const callers = 20
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for i := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					label := string(rune('a' + i))
					s, err := p.Ask(context.Background(), Request{Kind: PIN, KeyLabel: label})
					if err != nil {
						errs <- err
						return
					}
					if string(s.Bytes()) != label {
						errs <- errors.New("answer for another caller: " + string(s.Bytes()))
					}
					s.Wipe()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := g.calls.Load(); got != callers {
				t.Errorf("%d prompts, want %d", got, callers)
			}
			if tt.wrapped && g.max.Load() != tt.wantMax {
				t.Errorf("max concurrent prompts = %d, want %d", g.max.Load(), tt.wantMax)
			}
			if !tt.wrapped && g.max.Load() < tt.wantMax {
				t.Errorf("control: max concurrent = %d; the gauge does not see overlap", g.max.Load())
			}
		})
	}
}

func TestSerializedLeavesQueueOnContextEnd(t *testing.T) {
	g := &gauge{hold: time.Hour}
	p := Serialized(g)
	holdCtx, release := context.WithCancel(context.Background())
	defer release()
	first := make(chan error, 1)
	go func() {
		_, err := p.Ask(holdCtx, Request{Kind: PIN})
		first <- err
	}()
	for g.cur.Load() == 0 {
		time.Sleep(time.Millisecond)
	}

	tests := []struct {
		name    string
		kind    Kind
		ctx     func() (context.Context, context.CancelFunc)
		wantErr []error
	}{
		{"deadline while queued", PIN, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, []error{ErrTimeout, context.DeadlineExceeded}},
		{"cancel while queued", Passphrase, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, []error{context.Canceled}},
		{"notice dismissed while queued", Notice, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			s, err := p.Ask(ctx, Request{Kind: tt.kind})
			if s != nil {
				t.Errorf("got a secret")
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("queued caller waited %v after its context ended", time.Since(start))
			}
			if tt.wantErr == nil && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want %v", err, want)
				}
			}
		})
	}
	if g.calls.Load() != 1 {
		t.Errorf("%d prompts shown, want 1 (queued callers must not prompt)", g.calls.Load())
	}
	release()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first prompt: %v", err)
	}
	// The queue is free again.
	g.hold = 0
	if _, err := p.Ask(context.Background(), Request{Kind: Confirm}); err != nil {
		t.Errorf("after release: %v", err)
	}
}

func TestShowNotice(t *testing.T) {
	t.Run("dismiss takes it down", func(t *testing.T) {
		shown := make(chan struct{})
		p := PrompterFunc(func(ctx context.Context, r Request) (*Secret, error) {
			close(shown)
			<-ctx.Done()
			return nil, nil
		})
		dismiss := ShowNotice(context.Background(), p, Request{Kind: Notice, Operation: OpSign})
		<-shown
		if err := dismiss(); err != nil {
			t.Errorf("dismiss: %v", err)
		}
		if err := dismiss(); err != nil {
			t.Errorf("second dismiss: %v", err)
		}
	})
	t.Run("error showing it is reported", func(t *testing.T) {
		p := PrompterFunc(func(context.Context, Request) (*Secret, error) {
			return nil, ErrNoPrompter
		})
		if err := ShowNotice(context.Background(), p, Request{Kind: Notice})(); !errors.Is(err, ErrNoPrompter) {
			t.Errorf("dismiss = %v, want ErrNoPrompter", err)
		}
	})
	t.Run("only notices", func(t *testing.T) {
		p := PrompterFunc(func(context.Context, Request) (*Secret, error) {
			t.Error("prompted for a non-notice")
			return nil, nil
		})
		if err := ShowNotice(context.Background(), p, Request{Kind: PIN})(); err == nil {
			t.Error("ShowNotice with a PIN request: no error")
		}
	})
}

func TestContextError(t *testing.T) {
	if err := ContextError(context.Background(), "x"); err != nil {
		t.Errorf("live ctx: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ContextError(ctx, "x"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("cancelled ctx: %v", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now())
	defer cancel()
	if err := ContextError(ctx, "x"); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired ctx: %v", err)
	}
}
