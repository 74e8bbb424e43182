"""Python + uvloop sender: a uvloop server (asyncio.Protocol) accepts N connections, then per round
`for t in transports: t.write(frame)` (one shared bytes object), timed with time.perf_counter.
Variants (comma separated, tokens joined with '+'), interleaved round by round:
  uv      : transport.write(frame)          (uvloop default: TCP_NODELAY on)
  oswrite : os.write(fd, frame) on the same sockets (Python loop + raw syscall, bypassing uvloop)
  cwrite  : one ctypes call into libsendall.so: a C loop of write(fd, frame) on the same sockets
            (the kernel floor measured inside this very process, interleaved with the uvloop rounds)
  nagle   : TCP_NODELAY off for that round   busy | defer : receiver mode (see drain.c)
  rps     : RPS on lo -> cpu1 for that round (only under netns.sh; see sender.c)
usage: pysend.py PORT N CTLFILE VARIANTS [rounds_per_variant=20] [rate=5] [size=650]"""

import asyncio
import gc
import mmap
import os
import resource
import signal
import socket
import struct
import sys
import time

import uvloop

port, n, ctlpath, spec = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 20
rate = float(sys.argv[6]) if len(sys.argv) > 6 else 5.0
size = int(sys.argv[7]) if len(sys.argv) > 7 else 650
signal.alarm(120)
MODE, INROUND, STOP, READY, ACCEPTED = range(5)
RX = {"block": 0, "busy": 1, "defer": 2}
cfd = os.open(ctlpath, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
os.ftruncate(cfd, 4096)
ctl = mmap.mmap(cfd, 4096)


def setc(i, v):
    struct.pack_into("i", ctl, 4 * i, v)


def getc(i):
    return struct.unpack_from("i", ctl, 4 * i)[0]


variants = []
for s in spec.split(","):
    v = {
        "name": s,
        "method": "uv",
        "nodelay": 1,
        "rx": 0,
        "rps": 0,
        "wall": [],
        "cpu": [],
        "errs": 0,
        "ut": 0.0,
        "st": 0.0,
    }
    for tok in s.split("+"):
        if tok in ("uv", "oswrite", "cwrite"):
            v["method"] = tok
        elif tok == "nagle":
            v["nodelay"] = 0
        elif tok == "nodelay":
            v["nodelay"] = 1
        elif tok in RX:
            v["rx"] = RX[tok]
        elif tok == "rps":
            if not os.environ.get("RPS_PATH"):
                sys.exit("rps needs RPS_PATH (run under netns.sh)")
            v["rps"] = 1
        else:
            sys.exit("bad token " + tok)
    variants.append(v)

transports = []


class P(asyncio.Protocol):
    def connection_made(self, t):
        transports.append(t)
        setc(ACCEPTED, len(transports))
        if len(transports) == n and not allin.done():
            allin.set_result(None)

    def data_received(self, d):
        pass

    def connection_lost(self, e):
        pass


def pct(v, p):
    v = sorted(v)
    k = len(v)
    if p == 50:
        return v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2
    return v[min(k - 1, max(0, -(-int(p * k) // 100) - 1))]


async def main():
    global allin
    loop = asyncio.get_running_loop()
    allin = loop.create_future()
    srv = await loop.create_server(P, "127.0.0.1", port, backlog=65535, reuse_address=True)
    await allin
    while not getc(READY):
        await asyncio.sleep(0.001)
    socks = [t.get_extra_info("socket") for t in transports]
    fds = [s.fileno() for s in socks]
    frame = b"x" * size
    import array
    import ctypes

    lib = ctypes.CDLL(os.path.join(os.path.dirname(os.path.abspath(__file__)), "libsendall.so"))
    lib.write_all.restype = ctypes.c_long
    lib.write_all.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    fdarr = array.array("i", fds)
    fdptr = fdarr.buffer_info()[0]
    write = os.write
    cur_nodelay = 1
    cur_rps = -1
    rps_path = os.environ.get("RPS_PATH")
    period = 1.0 / rate
    warm = 3
    nv = len(variants)
    t0 = time.monotonic() + 0.05
    gc.collect()
    gc.disable()  # no GC pauses inside timed loops (the loops allocate nothing anyway)
    for r in range(-warm, rounds * nv):
        v = variants[(r + warm * nv) % nv]
        if v["nodelay"] != cur_nodelay:
            for s in socks:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, v["nodelay"])
            cur_nodelay = v["nodelay"]
        if rps_path and v["rps"] != cur_rps:
            with open(rps_path, "w") as f:
                f.write("2" if v["rps"] else "0")
            cur_rps = v["rps"]
        setc(MODE, v["rx"])
        tick = t0 + (r + warm) * period
        now = time.monotonic()
        if tick < now + 0.015:
            tick = now + 0.015
            t0 = tick - (r + warm) * period
        await asyncio.sleep(tick - time.monotonic())
        ru0 = resource.getrusage(resource.RUSAGE_THREAD)
        setc(INROUND, 1)
        c0 = time.thread_time()
        w0 = time.perf_counter()
        if v["method"] == "uv":
            for t in transports:
                t.write(frame)
        elif v["method"] == "oswrite":
            for fd in fds:
                write(fd, frame)
        else:
            cerrs = lib.write_all(fdptr, n, frame, size)
        w1 = time.perf_counter()
        c1 = time.thread_time()
        setc(INROUND, 0)
        ru1 = resource.getrusage(resource.RUSAGE_THREAD)
        if r < 0:
            continue
        v["ut"] += ru1.ru_utime - ru0.ru_utime
        v["st"] += ru1.ru_stime - ru0.ru_stime
        v["wall"].append(w1 - w0)
        v["cpu"].append(c1 - c0)
        if v["method"] == "uv":
            v["errs"] += sum(1 for t in transports if t.get_write_buffer_size())
        elif v["method"] == "cwrite":
            v["errs"] += cerrs
    setc(STOP, 1)
    print(
        f"{'variant':28s} {'conns':>6s} {'us/send':>9s} {'round_ms':>9s} {'p90_ms':>9s} {'min_ms':>9s} {'cpu_ms':>9s} {'cpu/wall':>8s} {'sys%':>6s} {'buffered':>8s}"
    )
    for v in variants:
        w, c = v["wall"], v["cpu"]
        print(
            f"{'py:' + v['name']:28s} {n:6d} {pct(w, 50) * 1e6 / n:9.2f} {pct(w, 50) * 1e3:9.2f} {pct(w, 90) * 1e3:9.2f} {min(w) * 1e3:9.2f} "
            f"{pct(c, 50) * 1e3:9.2f} {100 * sum(c) / sum(w):7.0f}% {100 * v['st'] / max(1e-9, v['ut'] + v['st']):5.0f}% {v['errs']:8d}",
            flush=True,
        )
    await asyncio.sleep(0.1)
    for t in transports:
        t.abort()
    srv.close()
    os.unlink(ctlpath)


uvloop.run(main()) if hasattr(uvloop, "run") else (uvloop.install(), asyncio.run(main()))
