package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

func init() { register(deviceCmd) }

func deviceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "Act as a device on the device API (any DPS-compatible endpoint, Azure included)"}
	cmd.AddCommand(deviceRegisterCmd(), deviceStatusCmd())
	return cmd
}

// deviceFlags are the flags of the device verbs.
type deviceFlags struct {
	regID, scope, endpoint string
	key, groupKey          string
	certFile, certKeyFile  string
	payload                string
	protocol               string
	retryThrottled         bool
	pollInterval, timeout  time.Duration
}

func (f *deviceFlags) add(cmd *cobra.Command, withPayload bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.regID, "registration-id", "", "registration id of the device (default with --cert: its subject CN)")
	fl.StringVar(&f.scope, "id-scope", "", "ID scope of the instance (default: the connection file's)")
	fl.StringVar(&f.endpoint, "endpoint", "", "device endpoint host[:port] (default: the connection file's, else "+dpsclient.DefaultDeviceEndpoint+")")
	fl.StringVar(&f.key, "key", "", "the device's symmetric key, base64 (individual enrollment, or already derived)")
	fl.StringVar(&f.groupKey, "group-key", "", "the enrollment group's symmetric key, base64 (the device key is derived from it)")
	fl.StringVar(&f.certFile, "cert", "", "X.509 client certificate, PEM file (leaf first, then intermediates)")
	fl.StringVar(&f.certKeyFile, "cert-key", "", "private key of --cert, PEM file (default: --cert itself)")
	fl.BoolVar(&f.retryThrottled, "retry-throttled", false, "wait out 429 answers (Retry-After) a few times instead of failing")
	fl.DurationVar(&f.pollInterval, "poll-interval", 0, "wait between polls (default: the service's Retry-After, else 2s)")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up after this long, polls included")
	if withPayload { // register
		fl.StringVar(&f.payload, "payload", "", `custom payload JSON for the allocation webhook, e.g. '{"modelId":"dtmi:x;1"}', or @FILE`)
		fl.StringVar(&f.protocol, "protocol", dpsclient.ProtocolHTTPS, "https, or mqtt (MQTT over TLS; --endpoint default: the connection file's mqttEndpoint, else port 8883)")
	}
}

// options resolves the flags against the connection file.
func (f *deviceFlags) options() (dpsclient.DeviceOptions, error) {
	var o dpsclient.DeviceOptions
	env, err := loadClientEnv()
	if err != nil {
		return o, err
	}
	endpoint := env.Conn.DeviceEndpoint
	switch f.protocol {
	case "", dpsclient.ProtocolHTTPS:
	case dpsclient.ProtocolMQTT:
		endpoint = env.Conn.MQTTEndpoint
	default:
		return o, fmt.Errorf("--protocol %q: want %s or %s", f.protocol, dpsclient.ProtocolHTTPS, dpsclient.ProtocolMQTT)
	}
	o = dpsclient.DeviceOptions{Protocol: f.protocol, Endpoint: cmp.Or(f.endpoint, endpoint), IDScope: cmp.Or(f.scope, env.Conn.IDScope),
		RegistrationID: f.regID, SymmetricKey: f.key, GroupKey: f.groupKey, CAFile: cmp.Or(clientFlags.caFile, env.Conn.CACertificate),
		PollInterval: f.pollInterval, RetryThrottled: f.retryThrottled}
	if o.IDScope == "" {
		return o, errors.New("--id-scope is required (no connection file gives one)")
	}
	if f.certFile != "" {
		cert, err := tls.LoadX509KeyPair(f.certFile, cmp.Or(f.certKeyFile, f.certFile))
		if err != nil {
			return o, fmt.Errorf("--cert: %w", err)
		}
		o.Certificate = &cert
	} else if f.certKeyFile != "" {
		return o, errors.New("--cert-key needs --cert")
	}
	if o.Payload, err = readDevicePayload(f.payload); err != nil {
		return o, err
	}
	return o, nil
}

func readDevicePayload(s string) (json.RawMessage, error) {
	if s == "" {
		return nil, nil
	}
	b := []byte(s)
	if name, ok := strings.CutPrefix(s, "@"); ok {
		var err error
		if b, err = os.ReadFile(name); err != nil {
			return nil, fmt.Errorf("--payload: %w", err)
		}
	}
	if !json.Valid(b) {
		return nil, errors.New("--payload is not JSON")
	}
	return json.RawMessage(b), nil
}

func deviceRegisterCmd() *cobra.Command {
	var f deviceFlags
	cmd := &cobra.Command{
		Use:   "register --registration-id R [--key K | --group-key GK | --cert PEM [--cert-key PEM]] [--protocol mqtt]",
		Short: "Register a device (register, then poll until assigned; HTTPS or MQTT) and print its hub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			res, err := dpsclient.Register(ctx, opts)
			if res == nil || res.Status == "" { // no answer to show
				return err
			}
			if perr := printResult(cmd.OutOrStdout(), res, func(w io.Writer) { printRegistrationResult(w, res) }); perr != nil {
				return perr
			}
			if err != nil {
				errf("opendps: %v", err)
				return exitError{code: 1}
			}
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

func deviceStatusCmd() *cobra.Command {
	var f deviceFlags
	cmd := &cobra.Command{
		Use:   "status --registration-id R [--key K | --group-key GK | --cert PEM [--cert-key PEM]]",
		Short: "Look up a device's registration (POST {scope}/registrations/{id}); not billable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			st, err := dpsclient.RegistrationStatus(ctx, opts)
			if err != nil {
				return err
			}
			return printResult(cmd.OutOrStdout(), st, func(w io.Writer) { printDeviceState(w, st) })
		},
	}
	f.add(cmd, false)
	return cmd
}

func printRegistrationResult(w io.Writer, r *dpsclient.RegistrationResult) {
	fmt.Fprintf(w, "operation id       %s\n", r.OperationID)
	printDeviceState(w, r.State())
	if r.RegistrationState == nil {
		fmt.Fprintf(w, "status             %s\n", r.Status)
	}
	fmt.Fprintf(w, "round trips        %d (%d polls, %d throttle retries)\n", r.RoundTrips, r.Polls, r.ThrottleRetries)
}

func printDeviceState(w io.Writer, s *dpsclient.DeviceRegistrationResult) {
	if s.RegistrationID == "" && s.Status == "" {
		return
	}
	fmt.Fprintf(w, "registration id    %s\n", s.RegistrationID)
	fmt.Fprintf(w, "status             %s\n", s.Status)
	if s.Substatus != "" {
		fmt.Fprintf(w, "substatus          %s\n", s.Substatus)
	}
	if s.AssignedHub != "" {
		fmt.Fprintf(w, "assigned hub       %s\n", s.AssignedHub)
		fmt.Fprintf(w, "device id          %s\n", s.DeviceID)
	}
	if s.ErrorCode != 0 || s.ErrorMessage != "" {
		fmt.Fprintf(w, "error              %d %s\n", s.ErrorCode, s.ErrorMessage)
	}
	if len(s.Payload) > 0 {
		fmt.Fprintf(w, "payload            %s\n", s.Payload)
	}
	if s.LastUpdatedDateTimeUTC != "" {
		fmt.Fprintf(w, "last updated       %s\n", s.LastUpdatedDateTimeUTC)
	}
}
