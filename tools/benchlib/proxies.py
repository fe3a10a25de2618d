"""The proxies tools/bench compares, and how each is started.

  VARIANTS                      the variant names, in table order
  available(variant, opts=None) -> (bool, reason)
  start_proxy(variant, backends, workdir, opts) -> Proxy   (listening)
  Proxy: .variant .port .pid .log .cmd .config; stop(), alive()

Every variant listens on 127.0.0.1:<free port> and relays to backends, a
list of (host, port) (several: round robin), in plain TCP (layer 4):

  spliced-never / -always / -auto
        build/spliced with a generated config: `splice = MODE`, everything
        else at the shipped defaults (etc/spliced.ini: workers = one per CPU,
        access_log on, ...), except
        shutdown_timeout = 2s (only how long SIGTERM waits for connections
        to drain; it does not change any measurement) and max_connections
        when opts["maxconn"] asks for more than the default 10000.
  haproxy-default      HAProxy in mode tcp, no splice option: what it does
                       out of the box (threads = CPUs, one process)
  haproxy-splice-auto  + option splice-auto
  haproxy-splice       + option splice-request, option splice-response
  haproxy-tuned        + splice-request/response, tune.pipesize 1048576,
                       tune.bufsize 65536
  nginx-stream         nginx, stream { proxy_pass } with worker_processes
                       auto, defaults otherwise (master + workers)
  floor                build/floor-relay (tools/floor_relay.c, next to the
                       spliced binary used), threads = CPUs: a minimal
                       epoll relay, the least a userspace relay can spend.
                       An OPT_IN variant: it runs in the sections that list
                       it in extra_variants (small), or where --proxies
                       names it

opts (a dict; every key optional):
  spliced       path of the spliced binary (default build/spliced)
  maxconn       the proxy must take at least this many client connections
                at once: spliced max_connections, HAProxy global and
                defaults maxconn, nginx worker_connections (2 per client:
                the client's and the backend's) and worker_rlimit_nofile;
                RLIMIT_NOFILE of the child is raised to fit (hard limit too,
                as root)
  user          run the proxy as this user (e.g. "nobody"): spliced via
                setgid/setuid before exec, HAProxy `user`/`group`, nginx
                `user` (its workers; the master stays root)
  extra_config  dict of spliced [global] keys (value strings), overriding
                the above
  routes        spliced only: [(server name, [(host, port), ...]), ...]:
                the listener routes TLS clients by SNI (`route = NAME rN`,
                a [backend rN] per route); the other variants refuse it
                (RunError). The listener's `backend` stays the default
  default_backends  with routes: the default backend's servers instead of
                `backends` (an empty list: no default backend)
  haproxy_threads / nginx_workers   override nbthread / worker_processes
  scrape_metrics  seconds: spliced gets `admin = 127.0.0.1:PORT` and a
                thread GETs /metrics at that interval for as long as the
                proxy runs (what a Prometheus server would cost it); the
                other proxies are left alone
"""

import grp
import os
import pwd
import resource
import signal
import subprocess
import threading
import time
import urllib.request

from .common import (RunError, can_raise_nofile, free_port, max_clients, nofile_hard,
                     proc_pids, wait_listening, which, write_file)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SPLICED = os.environ.get("SPLICED", os.path.join(ROOT, "build", "spliced"))
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

VARIANTS = [
    "spliced-never", "spliced-always", "spliced-auto",
    "haproxy-default", "haproxy-splice-auto", "haproxy-splice", "haproxy-tuned",
    "nginx-stream",
    "floor",
]

# Variants left out of a section unless it asks for them (its
# extra_variants) or --proxies names them: the floor copies every byte, so
# its bulk and size rows would only say what spliced-never says.
OPT_IN = ["floor"]

