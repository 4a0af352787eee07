"""Write the reference captures in data/pcaps/ from the lab itself.

    python scripts/make_pcaps.py [--out data/pcaps]

Starts a throwaway lab (its own state directory), captures each lesson's exchange in the
relay mode (the lab world's addresses and the conventional ports 25, 587, 465 and 53, so
Wireshark needs no hints) and writes one pcap per exchange, with the TLS key log beside
the TLS ones. Run it again to regenerate them; see data/pcaps/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import labsupport  # noqa: E402
from labsupport.mail.mitm import run_scenario  # noqa: E402
from labsupport.mail.smtp import send_mail  # noqa: E402
from labsupport.wire.capture import capture  # noqa: E402

MESSAGE = ("From: Alice <alice@northwind.test>\r\nTo: Carol <carol@campus.test>\r\n"
           "Subject: Course notes\r\n\r\nHere are the notes.\r\n")


def make(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    state = Path(tempfile.mkdtemp(prefix="make-pcaps-"))
    lab = labsupport.start(state)
    try:
        alice = lab.accounts.get("alice@northwind.test")
        auth = (alice.address, alice.password)

        with capture(lab, "mx", mode="relay", path=out / "dns-mx.pcap") as cap:
            cap.query("northwind.test", "MX")
            cap.query("mx1.northwind.test", "A")
            cap.query("nosuchhost.northwind.test", "A")
        written.append(cap.path)  # type: ignore[arg-type]

        with capture(lab, "mx", mode="relay", dns=False, path=out / "smtp-plain.pcap") as cap:
            send_mail("127.0.0.1", cap.port("mx"), mail_from="bob@northwind.test",
                      rcpt_to="carol@campus.test", message=MESSAGE)
        written.append(cap.path)  # type: ignore[arg-type]

        lab.smtp.enable_legacy()
        with capture(lab, "legacy", mode="relay", dns=False,
                     path=out / "auth-in-the-clear.pcap") as cap:
            send_mail("127.0.0.1", cap.port("legacy"), mail_from=alice.address,
                      rcpt_to="carol@campus.test", message=MESSAGE, auth=auth,
                      allow_plaintext_auth=True)
        written.append(cap.path)  # type: ignore[arg-type]

        for name, role, tls in (("starttls", "submission", "starttls"),
                                ("implicit-tls", "submissions", "implicit")):
            keylog = out / f"{name}.keylog"
            keylog.unlink(missing_ok=True)
            with capture(lab, role, mode="relay", dns=False, path=out / f"{name}.pcap") as cap:
                send_mail("127.0.0.1", cap.port(role), mail_from=alice.address,
                          rcpt_to="carol@campus.test", message=MESSAGE, tls=tls, auth=auth,
                          ca_file=lab.ca.ca_file, keylog_file=keylog)
            written += [cap.path, keylog]  # type: ignore[list-item]

        scenario = run_scenario(lab, "starttls", attacker=True, capture_mode="relay",
                                path=out / "downgrade.pcap")
        written.append(scenario.capture.path)  # type: ignore[arg-type]
    finally:
        lab.stop()
        shutil.rmtree(state, ignore_errors=True)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "pcaps")
    args = parser.parse_args(argv)
    for path in make(args.out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
