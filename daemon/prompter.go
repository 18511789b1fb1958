package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/prompt/pinentry"
)

// NewPrompter returns the daemon's one prompter: the pinentry program
// (program from prompt.program, else SMIMED_PINENTRY in env, else the
// first installed of pinentry-gnome3, -qt, -gtk2, -curses, -tty, pinentry)
// wrapped in prompt.Serialized, so that prompts appear one at a time.
//
// When no pinentry can be found the daemon still starts (verifying and
// encrypting need no prompt): every prompt then fails with
// prompt.ErrNoPrompter, which clients see as KeystoreLocked.
func NewPrompter(program string, env []string, logger *slog.Logger) prompt.Prompter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := pinentry.New(pinentry.Options{Program: program, Env: env, Logger: logger})
	if err != nil {
		logger.Warn("prompt: no pinentry; private-key operations will fail until one is installed or configured (prompt.program)", "err", err)
		return prompt.PrompterFunc(func(context.Context, prompt.Request) (*prompt.Secret, error) {
			return nil, fmt.Errorf("daemon: %w", err)
		})
	}
	logger.Info("prompt: using pinentry", "program", c.Program())
	return prompt.Serialized(c)
}
