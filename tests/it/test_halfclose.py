#!/usr/bin/env python3
"""Half-close is forwarded, and the other direction keeps flowing afterwards.

client first: the client sends A and shuts down writing; the backend reads A
  to EOF and only then sends B, in bursts with pauses, and closes. The client
  gets all of B (sha256), then a clean EOF. reason=client_eof.
backend first: the backend sends B and shuts down writing, then reads A to
  EOF; the client reads B to EOF and only then sends A, in bursts with
  pauses, and shuts down writing. The backend gets all of A. reason=server_eof.

Each runs with a small exchange (1 KiB each way, the copy path in auto) and a
bulk one (8 MiB each way, the splice path in auto and always)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CASES = [(1 * H.KiB, 1 * H.KiB), (8 * H.MiB, 8 * H.MiB)]
PAUSE = (2 * H.MiB, 0.2)     # send in 2 MiB bursts, 0.2 s apart


def backend_reads_then_sends(size_b, seed_b):
    def h(conn, be, idx):
        res = {}
        r = H.read_stream(conn)
        res.update(a_sha=r.sha, a_n=r.n, a_end=r.end)
        try:
            res["b_sha"] = H.send_stream(conn, seed_b, size_b, pause=PAUSE)
            res["b_ok"] = True
        except OSError as e:
            res["b_ok"] = False
            res["b_error"] = repr(e)
        return res
    return h


def backend_sends_then_reads(size_b, seed_b):
    def h(conn, be, idx):
        res = {}
        try:
            res["b_sha"] = H.send_stream(conn, seed_b, size_b)
            res["b_ok"] = True
            conn.shutdown(H.socket.SHUT_WR)
        except OSError as e:
            res["b_ok"] = False
            res["b_error"] = repr(e)
        r = H.read_stream(conn)
        res.update(a_sha=r.sha, a_n=r.n, a_end=r.end)
        return res
    return h


def start(ctx, be):
    return ctx.proxy(glob={"splice": ctx.mode},
                     listeners={"web": {"backend": "app"}},
                     backends={"app": {"server": "a " + be.addr}}).start()


def test_client_half_close_first(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = start(ctx, be)
    for i, (size_a, size_b) in enumerate(CASES):
        what = "client half-closes first (%s up, then %s down)" % (
            H.human(size_a), H.human(size_b))
        be.expect(backend_reads_then_sends(size_b, 20 + i))
        mark = p.mark()
        c = H.dial(p.port())
        cport = H.local_port(c)
        sha_a = H.send_stream(c, 10 + i, size_a)
        c.shutdown(H.socket.SHUT_WR)
        got = H.read_stream(c)
        c.close()
        r = be.result(i)
        H.check_eq((r.get("a_end"), r.get("a_n")), ("eof", size_a),
                   what + ": the backend saw all of A, then EOF (end, bytes)")
        H.check_eq(r.get("a_sha"), sha_a, what + ": sha256 of A at the backend vs sent")
        H.check(r.get("b_ok"), what + ": the backend could send B after the client's EOF",
                "sent", r)
        H.check_eq((got.end, got.n), ("eof", size_b),
                   what + ": the client got all of B, then EOF (end, bytes)")
        H.check_eq(got.sha, r.get("b_sha"), what + ": sha256 of B at the client vs sent")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=size_a, down=size_b, reason="client_eof", what=what)
        H.log("%s ok" % what)
    p.finish()


def test_backend_half_close_first(ctx):
    be = ctx.backend(H.closer(), name="app")
    p = start(ctx, be)
    for i, (size_a, size_b) in enumerate(CASES):
        what = "backend half-closes first (%s down, then %s up)" % (
            H.human(size_b), H.human(size_a))
        be.expect(backend_sends_then_reads(size_b, 40 + i))
        mark = p.mark()
        c = H.dial(p.port())
        cport = H.local_port(c)
        got = H.read_stream(c)
        H.check_eq((got.end, got.n), ("eof", size_b),
                   what + ": the client got all of B, then EOF (end, bytes)")
        sha_a = H.send_stream(c, 30 + i, size_a, pause=PAUSE)
        c.shutdown(H.socket.SHUT_WR)
        r = be.result(i)
        tail = H.read_stream(c)
        c.close()
        H.check(r.get("b_ok"), what + ": the backend sent B", "sent", r)
        H.check_eq(got.sha, r.get("b_sha"), what + ": sha256 of B at the client vs sent")
        H.check_eq((r.get("a_end"), r.get("a_n")), ("eof", size_a),
                   what + ": the backend got all of A after its own EOF, then EOF")
        H.check_eq(r.get("a_sha"), sha_a, what + ": sha256 of A at the backend vs sent")
        H.check_eq((tail.end, tail.n), ("eof", 0),
                   what + ": nothing more at the client, and no reset")
        a = p.access_for(cport, since=mark)
        H.check_access(a, up=size_a, down=size_b, reason="server_eof", what=what)
        H.log("%s ok" % what)
    p.finish()


if __name__ == "__main__":
    H.main([test_client_half_close_first, test_backend_half_close_first],
           deadline=240, doc=__doc__)
