package console

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/model"
	"github.com/opendps/opendps/internal/region"
)

// The operator's region view: nodes by zone, replication and its lag
// chart (lag.go), and failover with what it may lose.

// memberRow is one etcd member (or, with an external etcd, one node).
type memberRow struct {
	Name    string
	Healthy bool
	Leader  bool
	Learner bool
	NodeUp  bool // the node's registry entry is live
	Error   string
}

type zoneRow struct {
	Zone    string
	Members []memberRow
}

// instRow is an instance in the region view.
type instRow struct {
	Name, Primary, Secondary, Role string
	Epoch                          uint64
	DR                             bool
	// FailoverHere: this region is the instance's secondary and may
	// promote itself (failover, or failback after one).
	FailoverHere bool
}

type regionData struct {
	Status    *region.Status
	StatusErr string
	Zones     []zoneRow
	Chart     *chart
	Streams   []model.ReplStatus
	Incoming  []model.ReplState
	ReplErr   string
	Instances []instRow
	// FromRegions: primary regions of instances this region can take
	// over (region failover).
	FromRegions []string
	HasDR       bool
	// LostWrites are the reports this region keeps (it was the old
	// primary), without their writes.
	LostWrites    []lostRow
	LostWritesErr string
	// PrimaryHere: DR-enabled instances primary (or fenced) here, which
	// the fence form offers.
	PrimaryHere []instRow
}

func (c *Console) regionView(w http.ResponseWriter, r *http.Request, p *principal) error {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	d := regionData{HasDR: c.cfg.DR != nil}
	if c.cfg.Region != nil {
		st, err := c.cfg.Region.Status(ctx)
		if err != nil {
			c.log.Warn("console: region status", "err", err)
			d.StatusErr = "The region's status is unavailable right now."
		} else {
			d.Status, d.Zones = st, zonesOf(st)
		}
	}
	if c.cfg.Replication != nil {
		streams, incoming, err := c.cfg.Replication(ctx)
		if err != nil {
			d.ReplErr = "Replication state unavailable right now."
		}
		d.Streams, d.Incoming = streams, incoming
	}
	if c.lag != nil {
		d.Chart = c.lagChart(time.Now())
	}
	views, err := c.cfg.Instances.ListAll(ctx)
	if err != nil {
		return err
	}
	d.Instances, d.FromRegions = c.instRows(views)
	for _, row := range d.Instances {
		if row.DR && strings.EqualFold(row.Primary, c.cfg.RegionName) && row.Role != model.RoleSecondary {
			d.PrimaryHere = append(d.PrimaryHere, row)
		}
	}
	if c.cfg.DR != nil {
		if d.LostWrites, err = c.lostWritesOf(ctx, ""); err != nil {
			c.log.Warn("console: lost-writes reports", "err", err)
			d.LostWritesErr = "The lost-writes reports are unavailable right now."
		}
	}
	c.render(w, r, http.StatusOK, "regions", p, "Regions", d)
	return nil
}

// zonesOf groups the members of st by zone (its nodes, with an external
// etcd).
func zonesOf(st *region.Status) []zoneRow {
	by := map[string][]memberRow{}
	for _, m := range st.Members {
		by[m.Zone] = append(by[m.Zone], memberRow{Name: m.DisplayName(), Healthy: m.Healthy, Leader: m.IsLeader,
			Learner: m.IsLearner, NodeUp: m.Node != nil, Error: m.Error})
	}
	if len(st.Members) == 0 {
		for _, n := range st.Nodes {
			by[n.Zone] = append(by[n.Zone], memberRow{Name: n.Name, Healthy: true, NodeUp: true})
		}
	}
	var out []zoneRow
	for z, ms := range by {
		slices.SortFunc(ms, func(a, b memberRow) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, zoneRow{Zone: z, Members: ms})
	}
	slices.SortFunc(out, func(a, b zoneRow) int { return strings.Compare(a.Zone, b.Zone) })
	return out
}

func (c *Console) instRows(views []*instance.View) ([]instRow, []string) {
	var rows []instRow
	from := map[string]bool{}
	for _, v := range views {
		d := v.Dir
		row := instRow{Name: v.Instance.Name, Primary: d.Primary, Secondary: d.Secondary, Role: d.Role,
			Epoch: d.Epoch, DR: d.DREnabled}
		row.FailoverHere = c.cfg.DR != nil && d.DREnabled && d.Secondary != "" &&
			strings.EqualFold(d.Secondary, c.cfg.RegionName) && d.Role == model.RoleSecondary
		if row.FailoverHere {
			from[d.Primary] = true
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b instRow) int { return strings.Compare(a.Name, b.Name) })
	regs := make([]string, 0, len(from))
	for r := range from {
		regs = append(regs, r)
	}
	slices.Sort(regs)
	return rows, regs
}

// failoverTarget is an instance a failover would promote here, with what
// this region has of it.
type failoverTarget struct {
	Row   instRow
	State *model.ReplState // nil: nothing received yet
	// Age is how long ago the source committed the last revision this
	// region applied.
	Age string
}

type failoverData struct {
	Instance, From string // what is failed over: one instance, or a region's
	Targets        []failoverTarget
	ReplErr        string
}

// failoverPreview shows, before confirming, what a failover to this
// region may lose: per instance the last replicated revision and when the
// source committed it.
func (c *Console) failoverPreview(w http.ResponseWriter, r *http.Request, p *principal) error {
	d, err := c.failoverPlan(r, r.URL.Query().Get("instance"), r.URL.Query().Get("from"))
	if err != nil {
		return err
	}
	c.render(w, r, http.StatusOK, "failover", p, "Failover", d)
	return nil
}

