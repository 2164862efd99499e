package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/opendps/opendps/internal/frontdoor"
	"github.com/spf13/cobra"
)

func init() { register(frontdoorCmd) }

// frontdoorCmd runs the global endpoint of a multi-region deployment.
func frontdoorCmd() *cobra.Command {
	var (
		cfg                 frontdoor.Config
		configFile, readyCA string
		regions             []string
		logLevel            string
	)
	cmd := &cobra.Command{
		Use:   "frontdoor",
		Short: "Run the global endpoint: pass connections to the first healthy region",
		Long: `Run the front door of a multi-region deployment (docs/dr-design.md): one
listener per API (--device-addr, --mqtt-addr, --service-addr) passing each new
TCP connection, TLS untouched, to a healthy node of the first healthy region.
Regions are given in order of preference, one --region each:

  --region NAME=DEVICE/MQTT/SERVICE[/READY-URL][,NODE...]

with host:port of the node's device, MQTT and service listeners ("-" when not
served) and, optionally, its control URL for readiness checks (GET /readyz),
for example

  --region westeurope=10.0.0.1:443/10.0.0.1:8883/10.0.0.1:8444/https://10.0.0.1:8445
  --region northeurope=10.1.0.1:443/10.1.0.1:8883/10.1.0.1:8444/https://10.1.0.1:8445

or a JSON config file (--config) with the fields of frontdoor.Config
(durations in nanoseconds). --status-addr serves GET /healthz and GET /status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				if err := mergeFrontdoorConfig(cmd, configFile, &cfg); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("region") || len(cfg.Regions) == 0 {
				cfg.Regions = nil
				for _, s := range regions {
					r, err := frontdoor.ParseRegion(s)
					if err != nil {
						return err
					}
					cfg.Regions = append(cfg.Regions, r)
				}
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			if readyCA != "" {
				pem, err := os.ReadFile(readyCA)
				if err != nil {
					return err
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--ready-ca %s holds no PEM certificate", readyCA)
				}
				cfg.ReadyTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			fd, err := frontdoor.New(cfg)
			if err != nil {
				return err
			}
			defer fd.Close()
			out := map[string]string{"status": fd.StatusAddr()}
			for _, api := range frontdoor.APIs {
				if a := fd.Addr(api); a != "" {
					out[api] = a
				}
			}
			printResult(os.Stdout, out, func(w io.Writer) {
				for _, api := range frontdoor.APIs {
					if a := fd.Addr(api); a != "" {
						fmt.Fprintf(w, "front door %s on %s -> %s\n", api, a, routeName(fd.Status().Routes[api]))
					}
				}
				if s := fd.StatusAddr(); s != "" {
					fmt.Fprintf(w, "status on http://%s/status\n", s)
				}
			})
			select {
			case <-cmd.Context().Done():
				return nil
			case err := <-fd.Err():
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "JSON config file (flags given explicitly override it)")
	f.StringVar(&cfg.DeviceAddr, "device-addr", "", "listen address of the device API (HTTPS, MQTT over WebSocket)")
	f.StringVar(&cfg.MQTTAddr, "mqtt-addr", "", "listen address of MQTT over TLS")
	f.StringVar(&cfg.ServiceAddr, "service-addr", "", "listen address of the service API")
	f.StringVar(&cfg.StatusAddr, "status-addr", "", "listen address of GET /healthz and GET /status (plain HTTP; empty: none)")
	f.StringArrayVar(&regions, "region", nil, "NAME=DEVICE/MQTT/SERVICE[/READY-URL][,NODE...], once per region, in order of preference")
	f.StringVar(&readyCA, "ready-ca", "", "PEM file of the CA of the nodes' control listeners (readiness checks; default: system roots)")
	f.DurationVar(&cfg.CheckInterval, "check-interval", frontdoor.DefaultCheckInterval, "period of health checks")
	f.DurationVar(&cfg.DialTimeout, "dial-timeout", frontdoor.DefaultDialTimeout, "timeout of a backend connection and of one health check")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", frontdoor.DefaultIdleTimeout, "close connections idle this long")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// mergeFrontdoorConfig reads file into cfg, keeping the values of flags
// given explicitly.
func mergeFrontdoorConfig(cmd *cobra.Command, file string, cfg *frontdoor.Config) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var fromFile frontdoor.Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fromFile); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	set := cmd.Flags().Changed
	keepStr := func(flag string, dst *string, v string) {
		if !set(flag) {
			*dst = v
		}
	}
	keepDur := func(flag string, dst *time.Duration, v time.Duration) {
		if !set(flag) && v != 0 {
			*dst = v
		}
	}
	keepStr("device-addr", &cfg.DeviceAddr, fromFile.DeviceAddr)
	keepStr("mqtt-addr", &cfg.MQTTAddr, fromFile.MQTTAddr)
	keepStr("service-addr", &cfg.ServiceAddr, fromFile.ServiceAddr)
	keepStr("status-addr", &cfg.StatusAddr, fromFile.StatusAddr)
	keepDur("check-interval", &cfg.CheckInterval, fromFile.CheckInterval)
	keepDur("dial-timeout", &cfg.DialTimeout, fromFile.DialTimeout)
	keepDur("idle-timeout", &cfg.IdleTimeout, fromFile.IdleTimeout)
	cfg.Regions = fromFile.Regions
	return nil
}

func routeName(s string) string {
	if s == "" {
		return "(no healthy region)"
	}
	return s
}
