"""TLS pieces of the spliced integration tests (it_sni): certificates made
with `openssl req`, TLS backends (Python ssl) and plain ones that report
the bytes they got, ClientHellos built by hand, and clients that send a
hello split, re-framed or dribbled (a MemoryBIO TLS client). Standard
library only; 127.0.0.1 only."""

import hashlib
import os
import random
import shutil
import socket
import ssl
import struct
import subprocess
import time

import harness as H


# --------------------------------------------------------------------------
# certificates: one self-signed EC certificate per TLS backend

# A wildcard covers one label: y.x.b.example needs its own name in tb's.
CERTS = {"ta": ["a.example"], "tb": ["*.b.example", "y.x.b.example"],
         "td": ["default.example", "unknown.example", "b.example"]}


def openssl_bin():
    p = shutil.which("openssl")
    if p is None:
        if os.environ.get("CI") == "true":
            H.fail("openssl", "on PATH (tools/setup)", "not found")
        raise H.Skip("no openssl binary: it makes the certificates and is a client")
    return p


def certs(ctx):
    """{name: (certfile, keyfile)} and the CA file (all certificates),
    made once per run in the run's temp dir."""
    if getattr(ctx, "sni_certs", None):
        return ctx.sni_certs
    d = os.path.join(ctx.tmp, "certs")
    os.makedirs(d, exist_ok=True)
    out = {}
    for who, names in CERTS.items():
        crt, key = os.path.join(d, who + ".pem"), os.path.join(d, who + ".key")
        r = subprocess.run([openssl_bin(), "req", "-x509", "-newkey", "ec",
                            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                            "-subj", "/CN=" + names[0].replace("*", "star"),
                            "-addext", "subjectAltName=" + ",".join("DNS:" + n for n in names),
                            "-days", "2", "-keyout", key, "-out", crt],
                           capture_output=True, timeout=60)
        H.check_eq(r.returncode, 0, "openssl req for %s (%s)" % (who, r.stderr.decode(
            errors="replace").strip()[-300:]))
        out[who] = (crt, key)
    ca = os.path.join(d, "ca.pem")
    with open(ca, "w") as f:
        for who in CERTS:
            with open(out[who][0]) as g:
                f.write(g.read())
    ctx.sni_certs = (out, ca)
    return ctx.sni_certs


def client_ctx(ctx, sni=True, alpn=None):
    """A client context trusting the test's certificates only; with sni,
    it also checks the host name (without, the hello carries no SNI)."""
    _, ca = certs(ctx)
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.load_verify_locations(cafile=ca)
    c.check_hostname = sni
    c.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        c.set_alpn_protocols(alpn)
    return c


# Thirty ALPN entries of 65 bytes push OpenSSL's own hello past 2 KB.
LONG_ALPN = ["p%02d-" % i + "z" * 60 for i in range(30)]


# --------------------------------------------------------------------------
# backends

def recv_line(read1, limit=512):
    """A line through read1(n) (a socket's or an SSL object's recv)."""
    out = b""
    while not out.endswith(b"\n") and len(out) < limit:
        b = read1(1)
        if not b:
            break
        out += b
    return out


def tls_handler(who, sctx):
    """A TLS backend: handshake, then 'WHO sni=NAME\\n' (the server_name it
    saw, or -), then one request line: 'down SIZE SEED' (sends stream SEED
    of SIZE bytes), 'hold' (waits for EOF) or anything else (closes)."""
    def h(conn, be, idx):
        res = {"who": who}
        tls = sctx.wrap_socket(conn, server_side=True)
        try:
            res["sni"] = getattr(tls, "sni_seen", None)
            tls.sendall(("%s sni=%s\n" % (who, res["sni"] or "-")).encode())
            line = recv_line(tls.recv).decode(errors="replace").split()
            res["cmd"] = line
            if line[:1] == ["down"]:
                size, seed = int(line[1]), int(line[2])
                h_ = hashlib.sha256()
                for c in H.stream_chunks(seed, size):
                    h_.update(c)
                    tls.sendall(c)
                res["sha"] = h_.hexdigest()
            elif line[:1] == ["hold"]:
                res["held"] = H.read_stream(tls).end
            tls_end(tls)
        finally:
            tls.close()
        return res
    return h


