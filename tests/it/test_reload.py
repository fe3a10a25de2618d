#!/usr/bin/env python3
"""SIGHUP reloads under continuous load.

under load: four echo servers s0..s3; listener web (always there) balances
  over two of them, a different pair after every reload; listener extra
  comes and goes. Three client threads keep doing echo round trips through
  web (1 KiB to 256 KiB, sha256 compared) while 20 reloads happen, with an
  invalid config after every fourth (25 SIGHUPs). After each valid reload new connections
  reach only the new pair, extra answers when it is in the config and
  refuses when it is not; after an invalid one the reason is logged and
  the old pair still serves. No client round trip may fail.
snapshot: a connection opened before a reload that removes its server and
  its listener keeps streaming to that server until it ends (byte-exact
  both ways), and its access line names the old server.
restart keys: a reload that changes workers says it needs a restart and
  keeps the running value; the rest of that config applies.
bind error: a reload adding a listener on a port another socket holds
  fails, naming the file, line and key, and nothing changes.
"""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

RELOADS = 20            # valid ones; an invalid one follows every fourth
SIZES = [H.KiB, 16 * H.KiB, 256 * H.KiB]


def refused(port):
    try:
        c = H.dial(port, timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    c.close()
    return False


def write_config(p, listeners, backends, glob=None):
    """The proxy's config file, rewritten: same ports for the same
    listener names; a listener new to the proxy gets a free port."""
    for name, opts in listeners.items():
        if name not in p.ports:
            p.ports[name] = [H.free_port() for _ in range(opts.get("binds", 1))]
    g = dict(p.glob)
    g.update(glob or {})
    text = H.render_config(g, listeners, backends, p.ports)
    with open(p.config_path, "w") as f:
        f.write(text)


def reload(p, expect):
    """SIGHUP; wait for the line that says how it went."""
    mark = p.mark()
    p.signal(H.signal.SIGHUP)
    line = p.wait_line(expect, 20, since=mark)
    H.check(line, "reload logged", "a line matching %r" % expect,
            "none; last lines:\n      " + "\n      ".join(p.lines[-8:]))
    return mark


def probe_servers(p, port, n, since_seed):
    """n round trips through port; the servers their access lines name."""
    names = set()
    for k in range(n):
        cport = []
        # Client ports come round again under load: only lines from now.
        mark = p.mark()
        what = H.echo_trip(port, since_seed + k, 4 * H.KiB, ports=cport)
        H.check(what is None, "a probe round trip", "intact", what)
        a = p.access_for(cport[0], since=mark, timeout=10)
        names.add(a["server"].split("/")[0])
    return names


def test_under_load(ctx):
    servers = [ctx.backend(H.echo(), name="s%d" % i) for i in range(4)]
    addr = {"s%d" % i: s.addr for i, s in enumerate(servers)}

    def backends(pair):
        return {"app": {"server": ["%s %s" % (n, addr[n]) for n in pair]},
                "side": {"server": ["s3 %s" % addr["s3"]]}}

    def listeners(extra):
        ls = {"web": {"backend": "app"}}
        if extra:
            ls["extra"] = {"backend": "side"}
        return ls

    pair = ("s0", "s1")
    p = ctx.proxy(glob={"splice": ctx.mode}, listeners=listeners(True),
                  backends=backends(pair))
    p.allow(r"^reload failed: ")
    p.start()
    web, extra = p.port("web"), p.port("extra")
    cl = ctx.register(H.EchoClients(web, n=3, sizes=SIZES, seed=7000))
    H.check_eq(probe_servers(p, web, 4, 100) <= set(pair), True,
               "servers reached at start are the first pair")
    have_extra = True
    seed = 1000
    for i in range(1, RELOADS + RELOADS // 4 + 1):
        seed += 100
        if i % 5 == 0:
            # A bad value: the reload must change nothing.
            with open(p.config_path, "a") as f:
                f.write("\n[listener broken]\nbind = 127.0.0.1:1\nbackend = app\n"
                        "timeout_idle = 5x\n")
            reload(p, r"error: reload failed: .*timeout_idle")
            H.check_eq(probe_servers(p, web, 3, seed) <= set(pair), True,
                       "reload %d (invalid): servers still the old pair %s" % (i, pair))
            H.check(refused(extra) != have_extra, "reload %d (invalid): extra "
                    "unchanged" % i, "as before", "changed")
            continue
        pair = ("s%d" % (i % 4), "s%d" % ((i + 1) % 4))
        have_extra = i % 2 == 0
        write_config(p, listeners(have_extra), backends(pair))
        reload(p, r"info: reloaded ")
        # The workers switch at their next loop turn after the line.
        time.sleep(0.1)
        got = probe_servers(p, web, 4, seed)
        H.check(got <= set(pair), "reload %d: new connections reach only %s" % (i, pair),
                "a subset of %s" % (pair,), sorted(got))
        if have_extra:
            H.check(H.echo_trip(extra, seed + 50, 8 * H.KiB) is None,
                    "reload %d: extra serves" % i, "a round trip", "failed")
        else:
            H.check(H.wait_until(lambda: refused(extra), 5),
                    "reload %d: extra is gone" % i, "connection refused", "accepted")
    cl.stop()
    H.log("%d client round trips during %d reloads and %d rejected ones, %d failed" % (
        cl.done, RELOADS, RELOADS // 4, len(cl.failures)))
    H.check_eq(cl.failures[:5], [], "client round trips that failed")
    H.check(cl.done >= RELOADS, "round trips made", ">= %d" % RELOADS, cl.done)
    if not have_extra:
        # The fd baseline was taken with extra bound.
        write_config(p, listeners(True), backends(pair))
        reload(p, r"info: reloaded ")
    p.finish()


def test_snapshot(ctx):
    old = ctx.backend(H.echo(), name="old")
    new = ctx.backend(H.echo(), name="new")
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"gone": {"backend": "a", "timeout_idle": "20s"},
                             "web": {"backend": "a"}},
                  backends={"a": {"server": "old %s" % old.addr}})
    p.start()
    gone = p.port("gone")
    size = 16 * H.MiB
    mark = p.mark()
    c = H.dial(gone, timeout=30)
    cport = H.local_port(c)
    got = {}

    def reader():
        got["r"] = H.read_stream(c, deadline=time.monotonic() + 60)
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    half = {}

    def sender():
        half["sha"] = H.send_stream(c, 77, size, pause=(H.MiB, 0.1))
        c.shutdown(socket.SHUT_WR)
    s = threading.Thread(target=sender, daemon=True)
    s.start()
    time.sleep(0.5)                 # some MiB through, most still to come
    write_config(p, {"web": {"backend": "b"}},
                 {"b": {"server": "new %s" % new.addr, "retries": 0}})
    reload(p, r"info: reloaded .*\(0 added, 1 removed\)")
    H.check(H.wait_until(lambda: refused(gone), 5), "the removed listener",
            "refuses new clients", "still accepts")
    H.check(H.echo_trip(p.port("web"), 5, 64 * H.KiB) is None,
            "a new connection", "served by the new config", "failed")
    s.join(60)
    t.join(60)
    c.close()
    r = got.get("r")
    H.check(r is not None and (r.end, r.n, r.sha) == ("eof", size, half.get("sha")),
            "the connection opened before the reload", "all %d bytes back, intact" % size,
            repr(r))
    a = p.access_for(cport, since=mark, timeout=10)
    H.check_eq(a["server"].split("/")[0], "old", "server in its access line")
    H.check_eq(a.get("reason"), "client_eof", "how it ended")
    write_config(p, {"web": {"backend": "b"}, "gone": {"backend": "b"}},
                 {"b": {"server": "new %s" % new.addr}})
    reload(p, r"info: reloaded ")
    p.finish()


def test_restart_keys(ctx):
    be = ctx.backend(H.echo())
    p = ctx.proxy(glob={"splice": ctx.mode, "workers": 2},
                  listeners={"web": {"backend": "a"}},
                  backends={"a": {"server": "one %s" % be.addr}})
    p.allow(r"^reload: \[global\] workers changed \(2 -> 3\)")
    p.start()
    write_config(p, {"web": {"backend": "a", "max_connections": 7}},
                 {"a": {"server": "two %s" % be.addr}}, glob={"workers": 3})
    mark = p.mark()
    p.signal(H.signal.SIGHUP)
    H.check(p.wait_line(r"warn: reload: \[global\] workers changed \(2 -> 3\): it takes "
                        r"effect at the next restart; keeping 2", 10, since=mark),
            "the workers change", "named as needing a restart", "no line")
    H.check(p.wait_line(r"info: reloaded ", 10, since=mark), "the rest",
            "reloaded", "no line")
    time.sleep(0.1)
    H.check_eq(probe_servers(p, p.port("web"), 2, 9), {"two"},
               "servers after the reload")
    threads = [t for t in os.listdir("/proc/%d/task" % p.pid)
               if open("/proc/%d/task/%s/comm" % (p.pid, t)).read().startswith("spliced-w")]
    H.check_eq(len(threads), 2, "worker threads after the reload")
    p.finish()


def test_bind_error(ctx):
    be = ctx.backend(H.echo())
    p = ctx.proxy(glob={"splice": ctx.mode},
                  listeners={"web": {"backend": "a"}},
                  backends={"a": {"server": "one %s" % be.addr}})
    p.allow(r"^reload failed: ")
    p.start()
    taken = socket.socket()
    taken.bind((H.LOCAL, 0))
    taken.listen(1)
    ctx.register(taken)
    port = taken.getsockname()[1]
    p.ports["more"] = [port]
    write_config(p, {"web": {"backend": "a"}, "more": {"backend": "a"}},
                 {"a": {"server": "two %s" % be.addr}})
    lines = open(p.config_path).read().split("\n")
    line = 1 + next(i for i, l in enumerate(lines) if l == "bind = %s:%d" % (H.LOCAL, port))
    reload(p, r"error: reload failed: %s:%d: \[listener more\] bind: cannot bind "
           r"%s:%d: Address already in use; carrying on unchanged"
           % (H.re.escape(p.config_path), line, H.re.escape(H.LOCAL), port))
    time.sleep(0.1)
    H.check_eq(probe_servers(p, p.port("web"), 2, 3), {"one"},
               "servers after the failed reload")
    taken.close()
    p.finish()


if __name__ == "__main__":
    H.main([test_under_load, test_snapshot, test_restart_keys, test_bind_error],
           deadline=540, doc=__doc__)
