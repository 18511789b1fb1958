//go:build !unix

package main

import (
	"context"
	"errors"

	"github.com/smimed/smimed/ipc"
)

// errNoTransport: this platform's transport (a per-user named pipe on
// Windows) has no client in smimectl yet.
var errNoTransport = errors.New("smimectl has no client for this platform's transport yet")

func dial(context.Context, string) (ipc.Service, error) { return nil, errNoTransport }

func unreachable(err error) bool { return errors.Is(err, errNoTransport) }
