package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/opendps/opendps/internal/devenv"
	"github.com/spf13/cobra"
)

func init() { register(devCmd) }

func devCmd() *cobra.Command {
	var opts devenv.Options
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a complete local deployment in the foreground",
		Long: `Run a complete local opendps deployment in the foreground: a region of
three nodes in availability zones 1, 2 and 3 (one etcd cluster of three
members; --zones 1 runs a single node), a hub simulator serving two IoT
hubs, and a default DPS instance with both hubs linked. Connection details
are printed and written to DATA-DIR/connection.json. Started again with the
same data directory it reuses everything. Stop it with Ctrl-C.

With --multi-process every node runs as its own child process (its pid is
in connection.json). Kill one to try a zone failure: the others keep
serving, and nothing restarts it; start it again with the printed command.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
			tuneGC()
			d, err := devenv.Start(cmd.Context(), opts)
			if err != nil {
				return err
			}
			defer d.Close()
			printResult(os.Stdout, d.Conn, func(w io.Writer) { printConnection(w, d) })
			errf("opendps dev: running; Ctrl-C to stop")
			select {
			case <-cmd.Context().Done():
				errf("opendps dev: shutting down")
			case err := <-d.Err():
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", ".opendps-dev", "directory holding the whole deployment")
	f.StringVar(&opts.Region, "region", devenv.DefaultRegion, "region of the nodes")
	f.StringVar(&opts.LogLevel, "log-level", "warn", "log level of the nodes")
	f.IntVar(&opts.Zones, "zones", 0, "number of nodes, one per availability zone (default 3; an existing DATA-DIR keeps its own)")
	f.BoolVar(&opts.MultiProcess, "multi-process", false, "run every node as its own child process")
	return cmd
}

func printConnection(w io.Writer, d *devenv.Deployment) {
	c := d.Conn
	fmt.Fprintf(w, "opendps dev deployment (details in %s)\n\n", d.ConnectionPath)
	fmt.Fprintf(w, "  ID scope                   %s (instance %q)\n", c.IDScope, c.InstanceName)
	fmt.Fprintf(w, "  device endpoint (HTTPS)    %s\n", c.DeviceEndpoint)
	fmt.Fprintf(w, "  service connection string %s\n", c.ServiceConnectionString)
	fmt.Fprintf(w, "  CA certificate             %s\n", c.CACertificate)
	fmt.Fprintf(w, "  control API                %s\n", c.ControlEndpoint)
	fmt.Fprintf(w, "  operator token             %s\n", c.OperatorToken)
	fmt.Fprintf(w, "  console                    %s\n", c.ConsoleURL)
	for _, h := range c.Hubs {
		fmt.Fprintf(w, "  hub                        %s\n", h.ConnectionString)
	}
	for _, n := range c.Nodes {
		fmt.Fprintf(w, "  node %-6s %s zone %s pid %d device %s control %s etcd %s\n", n.Name, n.Region, n.Zone, n.PID, n.DeviceEndpoint, n.ControlURL, n.EtcdClientURL)
	}
	for _, n := range c.Nodes {
		if len(n.Command) > 0 {
			fmt.Fprintf(w, "  restart %s with: %s\n", n.Name, shellJoin(n.Command))
		}
	}
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '=' || r == ':' || r == ',' ||
				r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) < 0 {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
