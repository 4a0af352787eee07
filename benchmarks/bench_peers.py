"""What the per-connection peer check costs: who owns the other end of a loopback socket.

    python benchmarks/bench_peers.py            # print a Markdown table
    python benchmarks/bench_peers.py --quick    # fewer repetitions

On a shared host the lab's servers ask :func:`labsupport.core.peers.same_user` who is on
the other end before they answer: the DNS server for every UDP datagram and for each TCP
connection, the mail roles and the control socket for each connection. For one loopback
TCP connection and one UDP datagram between two sockets of this process, this times one
check both ways the module offers: ``method="auto"`` (one exact sock_diag lookup over
netlink, as ``ss`` does) and ``method="proc"`` (the ``/proc/net/tcp`` or ``/proc/net/udp``
table read and searched: the fallback where netlink cannot be used). Each figure is the
median time of one check over several rounds, the two ways alternating round by round so
that a busy moment of the machine hits both. What ``/proc/net/tcp`` costs grows with the
kernel's TCP hash table, which the kernel walks to print the file (its size is set by the
host's memory), not with the few sockets it lists, so the row says how many it listed. Every
check must say ``same-user`` (both ends are this process), and the netlink one must not
have fallen back to the tables, or the run fails. Linux only: elsewhere nobody can tell,
and the row says so.

``main()`` returns the rows, ``(measure, result)`` pairs, in the form
``benchmarks/run_all.py`` puts into its Markdown table.
"""

from __future__ import annotations

import socket
import statistics
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from labsupport.core.peers import PROC_NET, PeerCheck, same_user  # noqa: E402

METHODS = ("auto", "proc")
#: What the trace says when the netlink lookup could not be made (see same_user).
_NO_NETLINK = "netlink cannot be used"


def _table_rows(name: str) -> int:
    """How many sockets ``/proc/net/<name>`` lists (its rows after the heading)."""
    try:
        return max(len((PROC_NET / name).read_text(encoding="ascii").splitlines()) - 1, 0)
    except OSError:
        return 0


def _checked(check: PeerCheck, method: str) -> PeerCheck:
    if check.verdict != "same-user":
        raise RuntimeError(f"the {check.transport} peer check ({method}) said "
                           f"{check.verdict}: {check.summary}")
    if method == "auto" and _NO_NETLINK in check.text():
        raise RuntimeError("sock_diag over netlink cannot be used here:\n" + check.text())
    return check


def measure(transport: str, calls: int, rounds: int) -> dict[str, float]:
    """Seconds per check of one ``transport`` peer, for each method (median of rounds)."""
    if transport == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client = socket.create_connection(listener.getsockname())
            server, peer = listener.accept()
    else:
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.bind(("127.0.0.1", 0))
        client.sendto(b"who is there?", server.getsockname())
        _data, peer = server.recvfrom(64)
    try:
        # What a server does once per connection or datagram (check_socket, with a method).
        checks = {method: (lambda m=method: same_user(server.getsockname(), peer, transport,
                                                      method=m))
                  for method in METHODS}
        timers = {method: timeit.Timer(check) for method, check in checks.items()}
        for method, check in checks.items():
            _checked(check(), method)
            timers[method].timeit(max(calls // 10, 1))  # warm up
        times: dict[str, list[float]] = {method: [] for method in METHODS}
        for _ in range(rounds):
            for method, timer in timers.items():
                times[method].append(timer.timeit(calls) / calls)
    finally:
        client.close()
        server.close()
    return {method: statistics.median(values) for method, values in times.items()}


def main(quick: bool = False) -> list[tuple[str, str]]:
    """Markdown rows ``(measure, result)`` for ``benchmarks/run_all.py``."""
    name = "peer check `same_user()`, per TCP connection / per UDP datagram"
    if not sys.platform.startswith("linux"):
        return [(name, f"not run: {sys.platform} lists no socket owners")]
    calls, rounds = (50, 3) if quick else (200, 9)
    tcp, udp = measure("tcp", calls, rounds), measure("udp", calls, rounds)
    return [(f"{name}: netlink sock_diag vs `/proc/net` tables (median)",
             f"{tcp['auto'] * 1e6:.0f} / {udp['auto'] * 1e6:.0f} µs vs "
             f"{tcp['proc'] * 1e6:,.0f} / {udp['proc'] * 1e6:.0f} µs "
             f"(`/proc/net/tcp` listed {_table_rows('tcp')} sockets)")]


if __name__ == "__main__":
    from bench_table import table_cli  # beside this script

    sys.exit(table_cli(__doc__.splitlines()[0], main))
