package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/bench"
)

func TestBenchRetryFlags(t *testing.T) {
	cmd := benchCmd()
	var help bytes.Buffer
	cmd.SetOut(&help)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--retries", "--request-timeout"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("bench --help does not document %s:\n%s", want, help.String())
		}
	}
	f := cmd.Flags()
	if err := f.Parse([]string{"--retries", "2", "--request-timeout", "750ms"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.GetInt("retries"); nodeRetries(r) != 2 {
		t.Errorf("--retries 2 -> %d", nodeRetries(r))
	}
	if d, _ := f.GetDuration("request-timeout"); d != 750*time.Millisecond {
		t.Errorf("--request-timeout = %v", d)
	}
	if got := nodeRetries(0); got >= 0 {
		t.Errorf("--retries 0 -> NodeRetries %d, want negative (never; 0 would mean the default)", got)
	}
	def := benchCmd().Flags()
	if r, _ := def.GetInt("retries"); r != bench.DefaultNodeRetries {
		t.Errorf("default --retries = %d, want %d", r, bench.DefaultNodeRetries)
	}
	if d, _ := def.GetDuration("request-timeout"); d != bench.DefaultAttemptTimeout {
		t.Errorf("default --request-timeout = %v, want %v", d, bench.DefaultAttemptTimeout)
	}
}
