package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opendps/opendps/internal/hubsim"
	"github.com/opendps/opendps/internal/pki"
	"github.com/spf13/cobra"
)

func init() { hubSubcommands = append(hubSubcommands, hubServeCmd) }

// hubServeCmd runs the IoT Hub simulator on its own (opendps dev runs one too).
func hubServeCmd() *cobra.Command {
	var (
		addr, dataDir string
		names         []string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the IoT Hub simulator (registry REST API over HTTPS)",
		Long: `Run the built-in IoT Hub simulator: it serves the IoT Hub registry REST API
(device identities and twins) for each --name over HTTPS on one listener,
routed by host name, and keeps its state in DATA-DIR/hubs.json. Its
certificates are signed by the CA in DATA-DIR/tls (created if missing).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := pki.LoadOrCreateCA(filepath.Join(dataDir, "tls"))
			if err != nil {
				return err
			}
			sim, err := hubsim.New(hubsim.Config{StateFile: filepath.Join(dataDir, "hubs.json")})
			if err != nil {
				return err
			}
			for _, n := range names {
				if !sim.HasHub(n) {
					if err := sim.AddHub(hubsim.NewHubConfig(n)); err != nil {
						return err
					}
				}
			}
			tc, err := hubsim.TLSConfig(ca, sim)
			if err != nil {
				return err
			}
			srv, err := hubsim.Listen(sim, addr, tc)
			if err != nil {
				return err
			}
			defer srv.Close()
			type hubOut struct {
				HostName         string `json:"hostName"`
				ConnectionString string `json:"connectionString"`
			}
			var out []hubOut
			for _, h := range sim.Hubs() {
				cs, _ := srv.ConnectionString(h.HostName)
				out = append(out, hubOut{h.HostName, cs})
			}
			printResult(os.Stdout, map[string]any{"address": srv.Addr(), "caCertificate": filepath.Join(dataDir, "tls", pki.CAFile), "hubs": out}, func(w io.Writer) {
				fmt.Fprintf(w, "hub simulator on %s (CA %s)\n", srv.Addr(), filepath.Join(dataDir, "tls", pki.CAFile))
				for _, h := range out {
					fmt.Fprintf(w, "  %s\n", h.ConnectionString)
				}
			})
			select {
			case <-cmd.Context().Done():
				return nil
			case err := <-srv.Err():
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:8447", "listen address")
	f.StringVar(&dataDir, "data-dir", "opendps-hubs", "state and CA directory")
	f.StringSliceVar(&names, "name", []string{"hub1.localhost", "hub2.localhost"}, "host names of the simulated hubs")
	return cmd
}
