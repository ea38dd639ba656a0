"""Which names the service accepts as domains: those that end in a suffix of the Public Suffix
List. The recorded `GET /domains/xpressco.za` answered 400 "is not a valid domain pattern":
"za" itself is no rule of the list (only "co.za", "org.za", ... are), so a name counts only when
the list has an explicit rule for one of its suffixes, not by the list's implicit "*" rule."""

import re

DEFAULT_PATH = "/usr/share/publicsuffix/public_suffix_list.dat"   # Debian package publicsuffix
LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def ascii_name(name):
    """A UTF-8 rule or name in the ASCII (punycode) form host names travel in; None if it has
    no such form."""
    try:
        return ".".join(label.encode("idna").decode() if not label.isascii() else label
                        for label in name.split("."))
    except UnicodeError:
        return None


class SuffixList:
    def __init__(self, path=DEFAULT_PATH):
        self.rules, self.wildcards, self.exceptions = set(), set(), set()
        with open(path, encoding="utf-8") as f:
            for line in f:
                rule = line.strip().lower()
                if not rule or rule.startswith("//"):
                    continue
                target = self.rules
                if rule.startswith("!"):
                    target, rule = self.exceptions, rule[1:]
                elif rule.startswith("*."):
                    target, rule = self.wildcards, rule[2:]
                target.add(rule)
                converted = ascii_name(rule)
                if converted:
                    target.add(converted)

    def known_suffix(self, labels):
        """True when some suffix of the labels is a rule of the list (plain, wildcard or
        exception)."""
        for i in range(len(labels)):
            suffix = ".".join(labels[i:])
            if suffix in self.rules or suffix in self.exceptions:
                return True
            if i + 1 < len(labels) and ".".join(labels[i + 1:]) in self.wildcards:
                return True
        return False

    def domain(self, text):
        """The lower-case domain (trailing dot dropped) when `text` is a valid domain pattern:
        at least two labels of letters, digits, "-" and "_" (no leading or trailing "-"), at
        most 253 characters, ending in a suffix of the list. None otherwise."""
        name = text.lower().rstrip(".")
        labels = name.split(".")
        if (len(name) > 253 or len(labels) < 2 or not all(LABEL.match(l) for l in labels)
                or not self.known_suffix(labels)):
            return None
        return name
