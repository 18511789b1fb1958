package prompt

import (
	"context"
	"errors"
	"fmt"
)

// Serialized wraps p so that only one of its prompts is on screen at a time:
// concurrent Ask calls queue and are served in arrival order. A caller whose
// ctx ends while it waits leaves the queue without prompting; its error is
// the one Ask documents for the end of ctx (ErrTimeout for a deadline,
// context.Canceled otherwise, nil for a Notice).
//
// Each call to Serialized makes a new queue: wrap the daemon's prompter once
// and share the result.
func Serialized(p Prompter) Prompter {
	return &serialized{p: p, turn: make(chan struct{}, 1)}
}

type serialized struct {
	p Prompter
	// turn holds a token while a prompt is on screen. Blocked senders are
	// queued by the runtime in arrival order.
	turn chan struct{}
}

func (s *serialized) Ask(ctx context.Context, r Request) (*Secret, error) {
	select {
	case s.turn <- struct{}{}:
	case <-ctx.Done():
		if r.Kind == Notice {
			return nil, nil
		}
		return nil, ContextError(ctx, "waiting for an earlier prompt")
	}
	defer func() { <-s.turn }()
	// The turn may have been won at the same moment as ctx ended.
	if ctx.Err() != nil {
		if r.Kind == Notice {
			return nil, nil
		}
		return nil, ContextError(ctx, "waiting for an earlier prompt")
	}
	return s.p.Ask(ctx, r)
}

// ContextError returns the error a Prompter reports when ctx ended before the
// user answered: ErrTimeout (and context.DeadlineExceeded) for a deadline,
// context.Canceled otherwise, with what was being done in the message. It
// returns nil while ctx has not ended.
func ContextError(ctx context.Context, doing string) error {
	err := ctx.Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %w", ErrTimeout, doing, err)
	default:
		return fmt.Errorf("prompt: %s: %w", doing, err)
	}
}