# Shown in reports: what each variant is.
DESCRIPTIONS = {
    "spliced-never": "spliced, splice = never (copies every byte), shipped defaults otherwise",
    "spliced-always": "spliced, splice = always (splices from the first byte)",
    "spliced-auto": "spliced, splice = auto (the shipped default)",
    "haproxy-default": "HAProxy mode tcp, no splice option (out of the box)",
    "haproxy-splice-auto": "HAProxy mode tcp, option splice-auto",
    "haproxy-splice": "HAProxy mode tcp, option splice-request + splice-response",
    "haproxy-tuned": "HAProxy splice-request/response, tune.pipesize 1048576, tune.bufsize 65536",
    "nginx-stream": "nginx stream { proxy_pass }, worker_processes auto",
    "floor": "a minimal epoll relay (tools/floor_relay.c): read/write, level-triggered, "
             "no features — the floor for small requests",
}

_seq = [0]


def family(variant):
    return variant.split("-", 1)[0]


def floor_path(opts=None):
    """build/floor-relay: next to the spliced binary the run uses."""
    spliced = (opts or {}).get("spliced") or DEFAULT_SPLICED
    return os.path.join(os.path.dirname(os.path.abspath(spliced)), "floor-relay")


def available(variant, opts=None):
    """(True, "") when the variant can run here, else (False, why)."""
    opts = opts or {}
    if variant not in VARIANTS:
        return False, f"unknown variant {variant}"
    fam = family(variant)
    if fam == "spliced":
        path = opts.get("spliced") or DEFAULT_SPLICED
        if not os.access(path, os.X_OK):
            return False, f"{path} is not an executable (build first)"
        return True, ""
    if fam == "haproxy":
        if not which("haproxy"):
            return False, "haproxy is not installed"
        return True, ""
    if fam == "nginx":
        if not which("nginx"):
            return False, "nginx is not installed"
        if not os.path.exists(NGINX_STREAM_MODULE):
            return False, f"nginx's stream module is not installed ({NGINX_STREAM_MODULE}: " \
                          "libnginx-mod-stream)"
        return True, ""
    if fam == "floor":
        path = floor_path(opts)
        if not os.access(path, os.X_OK):
            return False, f"{path} is not an executable (build it: ninja -C " \
                          f"{os.path.dirname(path)} floor-relay)"
        return True, ""
    return False, "?"


