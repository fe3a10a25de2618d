"""tools/fleet's library (see tools/fleet and tools/README.md): base
(addresses, failures, waits), net (namespaces, links, the router's ECMP
route and flow pinning), procs (backends, spliced instances), clients
(probes, short and long byte-checked connections), fleet (all of it, made
and torn down), cases (a, b, c and their figures)."""
