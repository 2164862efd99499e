// Package bench is the load generator behind `opendps bench`: it
// registers many symmetric-key devices against the HTTPS device API of a
// deployment (or its MQTT-over-TLS device API, Config.Protocol), measures throughput, latency and round trips, and then
// measures the raw write rate of the deployment's etcd with transactions
// of the same size, so that the report can give a ratio measured in one
// run rather than absolute figures (DESIGN §9, docs/performance.md).
//
// A run, given the deployment's connection.json:
//
//	conn, err := dpsclient.LoadConnection(".opendps-dev/connection.json")
//	if err != nil { ... }
//	cfg := bench.DefaultConfig()
//	cfg.Conn = conn
//	cfg.Duration = 20 * time.Second
//	rep, err := bench.Run(ctx, cfg)
//	if err != nil { ... }
//	rep.WriteText(os.Stdout)
//
// Setup creates one symmetric-key enrollment group (or one individual
// enrollment per device, in bulk operations of 10) named after the run;
// devices are bench-<runid>-<i>. Workers take devices round robin, so a
// device registers again only after every other device was started;
// first registrations and repeats are counted apart. Every registration
// opens its own TLS connection unless ReuseConnections is set, and
// registrations are spread round robin over the device endpoints of all
// nodes, as a load balancer would. Raw writes go under RawPrefix and are
// deleted afterwards; enrollments and registration records are deleted
// when Config.Cleanup is set.
//
// Run is not meant to be called concurrently with itself on one
// deployment only because the results would disturb each other; it
// shares no state between calls.
package bench
