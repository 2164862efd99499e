package armtemplate

import "strings"

// order sorts resources so that each comes after the resources it depends
// on, otherwise in template order, and reports dependency cycles. Resources
// whose condition is false are dropped (a dependency on one is satisfied,
// as in ARM).
func order(rs []*Resource, c *errs) []*Resource {
	byID := map[string]*Resource{}
	for _, r := range rs {
		byID[strings.ToLower(r.ID)] = r
	}
	const (
		unvisited = iota
		visiting
		visited
	)
	state := map[*Resource]int{}
	var out []*Resource
	var stack []*Resource
	var visit func(r *Resource) bool
	visit = func(r *Resource) bool {
		switch state[r] {
		case visited:
			return true
		case visiting:
			c.add(ErrInvalid, joinPath(r.Path, "dependsOn"), "", "dependency cycle: %s", cycleText(stack, r))
			return false
		}
		state[r] = visiting
		stack = append(stack, r)
		ok := true
		for _, id := range r.DependsOn {
			if d := byID[strings.ToLower(id)]; d != nil && !visit(d) {
				ok = false
				break
			}
		}
		stack = stack[:len(stack)-1]
		state[r] = visited
		if ok && r.condition {
			out = append(out, r)
		}
		return ok
	}
	for _, r := range rs {
		if state[r] == unvisited && !visit(r) {
			return nil
		}
	}
	return out
}

// cycleText shows the cycle that closes at r: "a -> b -> a".
func cycleText(stack []*Resource, r *Resource) string {
	start := 0
	for i, s := range stack {
		if s == r {
			start = i
		}
	}
	var names []string
	for _, s := range stack[start:] {
		names = append(names, s.Name+" ("+s.Path+")")
	}
	names = append(names, r.Name)
	return strings.Join(names, " -> ")
}
