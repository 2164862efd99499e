// Command opendps is the opendps server, its local development deployment
// and its command-line client: `opendps serve`, `opendps dev`, and
// `opendps <noun> <verb>` commands, each with --json.
//
// Results go to stdout; progress and diagnostics go to stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
)

// commands holds constructors of the top-level commands; each file of this
// package registers its nouns in init.
var commands []func() *cobra.Command

func register(f func() *cobra.Command) { commands = append(commands, f) }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "opendps",
		Short:         "opendps: an open-source, Azure DPS-compatible Device Provisioning Service",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addClientFlags(root)
	for _, f := range commands {
		root.AddCommand(f())
	}
	return root
}

// exitError carries a process exit code.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// tuneGC makes server and load-generator processes trade memory for CPU:
// registrations allocate many short-lived objects, and the default GOGC=100
// spends a fifth of a busy node's CPU in the collector. An explicit GOGC
// in the environment wins.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "opendps:", err)
		os.Exit(1)
	}
}
