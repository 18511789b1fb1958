//go:build unix

// Command smimed is the per-user S/MIME daemon: it serves the
// org.smimed.Smimed1 D-Bus interface on the user's session bus (see
// daemon/README.md for its configuration and docs/ for the interface).
//
//	smimed [--config FILE] [--address BUS] [--log-level LEVEL] [--log-format text|json]
//
// With no arguments it serves the session bus named by
// DBUS_SESSION_BUS_ADDRESS (or $XDG_RUNTIME_DIR/bus). It is normally started
// by D-Bus activation through the systemd user unit smimed.service.
//
// At start it disables core dumps (PR_SET_DUMPABLE 0, RLIMIT_CORE 0), so no
// passphrase or key can reach one. SIGTERM or SIGINT stops it gracefully:
// the bus name is released at once, requests in flight finish (for at most
// a minute, then they are cancelled) and it exits 0. A second signal ends it
// at once.
//
// Exit status: 0 after a graceful stop, 1 when it cannot run (no bus, the
// name taken by another smimed, a key store that cannot be opened), 2 for
// bad arguments or a bad configuration file (the message names the file and
// line).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/daemon"
	"github.com/smimed/smimed/daemon/config"
	smimedbus "github.com/smimed/smimed/ipc/dbus"
	"github.com/smimed/smimed/tokens"
)

// shutdownTimeout bounds how long requests in flight may take after
// SIGTERM (a passphrase prompt may be open); systemd waits 90 s by default.
const shutdownTimeout = time.Minute

func main() {
	// A PKCS#11 worker (this executable re-executed by the token manager
	// for one module) runs nothing else; it hardens itself.
	if tokens.IsWorker(os.Args) {
		tokens.WorkerMain()
	}
	// First of all, before any secret can exist in this process.
	if err := disableCoreDumps(); err != nil {
		fmt.Fprintf(os.Stderr, "smimed: warning: cannot disable core dumps: %v\n", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
}

// run is smimed without the process around it; it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("smimed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFlag := fs.String("config", "", "user configuration `file` (default $SMIMED_CONFIG, else $XDG_CONFIG_HOME/smimed/config.toml)")
	policyFlag := fs.String("policy", "", "machine policy `file` (default "+config.DefaultPolicyPath+"; for tests and packaging checks)")
	address := fs.String("address", "", "D-Bus `address` to serve (default $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format` on stderr: text or json")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: smimed [--config FILE] [--address BUS] [--log-level LEVEL] [--log-format text|json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "smimed: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, "smimed", version())
		return 0
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return 2
	}

	userPath, explicit, err := config.UserPath(*configFlag, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "smimed: %v\n", err)
		return 2
	}
	cfg, err := config.Load(config.Paths{User: userPath, UserRequired: explicit, Policy: *policyFlag})
	if err != nil {
		fmt.Fprintf(stderr, "smimed: configuration error: %v\n", err)
		logger.Error("configuration error; not starting", "err", err)
		return 2
	}

	addr := busAddress(*address, getenv)
	if addr == "" {
		logger.Error("no session bus: DBUS_SESSION_BUS_ADDRESS is not set and $XDG_RUNTIME_DIR/bus does not exist (use --address)")
		return 1
	}
	conn, err := godbus.Connect(addr)
	if err != nil {
		logger.Error("cannot connect to the bus", "address", addr, "err", err)
		return 1
	}
	defer conn.Close()

	setupCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	svc, err := daemon.New(setupCtx, daemon.Options{Config: cfg, Bus: conn, Logger: logger, Version: version()})
	cancel()
	if err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	defer svc.Close()

	srv, err := smimedbus.NewServer(conn, svc, smimedbus.ServerOptions{
		Logger:            logger,
		MaxMessageBytes:   cfg.Limits.MaxMessageBytes,
		UID:               uint32(os.Getuid()),
		ShutdownTimeout:   shutdownTimeout,
		AllowPromptAgents: cfg.Prompt.AllowAgents,
	})
	if err != nil {
		logger.Error("cannot serve", "err", err)
		return 1
	}
	svc.SetNotifier(srv)
	logger.Info("serving", "bus_name", smimedbus.BusName, "address", redactAddress(addr), "pid", os.Getpid(), "version", version())
	if err := srv.Run(ctx); err != nil {
		logger.Error("stopped", "err", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

// busAddress is --address, else DBUS_SESSION_BUS_ADDRESS, else the
// systemd user bus socket $XDG_RUNTIME_DIR/bus when it exists.
func busAddress(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if a := getenv("DBUS_SESSION_BUS_ADDRESS"); a != "" {
		return a
	}
	if dir := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) {
		sock := filepath.Join(dir, "bus")
		if st, err := os.Stat(sock); err == nil && st.Mode()&os.ModeSocket != 0 {
			return "unix:path=" + sock
		}
	}
	return ""
}

// redactAddress drops a bus address's guid (not secret, but noise).
func redactAddress(a string) string {
	var keep []string
	for _, part := range strings.Split(a, ",") {
		if !strings.HasPrefix(part, "guid=") {
			keep = append(keep, part)
		}
	}
	return strings.Join(keep, ",")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// version is the module version and VCS revision the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
