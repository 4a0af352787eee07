"""Domain names as DMARC reads them, and where an organization ends by a public-suffix list.

Two ways of answering "which domain does this name belong to?" share the name handling
kept here. The DNS Tree Walk of RFC 9989 (section 4.10) asks DNS, name by name, from the
domain towards the root: :func:`tree_walk_names` lists the names it may ask, at most
:data:`MAX_TREE_WALK_QUERIES`, long names shortened to their last 7 labels. RFC 7489
(section 3.2) asked no DNS at all: it took a public-suffix list and added one label to
the suffix; :class:`PublicSuffixList` applies such a list (the real list's format), and
:func:`lab_public_suffix_list` is the lab's own (:data:`PSL_PATH`).

The walk itself, and the discovery of the record that applies, are in
:mod:`labsupport.auth.dmarc_discovery`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..core.paths import DATA_DIR

#: At most this many DMARC queries in one DNS Tree Walk (RFC 9989 section 4.10).
MAX_TREE_WALK_QUERIES = 8
#: A name of this many labels or more is shortened to this many minus one (section 4.10).
_SHORTEN_AT = 8

#: The lab's public-suffix list for ``method="psl"`` (the real list's format).
PSL_PATH = DATA_DIR / "psl" / "lab_public_suffix_list.dat"


# -- names ---------------------------------------------------------------------------


def _normalize(domain: str) -> str:
    """Lower case, no trailing dot, A-labels for U-labels (section 5.3.1)."""
    name = domain.strip().rstrip(".").lower()
    if name and not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return name


def _labels(domain: str) -> list[str]:
    return [label for label in domain.split(".") if label]


def tree_walk_names(domain: str) -> list[str]:
    """The names a DNS Tree Walk from ``domain`` may query, in order (section 4.10).

    The domain itself; then, if it has 8 labels or more, its last 7 labels, otherwise
    its parent; then one label less each time, down to the top-level name. Never more
    than :data:`MAX_TREE_WALK_QUERIES` names.
    """
    labels = _labels(_normalize(domain))
    if not labels:
        return []
    names = [".".join(labels)]
    x = len(labels)
    keep = _SHORTEN_AT - 1 if x >= _SHORTEN_AT else x - 1
    while keep >= 1:
        names.append(".".join(labels[-keep:]))
        keep -= 1
    return names


def _one_label_below(domain: str, parent: str) -> str:
    """The name under ``parent`` on the way to ``domain``: one label more than parent."""
    labels = _labels(domain)
    return ".".join(labels[-(len(_labels(parent)) + 1):])


def _is_subdomain(child: str, parent: str) -> bool:
    return child != parent and child.endswith("." + parent)


# -- the public-suffix list (RFC 7489) ------------------------------------------------


class PublicSuffixList:
    """A public-suffix list in the real list's format (https://publicsuffix.org/list/).

    :meth:`public_suffix` applies its rules (the longest match wins, an exception rule
    beats a wildcard, the implicit rule ``*`` applies when nothing matches);
    :meth:`organizational_domain` adds one label, as RFC 7489 section 3.2 says.
    """

    def __init__(self, text: str, source: str = "<text>") -> None:
        self.source = source
        self.rules: set[str] = set()
        self.wildcards: set[str] = set()
        self.exceptions: set[str] = set()
        for line in text.splitlines():
            rule = line.strip().split()[0].lower() if line.strip() else ""
            if not rule or rule.startswith("//"):
                continue
            if rule.startswith("!"):
                self.exceptions.add(rule[1:])
            elif rule.startswith("*."):
                self.wildcards.add(rule[2:])
            else:
                self.rules.add(rule)

    @classmethod
    def from_file(cls, path: str | Path) -> PublicSuffixList:
        path = Path(path)
        return cls(path.read_text(encoding="utf-8"), source=str(path))

    def __len__(self) -> int:
        return len(self.rules) + len(self.wildcards) + len(self.exceptions)

    def public_suffix(self, domain: str) -> str:
        labels = _labels(_normalize(domain))
        best = 1  # the implicit rule "*"
        for i in range(len(labels)):
            name = ".".join(labels[i:])
            n = len(labels) - i
            if name in self.exceptions:
                return ".".join(labels[i + 1:])  # an exception wins: its parent is the suffix
            if name in self.rules:
                best = max(best, n)
            parent = ".".join(labels[i + 1:])
            if parent and parent in self.wildcards:
                best = max(best, n)
        return ".".join(labels[-best:])

    def organizational_domain(self, domain: str) -> str:
        """The public suffix plus one label; a name that is itself a suffix stays itself."""
        labels = _labels(_normalize(domain))
        suffix = self.public_suffix(domain)
        n = len(_labels(suffix))
        if n >= len(labels):
            return ".".join(labels)
        return ".".join(labels[-(n + 1):])


@lru_cache(maxsize=1)
def lab_public_suffix_list() -> PublicSuffixList:
    """The lab's list, ``data/psl/lab_public_suffix_list.dat``, read once."""
    return PublicSuffixList.from_file(PSL_PATH)
