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
	var regions string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a complete local deployment in the foreground",
		Long: `Run a complete local opendps deployment in the foreground. By default:
four regions, West Europe and its pair North Europe, Brazil South and its
pair South Central US, each of three nodes in availability zones 1, 2 and 3
(its own etcd cluster of three members; --zones 1 runs one node per
region), joined by the peer link (mutual TLS); a front door passing device
and service connections to the first healthy region; a hub simulator
serving two IoT hubs; a default DPS instance in West Europe (disaster
recovery to North Europe) and an instance "residency" in Brazil South with
data residency (no disaster recovery), both with the hubs linked.
Connection details are printed and written to DATA-DIR/connection.json.
Started again with the same data directory it reuses everything. Stop it
with Ctrl-C.

--regions chooses the regions: ` + devenv.RegionsSyntax + `.
--regions 1 (or --region R alone, or a DATA-DIR created before regions)
runs the single-region deployment of earlier versions.

With --multi-process every node (and the front door) runs as its own child
process; pids and restart commands are in connection.json ("nodes").
Kill one to try a zone failure, or every node of a region to try a region
failure: nothing restarts them; start them again with the printed commands.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			switch {
			case f.Changed("regions"):
				groups, err := devenv.ParseRegions(regions)
				if err != nil {
					return err
				}
				if len(groups) == 1 && len(groups[0]) == 1 && regions == "1" {
					groups[0][0] = opts.Region // --regions 1: the single region of --region
				}
				opts.Regions = groups
			case f.Changed("region") || devenv.SingleRegionDir(opts.DataDir):
				// single region, as before regions
			default:
				opts.Regions = devenv.DefaultRegions
			}
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
	f.StringVar(&regions, "regions", devenv.FormatRegions(devenv.DefaultRegions), "regions to run: paired regions joined by ':', groups by ',', or a count 1-4")
	f.StringVar(&opts.Region, "region", devenv.DefaultRegion, "region of a single-region deployment (--regions 1)")
	f.StringVar(&opts.LogLevel, "log-level", "warn", "log level of the nodes")
	f.IntVar(&opts.Zones, "zones", 0, fmt.Sprintf("number of nodes of every region, one per availability zone (default %d; an existing DATA-DIR keeps its own)", devenv.DefaultZones))
	f.BoolVar(&opts.MultiProcess, "multi-process", false, "run every node (and the front door) as its own child process")
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
	if fd := c.FrontDoor; fd != nil {
		fmt.Fprintf(w, "  front door                 device %s, MQTT %s, service %s", fd.DeviceEndpoint, fd.MQTTEndpoint, fd.ServiceEndpoint)
		if fd.PID != 0 && fd.PID != os.Getpid() {
			fmt.Fprintf(w, " (pid %d)", fd.PID)
		}
		fmt.Fprintln(w)
	}
	for _, r := range c.Regions {
		fmt.Fprintf(w, "  region %-19s pair %s, %d node(s), control %s\n", r.Name, r.Pair, len(r.ControlURLs), strings.Join(r.ControlURLs, " "))
	}
	for _, in := range c.Instances {
		dr := "disaster recovery enabled"
		if in.DataResidency {
			dr = "disaster recovery disabled (data residency)"
		}
		fmt.Fprintf(w, "  instance %-17s %s, ID scope %s, %s\n", in.Name, in.Region, in.IDScope, dr)
	}
	for _, n := range c.Nodes {
		fmt.Fprintf(w, "  node %-6s %s zone %s pid %d device %s control %s etcd %s\n", n.Name, n.Region, n.Zone, n.PID, n.DeviceEndpoint, n.ControlURL, n.EtcdClientURL)
	}
	for _, n := range c.Nodes {
		if len(n.Command) > 0 {
			fmt.Fprintf(w, "  restart %s/%s with: %s\n", n.Region, n.Name, shellJoin(n.Command))
		}
	}
	if fd := c.FrontDoor; fd != nil && len(fd.Command) > 0 {
		fmt.Fprintf(w, "  restart the front door with: %s\n", shellJoin(fd.Command))
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