class Proxy:
    def __init__(self, variant, port, proc, log, cmd, config):
        self.variant, self.port, self.proc = variant, port, proc
        self.pid, self.log, self.cmd, self.config = proc.pid, log, cmd, config
        self.returncode = None      # after stop(): the main process's status
        self.killed = False         # after stop(): whether it needed SIGKILL
        self.scraper = None         # a Scraper while one runs

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM, wait up to 10 s, then SIGKILL (the whole process group:
        no orphaned worker survives). Returns the exit status."""
        scraped = None
        if self.scraper is not None:
            self.scraper.stop()
            scraped, self.scraper = self.scraper, None
        if self.proc.poll() is None:
            pids = proc_pids(self)
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.killed = True
                self._kill_group(pids)
                self.proc.wait()
        # Workers of a master that died must not outlive it.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.returncode = self.proc.returncode
        # A scrape that failed would make the figures those of a proxy
        # nobody watched.
        if scraped is not None and (scraped.failed or not scraped.ok):
            raise RunError(f"{self.variant}: /metrics scrapes: {scraped.ok} answered, "
                           f"{scraped.failed} failed")
        return self.returncode

    def _kill_group(self, pids):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def __repr__(self):
        return f"<Proxy {self.variant} pid={self.pid} port={self.port}>"


def _nofile_for(maxconn):
    """fds a proxy wants for maxconn clients: two sockets each, pipes
    (two fds) for some, and slack; at most the hard limit when it cannot be
    raised (see common.max_clients())."""
    if not maxconn:
        return 0
    return min(4 * maxconn + 4096, max(nofile_hard(), 3 * maxconn + 1024)) \
        if can_raise_nofile() else nofile_hard()


def _preexec(nofile, user):
    """For the child, before exec: own process group (so stop() can kill
    every worker), RLIMIT_NOFILE raised to nofile, then drop to user."""
    ids = None
    if user:
        pw = pwd.getpwnam(user)
        ids = (pw.pw_uid, pw.pw_gid)
    try:
        with open("/proc/sys/fs/nr_open") as f:
            nr_open = int(f.read())
    except (OSError, ValueError):
        nr_open = 1 << 20

    def fn():
        os.setpgid(0, 0)
        if nofile:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = min(max(nofile, soft), nr_open)
            if want > soft:
                newhard = hard if (hard == resource.RLIM_INFINITY or hard >= want) else want
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (want, newhard))
                except (ValueError, OSError):
                    if hard == resource.RLIM_INFINITY:
                        hard = nr_open
                    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        if ids:
            os.setgroups([])
            os.setgid(ids[1])
            os.setuid(ids[0])
    return fn


def _group_of(user):
    gid = pwd.getpwnam(user).pw_gid
    return grp.getgrgid(gid).gr_name


def _spliced(variant, port, backends, workdir, opts, tag):
    mode = variant.split("-", 1)[1]
    maxconn = int(opts.get("maxconn") or 0)
    glob = {"splice": mode, "shutdown_timeout": "2s"}
    if maxconn > 10000:
        glob["max_connections"] = str(maxconn)
    if opts.get("admin_port"):
        glob["admin"] = f"127.0.0.1:{opts['admin_port']}"
    glob.update({k: str(v) for k, v in (opts.get("extra_config") or {}).items()})
    routes = opts.get("routes") or []
    default = opts.get("default_backends", backends) if routes else backends
    lines = ["[global]"] + [f"{k} = {v}" for k, v in glob.items()]
    lines += ["", "[listener bench]", f"bind = 127.0.0.1:{port}"]
    lines += ["backend = bench"] if default else []
    lines += [f"route = {name} r{i}" for i, (name, _) in enumerate(routes, 1)]
    if default:
        lines += ["", "[backend bench]"]
        lines += [f"server = s{i} {h}:{p}" for i, (h, p) in enumerate(default, 1)]
    for i, (_, servers) in enumerate(routes, 1):
        lines += ["", f"[backend r{i}]"]
        lines += [f"server = s{j} {h}:{p}" for j, (h, p) in enumerate(servers, 1)]
    conf = write_file(os.path.join(workdir, f"{tag}.ini"), "\n".join(lines) + "\n")
    binary = opts.get("spliced") or DEFAULT_SPLICED
    return [binary, "-c", conf], conf, _nofile_for(maxconn), opts.get("user")


def _haproxy(variant, port, backends, workdir, opts, tag):
    maxconn = int(opts.get("maxconn") or 0)
    user = opts.get("user")
    glob = []
    if maxconn:
        glob.append(f"maxconn {maxconn}")
    if user:
        glob += [f"user {user}", f"group {_group_of(user)}"]
    if opts.get("haproxy_threads"):
        glob.append(f"nbthread {int(opts['haproxy_threads'])}")
    dflt = ["mode tcp", "timeout connect 5s", "timeout client 5m", "timeout server 5m"]
    if maxconn:
        dflt.append(f"maxconn {maxconn}")
    if variant == "haproxy-splice-auto":
        dflt.append("option splice-auto")
    elif variant in ("haproxy-splice", "haproxy-tuned"):
        dflt += ["option splice-request", "option splice-response"]
    if variant == "haproxy-tuned":
        glob += ["tune.pipesize 1048576", "tune.bufsize 65536"]
    text = "global\n" + "".join(f"    {g}\n" for g in glob)
    text += "\ndefaults\n" + "".join(f"    {d}\n" for d in dflt)
    text += f"\nfrontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n"
    text += "\nbackend be\n    balance roundrobin\n"
    text += "".join(f"    server s{i} {h}:{p}\n" for i, (h, p) in enumerate(backends, 1))
    conf = write_file(os.path.join(workdir, f"{tag}.cfg"), text)
    # -db: foreground, one process (threads = CPUs by default).
    return [which("haproxy"), "-db", "-f", conf], conf, _nofile_for(maxconn), None


def _nginx(variant, port, backends, workdir, opts, tag):
    maxconn = int(opts.get("maxconn") or 0)
    user = opts.get("user")
    prefix = os.path.join(workdir, tag)
    os.makedirs(prefix, exist_ok=True)
    os.chmod(prefix, 0o755)
    lines = [f"load_module {NGINX_STREAM_MODULE};",
             f"worker_processes {opts.get('nginx_workers') or 'auto'};",
             f"pid {prefix}/nginx.pid;",
             f"error_log {prefix}/error.log notice;"]
    if user:
        lines.append(f"user {user} {_group_of(user)};")
    events = []
    if maxconn:
        wc = 2 * maxconn + 128
        lines.append(f"worker_rlimit_nofile {min(2 * wc + 1024, nofile_hard())};")
        events.append(f"worker_connections {wc};")
    lines.append("events { " + " ".join(events) + " }")
    lines.append("stream {")
    lines.append("    upstream be {")
    lines += [f"        server {h}:{p};" for h, p in backends]
    lines.append("    }")
    lines.append(f"    server {{ listen 127.0.0.1:{port}; proxy_pass be; }}")
    lines.append("}")
    conf = write_file(os.path.join(workdir, f"{tag}.conf"), "\n".join(lines) + "\n")
    cmd = [which("nginx"), "-p", prefix + "/", "-e", f"{prefix}/error.log", "-c", conf,
           "-g", "daemon off;"]
    return cmd, conf, _nofile_for(maxconn), None


def _floor(variant, port, backends, workdir, opts, tag):
    maxconn = int(opts.get("maxconn") or 0)
    cmd = [floor_path(opts), "--listen", f"127.0.0.1:{port}",
           "--threads", str(os.cpu_count() or 1)]
    for h, p in backends:
        cmd += ["--backend", f"[{h}]:{p}" if ":" in h else f"{h}:{p}"]
    return cmd, None, _nofile_for(maxconn), opts.get("user")


class Scraper:
    """GET url every `every` seconds on a thread of its own until stop();
    counts the scrapes that answered 200 and the ones that failed."""

    def __init__(self, url, every):
        self.url, self.every = url, every
        self.ok = self.failed = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                    self.ok += r.status == 200
            except OSError:
                self.failed += 1

    def stop(self):
        self.done.set()
        self.thread.join(10)


_BUILDERS = {"spliced": _spliced, "haproxy": _haproxy, "nginx": _nginx, "floor": _floor}


def start_proxy(variant, backends, workdir, opts=None):
    """Start variant in front of backends; returns a Proxy once it listens
    (RunError if it does not)."""
    opts = opts or {}
    ok, why = available(variant, opts)
    if not ok:
        raise RunError(f"{variant}: {why}")
    maxconn = int(opts.get("maxconn") or 0)
    if maxconn > max_clients():
        raise RunError(f"{variant}: maxconn {maxconn} does not fit in the fd limit: "
                       f"at most {max_clients()} client connections (hard RLIMIT_NOFILE "
                       f"{nofile_hard()}, which this process cannot raise)")
    if opts.get("routes") and family(variant) != "spliced":
        raise RunError(f"{variant}: routing by SNI is configured for spliced only here")
    _seq[0] += 1
    tag = f"{_seq[0]:03d}-{variant}"
    port = free_port()
    scrape = family(variant) == "spliced" and opts.get("scrape_metrics")
    if scrape:
        opts = dict(opts, admin_port=free_port())
    cmd, conf, nofile, user = _BUILDERS[family(variant)](variant, port, backends, workdir,
                                                       opts, tag)
    logpath = os.path.join(workdir, f"{tag}.log")
    with open(logpath, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir,
                                preexec_fn=_preexec(nofile, user))
    proxy = Proxy(variant, port, proc, logpath, cmd, conf)
    try:
        wait_listening(proc, port, variant, logpath)
        _settle(proxy)
        if scrape:
            proxy.scraper = Scraper(f"http://127.0.0.1:{opts['admin_port']}/metrics",
                                    float(scrape))
    except BaseException:
        proxy.stop()
        raise
    return proxy


def _settle(proxy, timeout=5.0):
    """Listening is not quite ready: nginx's workers and HAProxy's threads
    are forked/spawned after the bind. Wait until the process count stays
    the same for 100 ms."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        n = len(proc_pids(proxy))
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= 0.1:
            break
        time.sleep(0.02)
    if family(proxy.variant) == "nginx" and last is not None and last < 2:
        raise RunError(f"{proxy.variant}: no worker process", proxy.log)