def tls_end(tls):
    """Send close_notify without waiting for the peer's (s_client wants one
    to exit 0; the test's own clients know where the data ends)."""
    try:
        tls.setblocking(False)
        tls.unwrap()
    except (ssl.SSLError, OSError):
        pass


def tls_backend(ctx, who):
    crt, key = certs(ctx)[0][who]
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)

    def on_sni(sslsock, name, c):
        sslsock.sni_seen = name
        return None
    sctx.sni_callback = on_sni
    return ctx.backend(tls_handler(who, sctx), name=who)


def reporter(who, pp=False):
    """A plain TCP backend: (with pp, read a PROXY header first) send
    'WHO\\n', read to EOF, answer 'N SHA256\\n' of what came, close.
    Result: who, data (what came, after any header), end, pp."""
    def h(conn, be, idx):
        res = {"who": who}
        if pp:
            try:
                res["pp"] = H.pp_read(conn)
            except (ValueError, EOFError, OSError) as e:
                res["pp_error"] = repr(e)
                return res
        conn.sendall(who.encode() + b"\n")
        data = bytearray()
        end = None
        deadline = time.monotonic() + H.IO_TIMEOUT
        while end is None and time.monotonic() < deadline and len(data) < H.MiB:
            try:
                b = conn.recv(65536)
            except ConnectionResetError:
                end = "reset"
                break
            except socket.timeout:
                end = "timeout"
                break
            if not b:
                end = "eof"
                break
            data += b
        res["data"], res["end"] = bytes(data), end
        if end == "eof":
            conn.sendall(b"%d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()))
        return res
    return h


def expected_report(who, sent):
    return b"%s\n%d %s\n" % (who.encode(), len(sent), hashlib.sha256(sent).hexdigest().encode())


# --------------------------------------------------------------------------
# ClientHellos built here (RFC 8446 §4.1.2; Chrome-like: GREASE values, an
# X25519MLKEM768 key share), server_name last so that a router must take
# the whole hello before it knows the name.

def _ext(t, body):
    return struct.pack(">HH", t, len(body)) + body


def _v8(b):
    return bytes([len(b)]) + b


def _v16(b):
    return struct.pack(">H", len(b)) + b


def hello_msg(name, size=None, pq=True, msgtype=1, seed=1):
    """A ClientHello handshake message (no record header) asking for name
    (None: no server_name). size: pad it to exactly this many bytes.
    pq: an X25519MLKEM768 key share (0x11ec, 1,216 bytes) beside X25519.
    msgtype: the handshake type (2 makes it invalid as a client's first)."""
    r = random.Random(seed)
    rnd, sid = r.randbytes(32), r.randbytes(32)
    ciphers = [0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030,
               0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035]
    groups = [0x2a2a] + ([0x11ec] if pq else []) + [0x001d, 0x0017, 0x0018]
    shares = struct.pack(">HH", 0x2a2a, 1) + b"\0"
    if pq:
        shares += struct.pack(">HH", 0x11ec, 1216) + r.randbytes(1216)
    shares += struct.pack(">HH", 0x001d, 32) + r.randbytes(32)
    alpn = [b"h2", b"http/1.1"] + [b"x-proto-%02d" % i for i in range(20)]
    exts = [_ext(0x0a0a, b""), _ext(0x0017, b""), _ext(0xff01, b"\0"),
            _ext(0x000a, _v16(struct.pack(">%dH" % len(groups), *groups))),
            _ext(0x000b, _v8(b"\0")), _ext(0x0023, b""),
            _ext(0x0010, _v16(b"".join(_v8(p) for p in alpn))),
            _ext(0x0005, b"\1\0\0\0\0"),
            _ext(0x000d, _v16(struct.pack(">8H", 0x0403, 0x0804, 0x0401, 0x0503,
                                          0x0805, 0x0501, 0x0806, 0x0601))),
            _ext(0x0033, _v16(shares)), _ext(0x002d, _v8(b"\1")),
            _ext(0x002b, _v8(struct.pack(">3H", 0x3a3a, 0x0304, 0x0303))),
            _ext(0x001b, _v8(b"\0\2"))]
    sni = _ext(0x0000, _v16(b"\0" + _v16(name.encode()))) if name else b""

    def body(pad):
        e = b"".join(exts) + (_ext(0x0015, bytes(pad)) if pad is not None else b"") + sni
        return (struct.pack(">H", 0x0303) + rnd + _v8(sid) +
                _v16(struct.pack(">%dH" % len(ciphers), *ciphers)) + _v8(b"\0") + _v16(e))
    b = body(None)
    if size is not None:
        pad = size - 4 - len(b) - 4
        assert pad >= 0, "hello of %d bytes cannot be padded to %d" % (len(b) + 4, size)
        b = body(pad)
    return bytes([msgtype]) + len(b).to_bytes(3, "big") + b


def records(msg, cuts=()):
    """msg framed as TLS handshake records, one per piece between cuts."""
    out, prev = b"", 0
    for c in list(cuts) + [len(msg)]:
        out += b"\x16\x03\x01" + struct.pack(">H", c - prev) + msg[prev:c]
        prev = c
    return out


def hello(name, **kw):
    return records(hello_msg(name, **kw))


def split_at(data, cuts):
    out, prev = [], 0
    for c in sorted(set(cuts)) + [len(data)]:
        if c > prev:
            out.append(data[prev:c])
            prev = c
    return out


def openssl_sees(ctx, data):
    """The server_name OpenSSL reads from these records, and whether it
    answers with a ServerHello: proof that a hello built here is valid."""
    crt, key = certs(ctx)[0]["tb"]
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(crt, key)
    seen = {}
    sctx.sni_callback = lambda s, n, c: seen.update(name=n) or None
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = sctx.wrap_bio(inc, out, server_side=True)
    inc.write(data)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    flight = out.read()
    return seen.get("name"), flight[:1] == b"\x16" and flight[5:6] == b"\x02"


# --------------------------------------------------------------------------
# clients

def dial(port, src=None):
    c = H.dial_from(src or H.LOCAL, port, nodelay=True)
    return c


def send_pieces(c, pieces, gap):
    """Each piece in its own send, gap seconds apart (the pace under test)."""
    for i, p in enumerate(pieces):
        if i and gap:
            time.sleep(gap)
        c.sendall(p)


def read_all(c, deadline=20.0):
    """Everything until EOF: (bytes, 'eof'|'reset'|'timeout')."""
    out = b""
    end_t = time.monotonic() + deadline
    c.settimeout(deadline)
    while time.monotonic() < end_t:
        try:
            b = c.recv(65536)
        except ConnectionResetError:
            return out, "reset"
        except socket.timeout:
            return out, "timeout"
        if not b:
            return out, "eof"
        out += b
    return out, "timeout"


def raw_trip(port, pieces, gap=0.0, src=None, first=b""):
    """Connect, send `first` then the pieces (gap apart), shut down writing,
    read to EOF. Returns (what came back, how it ended, client port)."""
    c = dial(port, src)
    cport = H.local_port(c)
    try:
        if first:
            c.sendall(first)
        send_pieces(c, pieces, gap)
        c.shutdown(socket.SHUT_WR)
    except (ConnectionResetError, BrokenPipeError):
        c.close()
        return b"", "reset while sending", cport
    got, end = read_all(c)
    c.close()
    return got, end, cport


def routed_raw(port, who, pieces, what, gap=0.0, src=None, first=b"", be=None, expect=None):
    """The pieces reach backend `who` byte-exact (its greeting, then its
    count and sha256 of what it got, then EOF); expect: what it must get
    when that is not the pieces (a PROXY header taken off). Returns the
    client port."""
    sent = b"".join(pieces) if expect is None else expect
    got, end, cport = raw_trip(port, pieces, gap, src, first)
    if (got, end) != (expected_report(who, sent), "eof") and be is not None:
        r = [x for x in be.results if "data" in x][-1:]
        if r:
            d = r[0]["data"]
            k = next((i for i in range(min(len(d), len(sent))) if d[i] != sent[i]),
                     min(len(d), len(sent)))
            H.log("%s: backend %s got %d bytes (sent %d), first difference at %d"
                  % (what, who, len(d), len(sent), k))
    H.check_eq((got, end), (expected_report(who, sent), "eof"),
               what + ": (reply, end): greeting of %s, then its count and sha256 of the "
               "%d bytes sent" % (who, len(sent)))
    return cport


def expect_reset(port, data, what, within, at_least=0.0, bes=()):
    """Send data (not shutting down), then an RST arrives between at_least
    and within seconds; no backend of bes accepted a connection."""
    before = [be.accepted for be in bes]
    c = dial(port)
    t0 = time.monotonic()
    try:
        c.sendall(data)
    except (ConnectionResetError, BrokenPipeError):
        end, _ = "reset", 0
    else:
        end, _ = H.expect_closed(c, within + 5)
    t = time.monotonic() - t0
    c.close()
    H.check(end == "reset" and at_least <= t <= within, what,
            "an RST after %.1f..%.1f s" % (at_least, within), "%s after %.2f s" % (end, t))
    H.check_eq([be.accepted for be in bes], before, what + ": connections the backends "
               "accepted meanwhile")
    return t


def tls_trip(ctx, port, name, who, what, cctx=None):
    """A Python ssl client for name (None: no SNI) through port: the
    handshake verifies, the greeting names `who` and the server_name it
    saw; 'bye' ends it. Returns the client port."""
    cctx = cctx or client_ctx(ctx, sni=name is not None)
    c = dial(port)
    cport = H.local_port(c)
    try:
        t = cctx.wrap_socket(c, server_hostname=name)
    except (ssl.SSLError, OSError) as e:
        c.close()
        H.fail(what + ": TLS handshake through the proxy", "completes (verified)", repr(e))
    greet = recv_line(t.recv)
    H.check_eq(greet, ("%s sni=%s\n" % (who, (name or "-"))).encode(),
               what + ": the backend's greeting (who, the server_name it saw)")
    t.sendall(b"bye\n")
    rest, end = read_all(t)
    t.close()
    H.check_eq((rest, end), (b"", "eof"), what + ": after 'bye', the backend's close")
    return cport


class BioTLS:
    """A TLS client over a plain socket through MemoryBIOs, so that the test
    decides how its first flight (the ClientHello) goes on the wire, and
    counts the raw bytes each way."""

    def __init__(self, sock, cctx, name):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = cctx.wrap_bio(self.inc, self.out, server_hostname=name)
        self.up = self.down = 0
        self.eof = False

    def first_flight(self):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.out.read()

    def sent(self, n):
        self.up += n

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)
            self.up += len(data)

    def _fill(self):
        b = self.sock.recv(256 * H.KiB)
        if not b:
            if not self.eof:
                self.eof = True
                self.inc.write_eof()
            return 0
        self.down += len(b)
        self.inc.write(b)
        return len(b)

    def _until(self, op, deadline):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                r = op()
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        raise TimeoutError("TLS operation not done in %.0f s" % deadline)

    def handshake(self, deadline=30.0):
        self._until(self.obj.do_handshake, deadline)

    def read(self, n, deadline=30.0):
        return self._until(lambda: self.obj.read(n), deadline)

    def write(self, data):
        self.obj.write(data)
        self._flush()

    def drain_raw(self, deadline=20.0):
        """Read raw bytes until EOF (counted); 'eof' or what ended it."""
        end = time.monotonic() + deadline
        self.sock.settimeout(deadline)
        while time.monotonic() < end:
            try:
                if self._fill() == 0:
                    return "eof"
            except ConnectionResetError:
                return "reset"
            except socket.timeout:
                return "timeout"
        return "timeout"


def bio_trip(ctx, port, name, who, what, send, cctx=None):
    """A TLS handshake through port whose ClientHello goes out by
    send(sock, hello_bytes) (split, re-framed, dribbled); then the
    greeting of `who` naming `name`. Returns the client port."""
    c = dial(port)
    cport = H.local_port(c)
    t = BioTLS(c, cctx or client_ctx(ctx, alpn=LONG_ALPN), name)
    ch = t.first_flight()
    try:
        t.sent(send(c, ch))
        t.handshake()
        greet = recv_line(t.read)
    except (ssl.SSLError, OSError, TimeoutError) as e:
        c.close()
        H.fail(what + ": TLS handshake through the proxy", "completes (verified)", repr(e))
    H.check_eq(greet, ("%s sni=%s\n" % (who, name)).encode(),
               what + ": the backend's greeting (who, the server_name it saw)")
    t.write(b"bye\n")
    end = t.drain_raw()
    c.close()
    H.check_eq(end, "eof", what + ": after 'bye', the backend's close")
    return cport
