package obs

import (
	"github.com/prometheus/client_golang/prometheus"
)

// NodeState is what a node reports about its store and region on every
// scrape. Every function must be cheap and must not block. Leadership is
// etcd's own etcd_server_has_leader, etcd_server_is_leader and
// etcd_server_leader_changes_seen_total (one embedded member per process).
type NodeState struct {
	Node, Region, Zone string
	// Ready: the store reaches a quorum and has caught up (store.Ready).
	Ready func() bool
	// ZoneRedundancy: the cached zone-redundancy rule of the region
	// (region.ZoneRedundancy) and its live node count; nil: not exported.
	ZoneRedundancy func() (redundant bool, zones int)
	LiveNodes      func() int
}

// NodeCollector exports a node's NodeState. Several nodes of one process
// (tests) each register one: their node label tells them apart.
type NodeCollector struct {
	s                                     NodeState
	ready                                 *prometheus.Desc
	zoneRedundant, regionZones, liveNodes *prometheus.Desc
}

var _ prometheus.Collector = (*NodeCollector)(nil)

// NewNodeCollector returns the collector of s; register it with
// prometheus.DefaultRegisterer and unregister it when the node stops.
func NewNodeCollector(s NodeState) *NodeCollector {
	l := prometheus.Labels{"node": s.Node, "region": s.Region, "zone": s.Zone}
	rl := prometheus.Labels{"node": s.Node, "region": s.Region}
	return &NodeCollector{s: s,
		ready:         prometheus.NewDesc(MetricStoreReady, "1 when the node's store reaches a quorum and has caught up (what /readyz answers), else 0.", nil, l),
		zoneRedundant: prometheus.NewDesc(MetricZoneRedundant, "1 when the region's voting members span enough availability zones to survive the loss of one (docs/zones.md), as this node sees it.", nil, rl),
		regionZones:   prometheus.NewDesc(MetricRegionZones, "Availability zones of the region's voting members, as this node sees them.", nil, rl),
		liveNodes:     prometheus.NewDesc(MetricRegionLiveNodes, "Live nodes of the region (registry entries), as this node sees them.", nil, rl),
	}
}

// Describe implements prometheus.Collector.
func (c *NodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	if c.s.ZoneRedundancy != nil {
		ch <- c.zoneRedundant
		ch <- c.regionZones
	}
	if c.s.LiveNodes != nil {
		ch <- c.liveNodes
	}
}

// Collect implements prometheus.Collector.
func (c *NodeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, b2f(c.s.Ready()))
	if c.s.ZoneRedundancy != nil {
		red, zones := c.s.ZoneRedundancy()
		ch <- prometheus.MustNewConstMetric(c.zoneRedundant, prometheus.GaugeValue, b2f(red))
		ch <- prometheus.MustNewConstMetric(c.regionZones, prometheus.GaugeValue, float64(zones))
	}
	if c.s.LiveNodes != nil {
		ch <- prometheus.MustNewConstMetric(c.liveNodes, prometheus.GaugeValue, float64(c.s.LiveNodes()))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
