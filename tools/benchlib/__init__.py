"""tools/bench's library: see tools/README.md (bench) and the modules:
common (ports, /proc accounting), proxies (the variants and how they start),
bulk and small (sections), report (markdown and charts), runner (the
comparison), sweep (spliced's pipe_size/buffer_size sweep). The sizes, idle
and flows sections live in sizes.py, idle.py and flows.py."""