// failoverPlan finds the instances a failover to this region would take.
func (c *Console) failoverPlan(r *http.Request, inst, from string) (*failoverData, error) {
	if c.cfg.DR == nil {
		return nil, &pageError{Status: http.StatusNotFound, Msg: "This node runs no failover manager."}
	}
	if (inst == "") == (from == "") {
		return nil, badRequest("Name one instance, or the region to fail over from.")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	views, err := c.cfg.Instances.ListAll(ctx)
	if err != nil {
		return nil, err
	}
	rows, _ := c.instRows(views)
	var incoming []model.ReplState
	d := &failoverData{Instance: inst, From: from}
	if c.cfg.Replication != nil {
		if _, incoming, err = c.cfg.Replication(ctx); err != nil {
			d.ReplErr = "The replication state is unavailable right now: what may be lost cannot be shown."
		}
	}
	now := time.Now()
	for _, row := range rows {
		if !row.FailoverHere || (inst != "" && !strings.EqualFold(row.Name, inst)) || (from != "" && !strings.EqualFold(row.Primary, from)) {
			continue
		}
		t := failoverTarget{Row: row, Age: "-"}
		for i := range incoming {
			if incoming[i].Instance == row.Name {
				t.State = &incoming[i]
				if !t.State.SourceTime.IsZero() {
					t.Age = now.Sub(t.State.SourceTime).Round(time.Second).String()
				}
			}
		}
		d.Targets = append(d.Targets, t)
	}
	if len(d.Targets) == 0 {
		return nil, &pageError{Status: http.StatusConflict, Msg: "Nothing to fail over to " + c.cfg.RegionName +
			" here: a failover runs in the instance's secondary region (open the console of a node there)."}
	}
	return d, nil
}

// runFailover starts a failover of what the confirmed form names and
// sends the browser to its operation page. The failover runs detached from
// the request (a planned one drains for up to dr.DefaultDrainTimeout): a
// closed tab or a dropped connection does not stop it half-way, and the
// operation page shows its report when it ends.
func (c *Console) runFailover(w http.ResponseWriter, r *http.Request, p *principal) error {
	inst, from := r.PostFormValue("instance"), r.PostFormValue("from")
	if _, err := c.failoverPlan(r, inst, from); err != nil {
		return err
	}
	req := model.FailoverRequest{From: from, Planned: r.PostFormValue("mode") != "unplanned",
		Force: r.PostFormValue("force") == "on"}
	if inst != "" {
		req.Instances = []string{inst}
	}
	op := c.ops.start(req, inst)
	c.log.Info("console failover", "op_id", op.ID, "instance", inst, "from", from, "planned", req.Planned, "force", req.Force)
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		ctx, cancel := context.WithTimeout(c.bgCtx, failoverTimeout)
		defer cancel()
		rep, err := c.cfg.DR.Failover(ctx, req)
		msg := ""
		if err != nil {
			if _, msg = userError(err); msg == "" {
				msg = "The failover failed; see the node's log (op " + op.ID + ")."
			}
			c.log.Error("console failover failed", "op_id", op.ID, "err", err)
		}
		if rep != nil {
			slices.SortFunc(rep.Items, func(a, b model.FailoverItem) int { return cmp.Compare(a.Instance, b.Instance) })
		}
		c.ops.finish(op.ID, rep, msg)
	}()
	return c.finish(w, r, "/regions/failovers/"+op.ID, "")
}

// failoverOp is a failover started from the console.
type failoverOp struct {
	ID       string
	What     string // the instance, or "region R"
	Req      model.FailoverRequest
	Started  time.Time
	Done     bool
	Report   *model.FailoverReport
	Error    string
	Duration time.Duration
}

// opLog keeps the last maxOps failovers of this node, in memory.
type opLog struct {
	mu  sync.Mutex
	ops []*failoverOp // guarded by mu; newest last
}

const maxOps = 20

func (l *opLog) start(req model.FailoverRequest, inst string) failoverOp {
	op := &failoverOp{ID: randomID()[:12], Req: req, Started: time.Now(), What: inst}
	if inst == "" {
		op.What = "region " + req.From
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
	if len(l.ops) > maxOps {
		l.ops = l.ops[len(l.ops)-maxOps:]
	}
	return *op
}

func (l *opLog) finish(id string, rep *model.FailoverReport, errMsg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, op := range l.ops {
		if op.ID == id {
			op.Done, op.Report, op.Error, op.Duration = true, rep, errMsg, time.Since(op.Started).Round(time.Millisecond)
		}
	}
}

// list returns copies of the operations, newest first.
func (l *opLog) list() []failoverOp {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]failoverOp, 0, len(l.ops))
	for i := len(l.ops) - 1; i >= 0; i-- {
		out = append(out, *l.ops[i])
	}
	return out
}

func (l *opLog) get(id string) (failoverOp, bool) {
	for _, op := range l.list() {
		if op.ID == id {
			return op, true
		}
	}
	return failoverOp{}, false
}

// failoverOps lists the failovers started from this node's console.
func (c *Console) failoverOps(w http.ResponseWriter, r *http.Request, p *principal) error {
	c.render(w, r, http.StatusOK, "operations", p, "Failovers from this console", c.ops.list())
	return nil
}

// failoverOpPage shows one failover: running (the page reloads itself),
// or its report.
func (c *Console) failoverOpPage(w http.ResponseWriter, r *http.Request, p *principal) error {
	op, ok := c.ops.get(r.PathValue("id"))
	if !ok {
		return &pageError{Status: http.StatusNotFound, Msg: "No such failover on this node (the console keeps the last 20, until the node restarts)."}
	}
	pd := pageData{Title: "Failover " + op.What, P: p, Region: c.cfg.RegionName, D: op}
	if !op.Done {
		pd.Refresh = 1
	}
	c.renderData(w, r, http.StatusOK, "operation", pd)
	return nil
}
