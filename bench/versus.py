#!/usr/bin/env python3
"""dipc against Redis, memcached and the trivial ceiling servers, in one run.

`make bench` runs this after building the release binaries. It installs
redis-server and memcached from Debian's packages when they are missing,
starts every server on a free loopback port (Redis and memcached without
persistence, besides one Redis with its AOF for the key-value changes; dipc
with its database file, as it always runs), drives each
with the same load generator (`./client bench`), the servers taking turns
cell by cell so that the runs a ratio compares lie seconds apart, stops
everything it started, and writes docs/benchmarks.md: the machine, a table per workload
with medians of the runs and the paired ratios dipc / Redis and dipc / ceiling (the
mailboxes' r and w, and the key-value store's get and put/del beside Redis's
GET and SET/DEL, the latter also with Redis's AOF on), the cost of growth (event model at 10, 100 and 1,000 connections) and the
segment's size against its geometry.

    python3 bench/versus.py            # full: 5 paired rounds of 1.5 s runs, 2 of them for every row (~13 min)
    python3 bench/versus.py --quick    # 1 run of 1 s per cell (~3.5 min)
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "client")
DIPC = os.path.join(ROOT, "dipc")
DIPCRM = os.path.join(ROOT, "dipcrm")
DOC = os.path.join(ROOT, "docs", "benchmarks.md")

VALUE = 100
MAILBOXES = 8
# (label, connections, pipeline depth)
LOADS = [("1 conn", 1, 1), ("8 conns", 8, 1), ("50 conns", 50, 1), ("50 conns, 16 pipelined", 50, 16)]
# (row label, dipc options): the event model with its default pool (one
# worker per CPU) and with one worker, the same process count as Redis and
# memcached -t 1, then the classic models.
DIPC_CONFIGS = [
    ("dipc event, 1 worker", ["--model", "event", "--workers", "1"]),
    ("dipc event", ["--model", "event"]),
    ("dipc prefork", ["--model", "prefork"]),
    ("dipc thread", ["--model", "thread"]),
    ("dipc fork", ["--model", "fork"]),
]
# The row the ratios are taken of.
DIPC_REFERENCE = "dipc event, 1 worker"
# What it is compared with in each table: Redis's row and the ceiling's.
COMPARED = {"read": ("Redis GET", "ceiling, epoll"),
            "write": ("Redis SET", "ceiling, epoll"),
            "get": ("Redis GET", "ceiling, epoll"),
            "churn": ("Redis SET/DEL, AOF everysec",)}
# The configurations that also run the key-value workloads.
DIPC_KV_CONFIGS = ("dipc event, 1 worker", "dipc event")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc=None, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def ensure_installed(program, package):
    """The program's path, installing its Debian package if need be."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path:
        return path
    print(f"versus: installing {package} from Debian's packages", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(sudo + cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            print(f"versus: could not install {package}; its rows are left out", file=sys.stderr)
            return None
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")


@contextmanager
def process(args, port):
    """A foreground server, killed and reaped on the way out."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Room for the keys a churn run that stops between a put and its del leaves
# behind.
BENCH_KEYS = 8192


@contextmanager
def dipc_daemon(options, port, workdir, mailboxes=MAILBOXES, kib=8, keys=BENCH_KEYS):
    args = [DIPC, str(mailboxes), str(kib), str(port), "2", *options,
            "--log", os.path.join(workdir, f"dipc-{port}.log"),
            "--pid-file", os.path.join(workdir, f"dipc-{port}.pid"),
            "--db", os.path.join(workdir, f"database-{port}.txt"),
            "--keys", str(keys)]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        stopped = subprocess.run([DIPCRM, str(port)], capture_output=True, text=True)
        if stopped.returncode != 0:
            print(f"versus: dipcrm {port} failed: {stopped.stderr.strip()}", file=sys.stderr)


def bench(port, protocol, op, conns, depth, seconds, spread=MAILBOXES):
    args = [CLIENT, "bench", "--server", f"127.0.0.1:{port}", "--protocol", protocol,
            "--connections", str(conns), "--pipeline", str(depth), "--mix", op,
            "--value-size", str(VALUE), "--spread", str(spread),
            "--duration", str(seconds), "--json", "--no-progress"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds * 10 + 60)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} vCPU ({cpu}){mem}, Linux {platform.release()}"


def version_of(args):
    try:
        return subprocess.run(args, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def rss_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def workers_of(supervisor_pid):
    try:
        with open(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def fmt_rps(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f}M/s"
    return f"{x / 1e3:.0f}k/s" if x >= 1e4 else f"{x / 1e3:.1f}k/s"


def start_servers(servers, workdir, redis, memcached):
    """Starts every server at once, each entered into `servers` (stopped on
    the way out); returns the plan: (workload, row label, port, protocol,
    op) in table order."""
    plan = []
    for label, options in DIPC_CONFIGS:
        port = free_port()
        servers.enter_context(dipc_daemon(options, port, workdir))
        wait_for_port(port)
        workloads = ["read", "write"]
        if label in DIPC_KV_CONFIGS:
            workloads += ["get", "churn"]
        plan += [(w, label, port, "dipc", w) for w in workloads]
    if redis:
        port = free_port()
        servers.enter_context(process([redis, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], port))
        # GET twice: beside dipc's reads, and beside its key-value gets in
        # the same turns.
        plan += [("read", "Redis GET", port, "redis", "read"),
                 ("write", "Redis SET", port, "redis", "write"),
                 ("get", "Redis GET", port, "redis", "read"),
                 ("churn", "Redis SET/DEL", port, "redis", "churn")]
        # Durable like dipc's database.txt: every change appended to a file,
        # flushed once a second (both daemons' default).
        port = free_port()
        servers.enter_context(process([redis, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "yes",
                                       "--appendfsync", "everysec", "--dir", workdir], port))
        plan.append(("churn", "Redis SET/DEL, AOF everysec", port, "redis", "churn"))
    if memcached:
        port = free_port()
        # memcached refuses to run as root without a user to switch to.
        as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
        servers.enter_context(process([memcached, "-p", str(port), "-l", "127.0.0.1", "-t", "1",
                                       "-U", "0", *as_user], port))
        plan += [("read", "memcached get (1 thread)", port, "memcached", "read"),
                 ("write", "memcached set (1 thread)", port, "memcached", "write")]
    for model in ("epoll", "prefork"):
        port = free_port()
        servers.enter_context(process([CLIENT, "ceiling", "--port", str(port),
                                       "--model", model], port))
        workloads = ("read", "write", "get") if model == "epoll" else ("read", "write")
        plan += [(w, f"ceiling, {model}", port, "fixed", w) for w in workloads]
    return plan


# A pause between starting the servers and the first run.
SETTLE_SECONDS = 2


def turn_order(servers, workload, round_no):
    """The order in which a cell's servers run in round `round_no`: the
    reference row between the rows it is compared with, those three in a
    row, and the others around them. The block and the others take turns
    at going first (none is always first after the round before's
    key-value changes, whose files are still being flushed), and the block
    turns round every other round, so neither neighbour always runs first.
    """
    block_labels = [COMPARED[workload][0], DIPC_REFERENCE, *COMPARED[workload][1:]]
    if round_no % 2 == 0:
        block_labels.reverse()
    block = [p for label in block_labels for p in servers if p[1] == label]
    others = [[p] for p in servers if p[1] not in block_labels]
    units = others + [block]
    turn = (round_no - 1) % len(units)
    return [p for unit in units[turn:] + units[:turn] for p in unit]


def compared_rows(workload):
    """The rows a ratio of `workload`'s table compares: the reference and
    the rows it is compared with."""
    return {DIPC_REFERENCE, *COMPARED[workload]}


def run_interleaved(plan, rounds, every_row_rounds, seconds):
    """Every cell of every server: each round goes through the cells, and
    each cell through the servers one after another (see `turn_order`), so
    that a slow spell of the shared machine falls on all of them, and the
    runs a ratio compares lie next to each other. The rows a ratio compares
    run in all `rounds`, the other rows (shown for context) in the first
    `every_row_rounds`: a pair's ratio moves by up to a fifth from one pair
    to the next on this VM, and a median of three such pairs fell on either
    side of 0.9 by chance. Returns
    the medians, results[(workload, server)][load label] = {"rps",
    "p99_us"}, and the ratios of the reference row to each row it is
    compared with, each the median over the rounds of the ratio of two
    runs next to each other: ratios[(workload, other)][load label] =
    {"rps", "p99_us"}."""
    samples = {}
    # The servers have just started (prefork pools are still forking).
    time.sleep(SETTLE_SECONDS)
    for round_no in range(1, rounds + 1):
        for workload in ("read", "write", "get", "churn"):
            servers = [p for p in plan if p[0] == workload]
            order = turn_order(servers, workload, round_no)
            if round_no > every_row_rounds:
                order = [p for p in order if p[1] in compared_rows(workload)]
            for label, conns, depth in LOADS:
                for _, server, port, protocol, op in order:
                    r = bench(port, protocol, op, conns, depth, seconds)
                    if r["errors"]:
                        # A server answering errors fast is no throughput
                        # worth a table.
                        raise RuntimeError(f"{server} {op}: {r['errors']} error replies")
                    samples.setdefault((workload, server), {}).setdefault(label, []).append(r)
                    print(f"versus: run {round_no}/{rounds} {workload:5} {server:28} {label:24} "
                          f"{fmt_rps(r['rps']):>9}  p99 {r['p99_us']:.0f} us", file=sys.stderr)
    results = {key: {label: {"rps": statistics.median(r["rps"] for r in rs),
                             "p99_us": statistics.median(r["p99_us"] for r in rs)}
                     for label, rs in cells.items()}
               for key, cells in samples.items()}
    ratios = {}
    for workload, compared in COMPARED.items():
        reference = samples.get((workload, DIPC_REFERENCE), {})
        for other in compared:
            cells = samples.get((workload, other), {})
            for label, rs in reference.items():
                theirs = cells.get(label)
                if not theirs:
                    continue
                # Round by round: each list holds one run per round.
                pairs = list(zip(rs, theirs, strict=True))
                ratios.setdefault((workload, other), {})[label] = {
                    key: statistics.median(mine[key] / max(other_run[key], 1)
                                           for mine, other_run in pairs)
                    for key in ("rps", "p99_us")}
    return results, ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 1 s per cell")
    parser.add_argument("--output", default=DOC)
    opts = parser.parse_args()
    # (rounds, rounds in which every row runs, seconds per run)
    rounds, every_row_rounds, seconds = (1, 1, 1.0) if opts.quick else (5, 2, 1.5)
    for binary in (CLIENT, DIPC, DIPCRM):
        if not os.access(binary, os.X_OK):
            sys.exit(f"versus: {binary} is missing: run `make` first")
    redis = ensure_installed("redis-server", "redis-server")
    memcached = ensure_installed("memcached", "memcached")
    started = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        with ExitStack() as servers:
            plan = start_servers(servers, workdir, redis, memcached)
            results, ratios = run_interleaved(plan, rounds, every_row_rounds, seconds)
        rows = {"read": [], "write": [], "get": [], "churn": []}
        for workload, server, *_ in plan:
            rows[workload].append(server)
        growth = measure_growth(workdir, seconds)
        segments = measure_segments(workdir)
    elapsed = time.time() - started
    write_doc(opts, results, ratios, rows, growth, segments, (rounds, every_row_rounds), seconds,
              elapsed, redis, memcached)
    print(f"versus: wrote {opts.output} in {elapsed:.0f} s", file=sys.stderr)


def measure_growth(workdir, seconds):
    """Event model at 10, 100 and 1,000 connections: throughput, p99 and the
    workers' own memory (private RSS: the segment is shared and counted once)."""
    rows = []
    port = free_port()
    with dipc_daemon(["--model", "event"], port, workdir):
        wait_for_port(port)
        with open(os.path.join(workdir, f"dipc-{port}.pid")) as f:
            supervisor = int(f.read().split()[0])
        workers = workers_of(supervisor)
        for conns in (10, 100, 1000):
            args = [CLIENT, "bench", "--server", f"127.0.0.1:{port}", "--connections", str(conns),
                    "--mix", "read", "--spread", str(MAILBOXES), "--duration", str(seconds),
                    "--json", "--no-progress"]
            with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as proc:
                try:
                    # After the connections, the prefill and the warm-up.
                    time.sleep(1.0 + seconds * 0.5)
                    anon = [rss_kib(w, "RssAnon") for w in workers]
                    out, _ = proc.communicate(timeout=seconds * 10 + 60)
                except BaseException:
                    proc.kill()
                    raise
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}")
            r = json.loads(out)
            rows.append((conns, r["rps"], r["p99_us"], max(anon) if anon else 0, len(workers)))
            print(f"versus: growth {conns:5} conns {fmt_rps(r['rps']):>9}, worker RssAnon "
                  f"{anon} KiB", file=sys.stderr)
    return rows


def measure_segments(workdir):
    """The segment's size against the mailbox count and size."""
    rows = []
    for mailboxes in (4, 64, 1024):
        for kib in (1, 8, 64):
            port = free_port()
            # Without the key-value store: the mailboxes' cost alone.
            with dipc_daemon(["--workers", "1"], port, workdir, mailboxes=mailboxes, kib=kib,
                             keys=0):
                size = os.stat(f"/dev/shm/dipc.{port}").st_size
            data = 2 * mailboxes * kib * 1024
            rows.append((mailboxes, kib, size, size - data))
    return rows


def write_doc(opts, results, ratios, rows, growth, segments, runs, seconds, elapsed, redis,
              memcached):
    rounds, every_row_rounds = runs
    lines = []
    out = lines.append
    out("# Benchmarks: dipc beside Redis, memcached and the ceiling")
    out("")
    out(f"Written by `make bench{'-quick' if opts.quick else ''}` "
        f"(`python3 bench/versus.py{' --quick' if opts.quick else ''}`) "
        f"on {datetime.date.today().isoformat()}, in {elapsed / 60:.1f} minutes.")
    out("")
    out(f"- Machine: {machine()}; loopback TCP; the load generator (`./client bench`, one epoll "
        "loop) runs on the same machine.")
    out(f"- Servers: dipc (`./dipc {MAILBOXES} 8 <port> 2 --model <m> --keys {BENCH_KEYS}`, "
        "default pool sizes); "
        f"{version_of([redis, '--version']) if redis else 'Redis: not installed'} "
        "(`--save '' --appendonly no`); "
        f"{version_of([memcached, '--version']) if memcached else 'memcached: not installed'} "
        "(`-t 1`); the ceiling servers (`./client ceiling`), which answer every line with "
        "100 fixed bytes and do no work at all.")
    out(f"- Workload: {VALUE}-byte values over {MAILBOXES} mailboxes (keys), prefilled; closed "
        "loop; pipelined runs send 16 requests in one write and wait for the 16 replies.")
    out(f"- Each cell: the median of {rounds} run(s) of {seconds:g} s after a 0.5 s warm-up "
        f"in the rows a ratio compares (dipc's reference row, Redis's and the ceiling's), "
        f"of {every_row_rounds} in the others. "
        "Every server is up from the start and they take turns cell by cell (each round goes "
        "through the cells, each cell through the servers, which take turns at going "
        "first), so that a slow spell of the shared machine falls on all of them; still, "
        "compare figures within one run: on a shared VM they vary by about 20% from run to run.")
    out("- The ratios are paired: in every round dipc's reference row runs right between "
        "Redis's row and the ceiling's, and each ratio is the median over the rounds of the "
        "ratio of two runs next to each other, so a ratio and the medians in its column can "
        "point different ways. This VM's speed jumps by up to a third from one second to the "
        "next (the ceiling alone, pipelined, runs anywhere from about 2.4M to 3.5M/s, whether "
        "or not pinned to CPUs), so two runs seconds apart compare better than two medians.")
    out("- The 1-connection column measures the scheduler more than the server: about 10k/s when "
        "the client and the server run on different vCPUs (two cross-CPU wake-ups per request, "
        "about 30 us each), about 100k/s when the scheduler happens to put them on the same one.")
    out("")
    out("In the key-value tables, `get` reads prefilled keys; the changes alternate a put of a "
        "new key and its del, each connection on keys of its own (`--mix churn`), so every "
        "request is a change that succeeds; every dipc change is appended to database.txt "
        "(`--fsync everysec`) before its OK, and Redis is shown without persistence and with "
        "its AOF (appendfsync everysec); the ratio is taken against the AOF row.")
    out("")
    out("dipc's rows are `r` (reads) or `w` (writes) of a mailbox; Redis's GET or SET; "
        "memcached's get or set; the ceiling answers any line (in the get table, dipc's get lines, beside which Redis GET also takes its turns). The ratios compare dipc's event "
        "model with one worker (one process, as Redis and `memcached -t 1`) with Redis and with "
        "the one-thread ceiling; `dipc event` is the default pool, one worker per CPU, which "
        "here shares the 2 vCPUs with the load generator.")
    out("")
    for workload, title in (
            ("read", "Read: dipc `r` against Redis GET"),
            ("write", "Write: dipc `w` against Redis SET"),
            ("get", "Key-value get: dipc `get` against Redis GET"),
            ("churn", "Key-value changes: dipc `put`/`del` against Redis SET/DEL")):
        out(f"## {title}")
        out("")
        out("Requests per second (p99 latency in µs).")
        out("")
        header = "| server | " + " | ".join(label for label, _, _ in LOADS) + " |"
        out(header)
        out("|---" * (len(LOADS) + 1) + "|")
        for server in rows[workload]:
            cells = results.get((workload, server), {})
            row = [f"{fmt_rps(cells[l]['rps'])} ({cells[l]['p99_us']:.0f})" if l in cells else "-"
                   for l, _, _ in LOADS]
            out(f"| {server} | " + " | ".join(row) + " |")
        redis_row, *ceiling_row = COMPARED[workload]
        versus_redis = ratios.get((workload, redis_row))
        versus_ceiling = ratios.get((workload, ceiling_row[0])) if ceiling_row else None
        if versus_redis:
            out("| **dipc event, 1 worker / Redis** (p99 ratio) | " + " | ".join(
                f"**{versus_redis[l]['rps']:.2f}** (p99 {versus_redis[l]['p99_us']:.2f})"
                if l in versus_redis else "-" for l, _, _ in LOADS) + " |")
        if versus_ceiling:
            out("| **dipc event, 1 worker / ceiling** | " + " | ".join(
                f"**{versus_ceiling[l]['rps']:.2f}**" if l in versus_ceiling else "-"
                for l, _, _ in LOADS) + " |")
        out("")
    out("## The cost of growth")
    out("")
    out("Event model, reads of 100 bytes, no pipelining. Worker memory is the largest "
        "worker's private resident memory (RssAnon; the segment is shared and not in it).")
    out("")
    out("| connections | requests/s | p99 µs | workers | largest worker RssAnon |")
    out("|---|---|---|---|---|")
    for conns, rps, p99, anon, workers in growth:
        out(f"| {conns} | {fmt_rps(rps)} | {p99:.0f} | {workers} | {anon} KiB |")
    out("")
    out("Segment size (`/dev/shm/dipc.<port>`) against the mailbox count and size; each "
        "mailbox has two halves, the rest is the header, worker table, lock entries and "
        "mailbox slots (dipc run with `--keys 0`: no key-value store).")
    out("")
    out("| mailboxes | mailbox KiB | segment bytes | beyond the two halves |")
    out("|---|---|---|---|")
    for mailboxes, kib, size, extra in segments:
        out(f"| {mailboxes} | {kib} | {size} | {extra} |")
    out("")
    history = os.path.join(ROOT, "bench", "changes.md")
    if os.path.exists(history):
        with open(history) as f:
            out(f.read().rstrip())
            out("")
    with open(opts.output, "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
