"""``python -m labsupport``: the lab for terminals, scripts and instructors.

``serve`` runs the same lab a notebook gets, in the foreground, and prints how to reach
it (with ``--json``, one JSON object on its first line): the DNS server, the mail
server's roles, the CA file, the accounts and commands to try. The other commands act on
a running lab, found through its state directory: ``status``, ``reset``, ``dns``,
``clock``, ``log``, ``faults``, ``greylist``; ``mx`` asks where mail for a domain goes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..core.errors import LabError, LabNotRunning
from . import control
from .lab import Lab, labs_home, running_labs, start


def _find_state_dir(given: str | None) -> Path:
    """The state directory of the lab to act on: given, from the environment, or the
    only running one."""
    chosen = given or os.environ.get("MAIL_LABS_STATE_DIR")
    if chosen:
        return Path(chosen).expanduser()
    labs = running_labs()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabNotRunning(
            f"no lab is running under {labs_home()}; start one with "
            "'python -m labsupport serve' (or in a notebook), or name it with --state-dir"
        )
    listing = ", ".join(str(p) for p in labs)
    raise LabError(f"several labs are running ({listing}); choose one with --state-dir")


def _mail_lines(lab: Lab) -> list[str]:
    from ..mail.server import ROLES, example_commands

    lines = ["", "  Mail (SMTP) roles:"]
    for role, port in lab.smtp.ports().items():
        lines.append(f"    {role:<12} 127.0.0.1 port {port:<6} {ROLES[role].summary}")
    if lab.mta_sts.running:
        lines.append(f"  MTA-STS       127.0.0.1 port {lab.mta_sts.port:<6} HTTPS policy host for "
                     + ", ".join(f"mta-sts.{d}" for d in lab.mta_sts.domains()))
    if (imap := lab.imap_if_running()) is not None:
        lines.append(f"  IMAP          127.0.0.1 port {imap.port:<6} implicit TLS (the role of "
                     "993), Dovecot over the lab's mailboxes")
    lines += [f"  CA file       {lab.ca.ca_file}  (for swaks, openssl, curl)",
              "", "  Accounts (the address is the login):"]
    width = max(len(a.address) for a in lab.accounts.all())
    for account in lab.accounts.all():
        lines.append(f"    {account.address:<{width}}  {account.password}  ({account.name})")
    first = lab.accounts.all()[0]
    lines += ["", "Try the mail server:"]
    for what, command in example_commands(lab.smtp.ports(), str(lab.ca.ca_file),
                                          first.address, first.password):
        lines += [f"  # {what}", f"  {command}"]
    if lab.mta_sts.running:
        for domain in lab.mta_sts.domains():
            lines += [f"  # {domain}'s MTA-STS policy (RFC 8461), over HTTPS with the lab CA",
                      f"  {lab.mta_sts.curl_command(domain)}"]
    if imap is not None:
        for what, command in imap.commands(first.address, first.password):
            lines += [f"  # {what}", f"  {command}"]
    lines += ["  python -m labsupport faults add rcpt '451 4.7.1 Greylisted, try again later' "
              "--match bob@"]
    return lines


def _banner(lab: Lab) -> str:
    port = lab.dns.port
    lines = [
        "Mail Labs is running. Everything listens on 127.0.0.1 only.",
        "",
        f"  DNS server    127.0.0.1 port {port} (UDP and TCP), authoritative for:",
        f"                {', '.join(lab.zones.mail_domains())}",
        f"  state         {lab.state_dir}",
        *_mail_lines(lab),
        "",
        "Try the DNS server:",
        f"  {lab.dig_command('northwind.test', 'MX')}",
        f"  {lab.dig_command('nosuchhost.northwind.test', 'A')}      (NXDOMAIN, SOA in AUTHORITY)",
        f"  {lab.dig_command('pool.mailcloud.example', 'A')}      (too big for UDP: "
        "dig retries over TCP)",
        "  python -m labsupport mx campus.test",
        "  python -m labsupport dns set careless.test MX '10 server.careless.test.'",
        "  python -m labsupport reset",
        "",
        "Queries and mail events are printed below as they arrive. Stop with Ctrl-C.",
    ]
    return "\n".join(lines)


def _start_imap(lab: Lab) -> None:
    """Start Dovecot for ``serve`` (a mail program can then read the lab's mail), or say
    on stderr why not; the rest of the lab serves either way."""
    from ..mail.imap_dovecot import DEBIAN_PACKAGE, dovecot_available

    if not dovecot_available():
        print(f"IMAP is off: Dovecot is not installed (Debian package {DEBIAN_PACKAGE})",
              file=sys.stderr, flush=True)
        return
    try:
        lab.start_imap()
    except LabError as exc:
        print(f"IMAP is off: {exc}", file=sys.stderr, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    lab = start(args.state_dir, dns_port=args.dns_port)
    _start_imap(lab)
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    if args.json:
        print(json.dumps(lab.info()), flush=True)
    else:
        print(_banner(lab), flush=True)
    if not args.quiet:
        lab.dns.log.on_entry(lambda entry: print(f"dns: {entry}", flush=True))
        lab.smtp.log.on_entry(lambda entry: print(f"smtp: {entry}", flush=True))
    try:
        while not stop.wait(0.5):
            pass
    finally:
        lab.stop()
    if not args.json:
        print("The lab has stopped.", flush=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = control.call(_find_state_dir(args.state_dir), "status")
    if args.json:
        print(json.dumps(info))
    else:
        smtp = ", ".join(f"{role} {where['port']}" for role, where in info.get("smtp", {}).items())
        print(f"running (pid {info['pid']}), DNS on 127.0.0.1 port {info['dns']['port']}, "
              + (f"SMTP on 127.0.0.1 ({smtp}), " if smtp else "")
              + f"state in {info['state_dir']}, lab clock {info['clock']}")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    print(control.call(_find_state_dir(args.state_dir), "reset"))
    return 0


def cmd_dns(args: argparse.Namespace) -> int:
    result = control.call(_find_state_dir(args.state_dir), "dns", action=args.action,
                          name=args.name or "", type=args.type or "", values=args.values,
                          zone=args.name if args.action in ("reset", "show") else None)
    print(result)
    return 0


def cmd_clock(args: argparse.Namespace) -> int:
    print(control.call(_find_state_dir(args.state_dir), "clock", advance=args.advance,
                       set=args.set, freeze=args.freeze, real=args.real))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    command = "mail-log" if args.mail else "log"
    for line in control.call(_find_state_dir(args.state_dir), command, last=args.last):
        print(line)
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    print(control.call(_find_state_dir(args.state_dir), "queue", action=args.action))
    return 0


def cmd_faults(args: argparse.Namespace) -> int:
    times = None if args.always else args.times
    if args.action == "add":
        if not args.stage or (args.reply is None and args.stage != "delay-banner"):
            raise LabError("faults add needs a stage and a reply, e.g. faults add rcpt "
                           "'451 4.7.1 Greylisted, try again later' --match bob@")
        result = control.call(_find_state_dir(args.state_dir), "faults", action="add",
                              stage=args.stage, reply=args.reply or "", match=args.match,
                              times=times, role=args.role, delay=args.delay)
    elif args.action in ("down", "up"):
        if not args.stage:
            raise LabError(f"faults {args.action} needs a host name, e.g. "
                           f"faults {args.action} mx1.northwind.test")
        result = control.call(_find_state_dir(args.state_dir), "faults", action=args.action,
                              host=args.stage)
    elif args.action == "remove":
        if not args.stage or not args.stage.isdigit():
            raise LabError("faults remove needs a rule number, e.g. faults remove 2")
        result = control.call(_find_state_dir(args.state_dir), "faults", action="remove",
                              rule_id=int(args.stage))
    else:
        result = control.call(_find_state_dir(args.state_dir), "faults", action=args.action)
    if args.json:
        print(json.dumps(result))
        return 0
    if result["done"]:
        print(result["done"])
    if args.action == "list" or not result["done"]:
        print(result["text"])
    return 0


def cmd_greylist(args: argparse.Namespace) -> int:
    if args.action == "on" and not args.domains:
        raise LabError("greylist on needs at least one recipient domain, e.g. "
                       "greylist on campus.test --delay 300")
    print(control.call(_find_state_dir(args.state_dir), "greylist", action=args.action,
                       domains=args.domains, delay=args.delay))
    return 0


def cmd_mx(args: argparse.Namespace) -> int:
    import dns.resolver

    from ..dns.mx import mx_hosts
    from ..dns.zone import ZoneSet

    try:
        runtime = control.call(_find_state_dir(args.state_dir), "status")
        resolver: Any = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = runtime["dns"]["port"]
    except LabError:
        from ..core.paths import DATA_DIR

        resolver = ZoneSet.from_directory(DATA_DIR / "zones")  # no lab running: the files
    print(mx_hosts(args.domain, resolver).text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m labsupport", description="Run and drive the Mail Labs lab."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_state(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--state-dir", help="the lab's state directory (default: the only "
                       "running lab, or MAIL_LABS_STATE_DIR)")
        return p

    serve = with_state(sub.add_parser("serve", help="run the lab in the foreground"))
    serve.add_argument("--dns-port", type=int, default=0,
                       help="fixed DNS port (default: an ephemeral one)")
    serve.add_argument("--json", action="store_true",
                       help="print what is running as one JSON object on the first line")
    serve.add_argument("--quiet", action="store_true", help="do not print each query")
    serve.set_defaults(func=cmd_serve)

    status = with_state(sub.add_parser("status", help="is a lab running, and where"))
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)

    with_state(sub.add_parser("reset", help="put the running lab back to its known state")
               ).set_defaults(func=cmd_reset)

    dnsp = with_state(sub.add_parser("dns", help="edit the running lab's zones"))
    dnsp.add_argument("action", choices=["add", "set", "remove", "reset", "show"])
    dnsp.add_argument("name", nargs="?", help="owner name (or zone, for reset and show)")
    dnsp.add_argument("type", nargs="?", help="record type, e.g. MX")
    dnsp.add_argument("values", nargs="*", help="record values, e.g. '10 mx1.northwind.test.'")
    dnsp.set_defaults(func=cmd_dns)

    clock = with_state(sub.add_parser("clock", help="show, set or advance the lab clock"))
    clock.add_argument("--advance", type=float, help="seconds to move forward")
    clock.add_argument("--set", help="ISO 8601 time to jump to")
    clock.add_argument("--freeze", action="store_true", help="stop the clock")
    clock.add_argument("--real", action="store_true", help="back to real time")
    clock.set_defaults(func=cmd_clock)

    log = with_state(sub.add_parser("log", help="the DNS query log (--mail: the mail log)"))
    log.add_argument("--last", type=int, default=20)
    log.add_argument("--mail", action="store_true", help="the mail server's log instead")
    log.set_defaults(func=cmd_log)

    queue = with_state(sub.add_parser("queue", help="the outbound mail queue: show, or "
                                      "flush (try every message now)"))
    queue.add_argument("action", nargs="?", default="show", choices=["show", "flush"])
    queue.set_defaults(func=cmd_queue)

    faults = with_state(sub.add_parser(
        "faults", help="lesson faults in the mail server: add, list, remove, clear, down, up",
        description="Make the running lab's mail server misbehave on purpose. Examples: "
                    "faults add rcpt '451 4.7.1 Greylisted, try again later' --match bob@ ; "
                    "faults add banner '554 5.3.2 No service' ; "
                    "faults add data '421 4.3.2 Closing' ; "
                    "faults add delay-banner --delay 10 ; "
                    "faults down mx1.northwind.test ; faults list ; faults clear"))
    faults.add_argument("action", choices=["add", "list", "remove", "clear", "down", "up"])
    faults.add_argument("stage", nargs="?", help="for add: delay-banner, banner, ehlo, mail, "
                        "rcpt or data; for down/up: a host name; for remove: a rule number")
    faults.add_argument("reply", nargs="?", help="the SMTP reply, e.g. '451 4.7.1 Greylisted'")
    faults.add_argument("--match", help="only when the argument (address, host name) "
                        "contains this text, e.g. bob@")
    faults.add_argument("--times", type=int, default=1, help="how many times (default 1)")
    faults.add_argument("--always", action="store_true", help="every time, until cleared")
    faults.add_argument("--role", default="mx", choices=["mx", "submission", "submissions",
                                                         "legacy", "*"],
                        help="which role (default mx; * for all)")
    faults.add_argument("--delay", type=float, default=0.0, help="seconds to wait first")
    faults.add_argument("--json", action="store_true")
    faults.set_defaults(func=cmd_faults)

    greylist = with_state(sub.add_parser(
        "greylist", help="the MX role's greylisting: on DOMAIN..., off, show",
        description="Greylist mail to some domains of the running lab: the first attempt "
                    "of a new (client address, sender, recipient) is answered 451 4.7.1, a "
                    "retry after the delay (lab clock) is accepted. Examples: greylist on "
                    "campus.test --delay 300 ; greylist show ; greylist off"))
    greylist.add_argument("action", nargs="?", default="show", choices=["on", "off", "show"])
    greylist.add_argument("domains", nargs="*", help="for on: the recipient domains")
    greylist.add_argument("--delay", type=float, help="seconds before a retry is accepted "
                          "(default 300)")
    greylist.set_defaults(func=cmd_greylist)

    mx = with_state(sub.add_parser("mx", help="where does mail for a domain go?"))
    mx.add_argument("domain")
    mx.set_defaults(func=cmd_mx)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
