package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/opendps/opendps/pkg/dpsclient"
	"github.com/spf13/cobra"
)

// Client flags shared by every noun command (persistent on the root).
var clientFlags struct {
	connection string // path of connection.json
	control    string // control API URL (overrides the connection file)
	token      string // operator token (overrides the connection file)
	serviceCS  string // service connection string (overrides the connection file)
	caFile     string // CA PEM (overrides the connection file)
	json       bool
}

func addClientFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&clientFlags.connection, "connection", envOr("OPENDPS_CONNECTION", filepath.Join(".opendps-dev", "connection.json")), "connection.json of the deployment (env OPENDPS_CONNECTION)")
	f.StringVar(&clientFlags.control, "control-url", os.Getenv("OPENDPS_CONTROL_URL"), "control API URL (env OPENDPS_CONTROL_URL)")
	f.StringVar(&clientFlags.token, "token", os.Getenv("OPENDPS_TOKEN"), "operator token for the control API (env OPENDPS_TOKEN)")
	f.StringVar(&clientFlags.serviceCS, "service-connection-string", os.Getenv("OPENDPS_SERVICE_CONNECTION_STRING"), "service API connection string (env OPENDPS_SERVICE_CONNECTION_STRING)")
	f.StringVar(&clientFlags.caFile, "ca-file", os.Getenv("OPENDPS_CA_FILE"), "PEM file of the CA to trust (env OPENDPS_CA_FILE)")
	f.BoolVar(&clientFlags.json, "json", false, "print results as JSON")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// clientEnv is what a client command needs to talk to a deployment.
type clientEnv struct {
	Conn       *dpsclient.Connection // never nil; fields from flags override the file
	HTTP       *http.Client
	ControlURL string
	Token      string
	ServiceCS  string
}

// loadClientEnv resolves the client flags against the connection file. A
// missing connection file is fine when the flags say enough.
func loadClientEnv() (*clientEnv, error) {
	conn, err := dpsclient.LoadConnection(clientFlags.connection)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		conn = &dpsclient.Connection{}
	}
	env := &clientEnv{Conn: conn, ControlURL: conn.ControlEndpoint, Token: conn.OperatorToken, ServiceCS: conn.ServiceConnectionString}
	ca := conn.CACertificate
	if clientFlags.control != "" {
		env.ControlURL = clientFlags.control
	}
	if clientFlags.token != "" {
		env.Token = clientFlags.token
	}
	if clientFlags.serviceCS != "" {
		env.ServiceCS = clientFlags.serviceCS
	}
	if clientFlags.caFile != "" {
		ca = clientFlags.caFile
	}
	if env.HTTP, err = dpsclient.HTTPClient(ca); err != nil {
		return nil, err
	}
	return env, nil
}

// printResult writes v as indented JSON with --json, else calls text.
func printResult(w io.Writer, v any, text func(io.Writer)) error {
	if clientFlags.json || text == nil {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(w)
	return nil
}

// errf prints a diagnostic to stderr.
func errf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
