"""Tiers 1 and 2 of the router: the evidence a task's words, code and files give for each domain.

1. keywords and phrases from ``data/router.toml`` matched on token boundaries (not substrings:
   "spython" is not python); the deliverable the opening verb asks for ("Write a README for the
   Helm chart" delivers documentation); the shape of code in the task (a TypeScript signature, C
   includes, a ``__global__`` kernel); arithmetic word problems and equations;
2. file extensions, file names and folders of the context refs, and file names in the text.

Every piece of evidence says what it matched and what it weighs, so each decision can be
explained. ``core.router`` turns the domains into a specialist.
"""

from __future__ import annotations

import itertools
from operator import itemgetter
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dataclasses import dataclass, field

import ahocorasick_rs
from pydantic import BaseModel, Field

DOMAINS = ("python", "cuda", "math", "systems", "web", "data", "devops", "docs")
LEXICON_FILE = Path(__file__).with_name("data") / "router.toml"
# Evidence of a language no specialist serves is kept as this pseudo-domain: it routes nowhere,
# but it names the fallback and keeps tier 3 from sending a Ruby method to the python specialist.
UNSERVED = "unserved"

# Tokens are runs of letters, digits and _ # @ +: "c++", "#include", "__global__" stay whole and
# "use-after-free" is three tokens, matched as a phrase. Non-ASCII letters belong to tokens too.
_TOKEN = re.compile(r"[a-z0-9_#@+]+")  # for keywords; tasks use the same rule via _separate
_TOKEN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_#@+")
# The scan works on the UTF-8 bytes: bytes.lower and bytes.translate cost ~1 us each for 2 KB
# whatever the text holds, while str.lower and str.translate leave their ASCII fast paths for a
# text with one "λ" in it (150 us for 2 KB). No keyword has a non-ASCII letter, so lowering
# ASCII only loses nothing. Every non-token ASCII byte becomes a space.
_SEPARATORS = bytes(b if b >= 128 or chr(b) in _TOKEN_CHARS else 32 for b in range(256))
_UNICODE_SEPARATORS = tuple(c.encode() for c in "\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0")


def _separate(text: str) -> tuple[bytes, bytes]:
    """The text lowered, and the same with every non-token character turned into a space and
    padded with one space on each side: a token is then exactly what lies between spaces."""
    lower = text.encode().lower()
    if not text.isascii():
        for mark in _UNICODE_SEPARATORS:  # a regex alternation of the eight took 15 us
            if mark in lower:
                lower = lower.replace(mark, b" ")
    return lower, _separated(lower)


def _separated(lower: bytes) -> bytes:
    return b" " + lower.translate(_SEPARATORS) + b" "


def tokens(text: str) -> list[str]:
    """The text's tokens as the lexicon matches them ("C++", "#include" and "__global__" whole)."""
    return _separate(text)[1].decode().split()


# "console.log(x)" is a call, not a file: a name followed by "(" is not one
_EXTENSION = re.compile(rb"\.([a-z][a-z0-9_+]*)\b(?!\()")
_FILE_NAME_HEAD = re.compile(rb"[\w\-./]*")
_NUMBER_WORDS = frozenset("""one two three four five six seven eight nine ten eleven twelve
twenty thirty forty fifty hundred thousand dozen half twice double triple thrice thirds
quarters""".split()) | {"a third", "a quarter", "a fifth", "a tenth"} | {
    # a rate states a number too: "3 mice a week ... in a year" is 3 x 52
    f"{per} {unit}" for per in ("a", "an", "per", "each", "every") for unit in (
        "minute", "hour", "day", "week", "month", "year") if (per == "an") == (unit == "hour")}
# A quantity question, matched at each "how "/"what "/"in dollars" of the text.
_QUANTITY_QUESTION = {
    b"how ": re.compile(rb"how (many|much|long|far|old|often|fast|tall|big|heavy|wide|high|deep|"
                        rb"large|short|soon)\b"),
    b"what ": re.compile(
        rb"what (percent(age)?\b|fraction\b|proportion\b|share\b|"
        rb"(is|was|are|were|will be|would be) (the|his|her|their|its) ([a-z]+ )?"
        rb"(total|sum|average|cost|price|number|percentage|probability|area|value|difference|"
        rb"ratio|profit|speed|age|weight|height|length|distance|dimensions|perimeter|volume|"
        rb"radius|width|rate|interest|balance|temperature|mass|capacity|remainder|product|"
        rb"quotient|change|increase|decrease|discount|markup)\b)"),
    b"in dollars": None,
}
# Every digit as "0": a token that starts with a digit is then one literal, " 0", found by a
# byte search (1-2 us for 2 KB; a regex for " [0-9]" tried every space: 5 us).
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


# A quoted literal, 'x' or "x", not a word's apostrophe ("it's"). One pattern per quote mark, each
# starting with its mark: a pattern that starts with a literal is searched at memchr speed, one
# that starts with a look-behind or a character class tries every position (~30 us on 2 KB).
_SINGLE_QUOTED = re.compile(rb"""'(?<!\w')[^'"\n]*'(?!\w)""")
_DOUBLE_QUOTED = re.compile(rb""""(?<!\w")[^'"\n]*"(?!\w)""")


def _unquoted(lower: bytes) -> bytes:
    """``lower`` with each quoted literal blanked to one space. The literals each pattern finds
    in the original text are those one pattern for both marks finds (a literal holds no quote
    mark); blanking one kind first would join the other kind's marks around it."""
    spans = sorted(match.span() for pattern, mark in ((_SINGLE_QUOTED, b"'"), (_DOUBLE_QUOTED, b'"'))
                   if mark in lower for match in pattern.finditer(lower))
    if not spans:
        return lower
    pieces, last = [], 0
    for start, end in spans:
        pieces += (lower[last:start], b" ")
        last = end
    pieces.append(lower[last:])
    return b"".join(pieces)


def _quoted(lower: bytes) -> list[bytes]:
    """The quoted literals in ``lower``, in order, without their quote marks."""
    matches = [*_SINGLE_QUOTED.finditer(lower), *_DOUBLE_QUOTED.finditer(lower)]
    return [match.group(0)[1:-1] for match in sorted(matches, key=lambda match: match.start())]


def _asks_advice(lower: bytes) -> bool:
    """Whether the closing question asks for advice or a method, "(what) should we/I ...", "how
    do I ..." (also after a lead-in: "...; why, and how do I speed it up?", "..., and what would
    help?"), or proposes a change,
    "lower the memory utilisation?" (the text ends with "?")."""
    tail = lower[max(0, len(lower) - 200):]
    start = max(tail.rfind(b". "), tail.rfind(b"; "), tail.rfind(b"? ", 0, len(tail) - 1),
                tail.rfind(b"! "))
    closing = tail[start + 2 if start >= 0 else 0:].lstrip()
    # "...; why, and how do I speed it up?": a method asked for after a lead-in
    return closing.startswith(_ADVICE_ASKS + _HOW_TO_ASKS) or any(
        b" " + ask in closing for ask in _HOW_TO_ASKS + _HELP_ASKS)


def _count_numbers(lower: bytes, separated: bytes, number_words: int) -> int:
    """Tokens that start with a digit plus the number words the scan found; a number written
    with a thousands separator ("167,936 bytes") is one number, though separating splits it.
    (A decimal stays two: "0.999..." and "99.9%" make the labelled word problems they are.)"""
    return (number_words + separated.translate(_DIGITS_AS_ZERO).count(b" 0")
            - lower.translate(_DIGITS_AS_ZERO).count(b"0,000"))


# A construct is looked for at the first places its literal occurs, not at every one: a 2 KB
# task that repeats "def f(a): " on one line cost 3.5 ms, each try scanning to the line's end.
# Sixteen places are more than any labelled task needed.
_MAX_PLACES = 16


def _found_at(text: Any, needle: Any, pattern: re.Pattern | None) -> bool:
    """``pattern`` matches at one of the first places ``needle`` (a literal) occurs in
    ``text`` (str or bytes, as the pattern)."""
    at = text.find(needle)
    for _ in range(_MAX_PLACES):
        if at == -1:
            break
        if pattern is None or pattern.match(text, at):
            return True
        at = text.find(needle, at + 1)
    return False


# Starts with the literal "/", so re's prefix search jumps from one "/" to the next; with the
# look-behind first it tried every offset (~40 us over 2 KB).
_ABSOLUTE_PATH = re.compile(r"/(?<![\w.]/)[\w.-]+(?:/[\w.*-]+)+")
_ABSOLUTE_PATH_ARGUMENT = re.compile(_ABSOLUTE_PATH.pattern.encode())
# An imperative one-liner about files, as people ask a shell for (nl2bash-style tasks).
_SHELL_VERBS = frozenset(b"""find print display list search delete remove count copy move rename
compress archive extract split sort replace show view save change set create make locate grep get
calculate kill check monitor mount unmount download report output ping append prepend truncate
run execute schedule page open start stop restart echo add export install uninstall upgrade enable
disable convert determine discard delimit send simulate decompress uncompress unpack unzip dump
descend repeat renumber trim strip wrap merge join concatenate verify backup sync upload transfer
clear erase overwrite encrypt decrypt encode decode filter reverse assign attach bring listen
bypass catch log read receive reattach reconnect detach record bind parse pass perform pick pipe
place pop prefix suffix store take terminate unset unhide spawn source swap symlink synchronize
tunnel turn uncomment ungzip untar format forward generate give go grab getting alias allocate
answer adjust switch wait cut exit expand fetch sum modify mark handle highlight identify insert
interpret isolate limit shift serve hunt clone collapse combine compose compute
compare look eliminate redirect remount reload reinstall restore rotate""".split())
# "Write" opens most coding requests ("Write a function to ..."); it opens a one-liner only when
# what it writes is a stream or a listing ("Write the output of ... to ...").
_WRITE_STREAMS = (b"to ", b"the output", b"the list", b"the standard", b"the lines", b"the shell",
                  b"unbuffered", b"the contents")
_LEADING_ADVERBS = frozenset((b"force", b"always", b"never", b"just", b"also", b"please",
                              b"remote", b"dry"))
# A question that asks how to do something leaves the verb after its lead ("How do I follow the
# logs of a systemd service?"); one that asks for a command or a one-liner is a shell task
# ("Which command shows the kernel messages since the last boot?").
_QUESTION_LEADS = (b"how do i ", b"how can i ", b"how to ", b"how would i ", b"how should i ",
                   b"what is the command to ", b"what's the command to ", b"whats the command to ",
                   b"is there a one-liner to ", b"is there a one liner to ",
                   b"is there a command to ", b"give me the command to ",
                   b"give me a one-liner to ", b"show me how to ")
# A dotted number after a capitalised name or "v"/"version" is a release, not a quantity; not
# after a capitalised function word: "In 2.5 hours", "A 1.5 litre bottle" are quantities.
# Found from its first dot (a literal re can jump to): a search for the number itself tried every
# offset, 18-30 us on 2 KB; one over every word, 85 us.
_DOT_DIGIT = re.compile(r"\.[0-9]")
_DOTTED_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_NOT_NAMES = frozenset("""A An The In At On For If It By After About Over Under Each Every Only
    Just Then With From To Of Up Is Was Are Were He She They We You I Its His Her Their Our My
    Nearly Almost Exactly Around Roughly Some All Monday Tuesday Wednesday Thursday Friday
    Saturday Sunday January February March April May June July August September October November
    December""".split())


def _version_numbers(text: str) -> int:
    """How many of the numbers _count_numbers found are parts of versions ("Python 3.9" is
    two)."""
    count = 0
    end = 0
    for dot in itertools.islice(_DOT_DIGIT.finditer(text), _MAX_PLACES):
        start = dot.start()
        if start < end:
            continue  # a later dot of the number just counted
        while start and "0" <= text[start - 1] <= "9":
            start -= 1
        match = _DOTTED_NUMBER.match(text, start)
        if match is None:
            continue  # ".5" with no digit before the dot
        end = match.end()
        previous = text[start - 1:start]
        if previous == "v" and not text[start - 2:start - 1].isalnum():
            count += match.group().count(".") + 1  # v2.3.1
            continue
        if previous.isalnum() or previous in ("_", "."):
            continue  # inside a longer token
        before = text[max(0, start - 32):start].split()
        word = before[-1] if before else ""
        if word.lower() == "version" or (
                word[:1].isupper() and word[-1:].isalnum() and word not in _NOT_NAMES):
            count += match.group().count(".") + 1
    return count


_BINARY_UNITS = (b"kib ", b"mib ", b"gib ", b"tib ")  # looked for after one search for b"ib "
_ADVICE_ASKS = (b"should we ", b"should i ", b"what should i ", b"what should we ",
                # an elliptical proposal: "...; lower the memory utilisation?"
                b"lower ", b"raise ", b"increase ", b"decrease ", b"reduce ", b"use ", b"set ",
                b"try ", b"switch ", b"enable ", b"disable ", b"upgrade ", b"downgrade ")
_HOW_TO_ASKS = (b"how do i ", b"how can i ", b"how should i ", b"how do we ", b"how can we ",
                b"how should we ")
# "...how close is it to the limit, and what would help?": a remedy asked for after the numbers
_HELP_ASKS = (b"what would help", b"what could help", b"what can we do", b"what can i do")
_QUESTION_OPENERS = frozenset(lead.split(b" ", 1)[0] for lead in _QUESTION_LEADS)
_COMMAND_ASKS = (b"which command ", b"what command ", b"which shell command ")
# A command's own name as the first word is a shell task whatever follows ("ssh into the box").
_COMMAND_WORDS = frozenset(b"""ssh scp rsync chmod chown chgrp grep egrep tar gzip gunzip
bzip2 curl wget sudo mkdir rmdir cd ls ln""".split())
# ... or the task is a command line itself: 'date --date="222 days ago" +"%m"'.
_COMMAND_LINE = re.compile(rb"[a-z][\w.-]* -{1,2}[a-z]")


def _third_person(verb: bytes) -> bytes:
    if verb.endswith((b"s", b"sh", b"ch", b"x", b"o")):
        return verb + b"es"
    if verb.endswith(b"y") and verb[-2:-1] not in b"aeiou":
        return verb[:-1] + b"ies"
    return verb + b"s"


# nl2bash describes commands as often as it asks for them: "Copies 'src' to 'dest' ...".
_SHELL_VERBS |= {_third_person(verb) for verb in _SHELL_VERBS}
# ... but a plural noun opens a report as often: "Pages in nested folders don't get a link"
_SHELL_VERBS -= {b"pages", b"logs", b"records", b"reports", b"dumps", b"backups", b"views",
                 b"outputs", b"sources", b"stores", b"places", b"pipes", b"swaps", b"files"}
# What a one-liner's arguments look like: a shell variable ("$filename", "${linenum}", a quoted
# "$1"; not a LaTeX "$x$" or a price, "$12") or a quoted literal ('domains.txt', "abcdefg").
_SHELL_VARIABLE = re.compile(r"\$(?:\{\w|[A-Za-z_]\w|[A-Z]\b)|(?<=[\"'])\$\d")
_FILE_OBJECTS = frozenset("""file files directory directories folder folders lines
filename filenames path paths subdirectories subdirectory""".split()) | {
    "each line", "every line", "first line", "last line", "line by line"}  # not "line item"
# What else a one-line shell request is about: the machine's own state. Only in a short task
# ("Print the number of CPUs available"); a long one that opens with "Show" is something else.
_SYSTEM_OBJECTS = frozenset([
    "pid", "pids", "cpu", "cpus", "cpu cores", "hostname", "uptime", "utc", "timezone", "symlink",
    "symlinks", "inode", "inodes", "syslog", "daemon", "daemons", "checksum", "eth0", "localhost",
    "running processes", "all processes", "processes named", "process id", "which process",
    "using port", "on port", "logged in", "currently logged", "ip address", "network interface",
    "network interfaces", "tcp port", "udp port", "listening on", "current user",
    "environment variable", "environment variables", "current date", "current time",
    "date and time", "today s date", "yesterday s date", "tomorrow s date", "unix timestamp",
    "epoch time", "bash history", "command history", "shell history", "running services",
    "installed packages", "kernel version", "disk usage", "disk space", "free memory",
    "memory usage", "cpu usage", "open files", "mounted", "standard input", "standard output",
    "standard error", "stdin", "stdout", "stderr", "newline", "commands in history",
    "print history", "search history", "show history", "calendar", "epoch", "host name", "euid",
    "group names", "line endings", "nameserver", "ownership", "symbolic link", "symbolic links",
    "clipboard", "alias", "aliases", "shell", "processes", "full login", "login shell",
    "login name", "login time", "globbing", "wildcard expansion", "history entry", "kernel name",
    "kernel release", "current kernel", "machine architecture", "operating system", "variable",
    "shell option", "shell function", "shell variable", "array member", "ping", "background job",
    "foreground", "ipv4 address", "ipv6 address", "reverse lookup", "primary group", "time string",
    "tty", "dirs stack", "directory stack", "pseudo-terminal", "pseudo terminal", "mount points",
    "mounts", "to user", "switch user", "permissions", "jobs running", "file name", "file names",
    "numbers from", "exit code", "process tree", "processors", "last boot", "output of history",
    "elapsed time", "random number", "random line", "software repositories", "ns servers", "man page",
    "man pages", "manual page", "manual pages",
    "process ids", "built-in", "current job", "child process", "child processes",
    "positional parameters", "system date", "logged on", "terminal screen", "in-memory history",
    "hardware platform", "mimetype", "mime type", "fingerprint", "http", "https", "boot time",
    "help message", "used commands", "space separated", "space-separated", "whitespace separated",
    "whitespace-separated", "white space separated", "or more whitespace", "background jobs",
    "active jobs", "running jobs", "all jobs", "of jobs", "group leader", "root access",
    "root user", "readline", "keybindings", "key bindings", "logfile", "commands used",
    "previous command", "command in history", "dot-separated", "colon-separated",
    "slash-separated", "separated field", "users currently", "each command", "history expansion",
    "every second", "owner and group", "user interaction", "date of yesterday", "for tomorrow",
    "day ago", "a current month", "days from now", "two dates", "what year it was", "day name",
    "timestamp as", "of the archive", "an archive using", "an archive and", "an archive excluding",
    "compress program", "access log", "access logs", "error log", "log file", "log files",
    "as user", "as root", "variables", "empty environment"])
_SHELL_TASK_MAX = 200  # characters
# "Make" asks a shell for a thing made ("Make a directory", "make all .sh files executable",
# "Make the script deploy.sh executable"); "Make the HTTP calls concurrent" and "Make our library
# accept paths" ask for a change to a program.
_MADE_BY_COMMAND = (b"a ", b"an ", b"all ", b"new ", b"directory", b"directories", b"dir ",
                    b"the directory", b"the directories", b"the file", b"the script", b"every ",
                    b"each ", b"symbolic", b"executable", b"copies")
# Verbs a shell command and a change to a program share ("Replace foo with bar in all .txt files",
# "Make the embedded web server handle two clients at once"): with them a machine's object (a
# server, a CPU) makes no one-liner of a text a trade already has words for.
_CHANGE_VERBS = frozenset((b"make", b"replace", b"change", b"update", b"add", b"set", b"convert"))
_COMMAND_LINE_MAX = 400  # a one-liner is short: the longest nl2bash request is ~300 characters
# A glob over files of a kind ("*.sh", "*.txt"), the way a shell names them.
_GLOB = re.compile(rb"\*\.[a-z0-9]")
# A file no trade owns, as a command's argument ("YourFile.txt", "backup.tar.gz", "song.mp3");
# "history.json" with matplotlib is a plot. Starts with the literal ".", so re jumps from one dot
# to the next.
_PLAIN_FILE = re.compile(rb"\.(?<=[\w-]\.)(?:txt|text|log|logs|dat|out|tmp|bak|old|orig|gz|tgz|zip|"
                         rb"tar|bz2|xz|7z|rar|iso|img|bin|deb|rpm|pdf|jpe?g|png|gif|bmp|tiff?|mp3|"
                         rb"mp4|avi|mkv|mov|wav|flac|ogg|doc|docx|odt)\b")
_GLOB_ARGUMENT = re.compile(rb"[\w.-]*\*[\w.*?\[\]-]*")
# ... and the kinds of file it looks for in a place: "list all CSS files under the current
# directory", "all C, C++, Header, JavaScript files in the folder /opt/src" (but "Remove unused
# imports from all Python files" is Python's).
_NAMED_FILE_ARGUMENT = re.compile(rb"[\w-]+\.(?<=\w\.)[a-z][a-z0-9]{0,4}\b")
_KIND = re.compile(rb"[\w+#/.-]+")


def _without_file_kinds(lower: bytes) -> bytes:
    """``lower`` with the kinds of file blanked out where a list of them names files: "all C, CPP,
    Header, JavaScript files", "php and js files", "php/javascript files". Walks back from each
    "file(s)" (a regex from every word cost ~20 us on a one-liner)."""
    out = lower
    at = lower.find(b" file")
    while at != -1:
        following = lower[at + 5:at + 6]
        if following == b"s":
            following = lower[at + 6:at + 7]
        if not following.isalnum():  # "file", "files"; not "filename", "filesystem"
            base = max(0, at - 80)
            words = lower[base:at].split(b" ")
            index, first = len(words) - 1, None
            while index >= 0 and words[index] and _KIND.fullmatch(words[index].rstrip(b",")):
                first = index
                if index >= 2 and words[index - 1] in (b"and", b"or"):
                    index -= 2
                elif index >= 1 and words[index - 1].endswith(b","):
                    index -= 1
                else:
                    break
            if first is not None:
                cut = base + len(b" ".join(words[:first])) + (1 if first else 0)
                out = out[:cut] + b" " * (at - cut) + out[at:]
        at = lower.find(b" file", at + 5)
    return out


_LISTING_VERBS = frozenset(b"""find finds list lists display displays show shows search searches
    locate locates count counts print prints get gets""".split())
_PRINTING_VERBS = frozenset(b"print prints display displays output outputs".split())
_SEARCHED_PLACE = re.compile(
    rb"\b(?:director(?:y|ies)|folders?|file ?system|recursively)\b|(?<![\w.])/\w")
# Code the asker has at hand is what "List all variables in this function" is about, not a shell,
# and so is a program's own machinery ("Remove the global variables from the module", "Add a context
# manager that changes the working directory"): nl2bash's one-liners never name them.
_CODE_AT_HAND = re.compile(
    rb"\b(?:(?:this|my|the following) (?:function|method|class|code|snippet|program)"
    rb"|(?<!kernel )(?<![/\w])module|method|methods|parser|loader|crawler|handler|decorator"
    rb"|context manager|unit tests?|logging|pydantic|dataclass(?:es)?"
    rb"|http client|endpoint|the program|the scheduler|linked list|walker)\b")
# A quoted command line, with a pipe, a redirection or a flag, or a quoted name the task calls a
# command: "Execute 'python -m unittest discover 2>&1 | pyrg' every second", 'Check if command
# "c++" and command "g++" are equal' are shell tasks whatever they run.
_QUOTED_COMMAND = re.compile(rb"""(['"])[^'"\n]*?(?: \|&? |2>&1| -{1,2}[a-z])[^'"\n]*\1"""
                             rb"""|\b(?:command|executable|variable) ['"]""")
# ... unless the ask is about what the quoted command reports: "Execute 'nvcc -O3 kernel.cu' and
# explain the register spill warnings" is CUDA's.
_ABOUT_ITS_OUTPUT = re.compile(rb"\b(?:fix|explain|why|debug|diagnose|warnings|failing|passes)\b")
# Someone an everyday ask is for, and a short clause saying what they do (see _person_clauses).
_PERSONS = (*b"someone somebody anyone".split(),
            *(b"a " + word for word in b"""person friend coworker co-worker colleague startup company
            firm programmer coder designer student gamer sysadmin""".split()),
            # an ask for someone named by their trade, whatever specialty or seniority comes
            # before it: "a desk for a developer who codes in Rust", "a job ad for a senior data
            # engineer who knows Spark and Airflow"
            b"engineer", b"developer", b"scientist", b"developers", b"programmers", b"engineers",
            *(b"my " + word for word in b"""friend brother sister mom mother dad father wife husband
            partner son daughter boss cousin uncle aunt grandma grandpa grandmother grandfather
            parents girlfriend boyfriend roommate neighbour neighbor niece nephew""".split()))
_PERSON_CLAUSE = re.compile(
    rb"(?:(?!(?:how|what|why|to|so|but|fix|debug|with)\b)[\w+#.-]+ ?){1,6}")


# The last word of each of _PERSONS: the word before a " who " is looked up here first (an
# ``endswith`` over all of _PERSONS cost ~0.5 us a place, and a 2 KB text has a dozen " that ").
_PERSON_LAST_WORDS = frozenset(person.rsplit(None, 1)[-1] for person in _PERSONS)

# A task that opens by clearing a part ("The Dockerfile is fine; the app inside crashes ...", "The
# SQL is fine; the bug is in our Python code") names that part to say the work is elsewhere: its
# words and its file are no evidence of the trade.
_CLEARED_PART = re.compile(rb"(?:the|our|my|this) ((?:[\w+#.'-]+ ){0,5}?[\w+#.'-]+) "
                           rb"(?:is|are|looks|seems) fine(?:[;,:]| but\b)")


def _person_ends_at(lower: bytes, at: int) -> bool:
    """Whether one of _PERSONS, as whole words, ends at ``at``."""
    start = lower.rfind(b" ", 0, at) + 1
    if lower[start:at] not in _PERSON_LAST_WORDS:
        return False
    for person in _PERSONS:
        start = at - len(person)
        if lower.endswith(person, 0, at) and (start == 0 or not (
                lower[start - 1:start].isalnum() or lower[start - 1:start] == b"_")):
            return True
    return False


def _person_clauses(lower: bytes) -> list[tuple[int, int]]:
    """Where the clauses are that say what the person an ask is for does ("someone who writes
    C++ ten hours a day"), as (start, end) in ``lower``. Looked for at each " who " and " that "
    (a regex over the text from every word cost ~25 us on 2 KB)."""
    spans = []
    for word in (b" who ", b" that "):
        at = lower.find(word)
        for _ in range(_MAX_PLACES):
            if at == -1:
                break
            if _person_ends_at(lower, at):
                clause = _PERSON_CLAUSE.match(lower, at + len(word))
                if clause:
                    spans.append(clause.span())
            at = lower.find(word, at + 1)
    return spans


# A fault in a team's own code, told in no language: "our script crashes when the input file is
# empty", "the records iterator never closes the file if the caller stops early". The generalist
# coder is the python specialist (the fleet has no other), and that is how the labelled tasks
# file them; without this a record's or a file's words decide ("csv", "rows", "export").
_CODE_PARTS = frozenset(b"""function functions method methods class dataclass dataclasses module
    script importer exporter loader parser validator iterator decorator helper wrapper serializer
    deserializer tests code generator generators handler handlers callback callbacks constructor
    regex calculator lookup""".split())
# Tests asked for a part of the team's code, told in no language: "Add a unit test for the function
# that parses the bucket name from an S3 URL". The test is code, the subject's words (an S3 URL, a
# load balancer's logs) only what that code handles.
_TESTED_PARTS = _CODE_PARTS - {b"tests", b"code"} | frozenset(b"""formatter formatters scheduler
    builder client reader writer converter""".split())
_CODE_FAULTS = frozenset(b"""crashes crash raises throws leaks leak loops loop memory exception
    traceback mutates compares imports hangs chokes breaks fails fail slow float floats integer
    integers rounds rounding locale encoding none twice duplicate duplicates ignores ignored
    silently wrong always never forever zero rejects""".split())
# A program of the team's own (a daemon, a server, a tool it wrote or ships; not a library, which
# is written in every language) meeting the operating system: systems programming, though an
# operator's words tell it ("our daemon should drop root privileges after binding port 443", "the
# proxy we run opens a connection per request and runs out of ephemeral ports"). Not "the
# service" alone: that is as often one an operator runs.
_OWN_PROGRAM = re.compile(
    rb" our (?:[a-z0-9_]+ ){0,2}?(?:daemon|server|service|tool|program|agent|proxy|firmware"
    rb"|engine) |(?: the| a) (?:[a-z0-9_]+ ){0,2}?(?:daemon|server|service|tool|program"
    rb"|agent|proxy|engine) we (?:ship|wrote|built|maintain|install|run|develop) | the (?:daemon"
    rb"|program) ")
_OS_WORDS = frozenset(b"""sockets socket descriptors descriptor fd fds pid privileges privilege root
    signal sighup sigterm mmap map atomic atomically fsync lock locks mutex child process processes
    epoll backlog ports port syscall syscalls symlinks symbolic hard links sparse inode inodes
    rename memory leak leaks heap stack kernel filesystem ephemeral connections bind binding ulimit
    mapped page cache""".split())
_OWN_WORK_MAX = 400  # characters: a report of a fault, not a log or a design document
# A part of the product misbehaving, told in its business's words: "The renewal job charges
# customers twice when it's restarted", "The booking service lets two people reserve the same
# seat". The subject (in the first words) is a part of the product, not an analyst's artefact (a
# report, a dashboard, an export: "The monthly revenue report counts VAT twice" is data's), and
# the sentence says what it does. Not a question, and not an analyst's imperative.
_PRODUCT_PARTS = frozenset(b"""app application service job system site checkout basket cart
    generator numbering renewal reminder booking subscription confirmation signup login account
    billing invoicing loyalty referral calculator worker scheduler importer integration backend
    api""".split())
_ANALYSTS_ARTEFACTS = frozenset(b"""report reports dashboard dashboards export exports query
    queries chart charts table tables count counts rate rates metric metrics kpi number numbers
    total totals figures notebook model forecast analysis""".split())
_PRODUCT_DOINGS = frozenset(b"""charges charge sends creates skips awards shows goes puts lets
    accepts rejects returns gives applies allows uses keeps deletes overwrites ignores doubles
    emails notifies bills refunds""".split())
_PRODUCT_SUBJECT_WORDS = 6
_ANALYSTS_ASKS = frozenset(b"""which what who how find compare list show count give tell rank plot
    chart calculate compute is are does do can should why""".split())
# The same fault found by the sentence's own shape where those lists end ("The basket forgets the
# discount when ...", "The stock level goes negative when ..."): the subject opens the sentence,
# its verb is the first word after it that ends in -s and is no noun, and the subject's last word
# (its head) is no analyst's artefact, no surface a visitor sees (web's), no machine (an
# operator's or a systems programmer's), no person. The business's records must be named
# somewhere, or "The cat keeps scratching the sofa" would be a fault in our code.
_SENTENCE_OPENERS = frozenset((b"the", b"our"))
_VERB_WITHIN = 9  # words: a subject is short
_ENDS_IN_S_NOT_A_VERB = frozenset(b"""is was has this its us always sometimes across plus status bus
    gas news series canvas atlas business analysis basis ios aws kubernetes postgres redis js css
    his hers yours ours theirs whereas perhaps afterwards towards less unless thus yes""".split())
_VERBS_NOT_ENDING_IN_S = frozenset(b"doesn won can cannot".split())
_PREPOSITIONS = frozenset(b"of in for on from with at by to per into about".split())
# "The product categories were renamed": a plural subject, its verb after it
_AFTER_A_PLURAL_SUBJECT = frozenset(
    b"are were have had do don will can should may would could".split())
# "The payments service charges ...": a plural noun naming the part that follows it
_PARTS_NAMED_BY_A_PLURAL = frozenset(
    b"service services job jobs app api endpoint system worker table tables".split())
# "Our startup needs a name": a wish, no fault
_WISHES = frozenset(b"needs wants likes hopes plans asks".split())
_SURFACES = frozenset(b"""shop storefront endpoint endpoints comment comments page pages screen
    screens button buttons form forms header footer modal modals tab tabs link links banner menu
    field fields input inputs widget widgets image images layout sidebar navbar popup tooltip
    dropdown carousel icon icons font fonts site website browser""".split())
_MACHINERY = frozenset(b"""program programs daemon server servers pod pods node nodes cluster
    container containers disk disks machine machines host hosts vm vms instance instances database
    databases db backup backups pipeline pipelines build builds deploy deploys runner runners gpu
    gpus card cards cpu network certificate dns""".split())
_PEOPLE = frozenset(b"""team teams customer customers user users manager managers people person
    staff boss client clients company everyone nobody someone we i they he she it you engineers
    developers analysts finance marketing sales support ops admin admins""".split())
_ANALYSTS_OUTPUTS = _ANALYSTS_ARTEFACTS | frozenset(
    b"kpis models forecasts notebooks spreadsheet sheet deck".split())
_NOT_THE_PRODUCTS_PART = _ANALYSTS_OUTPUTS | _SURFACES | _MACHINERY | _PEOPLE
_ADVERBS = frozenset(b"""still now sometimes always never often occasionally randomly suddenly
    also just only already then""".split())
# Trades that may already lead on words when the rules above weigh in: records' and files' words
# (data's) beside a fault in code; those and the cloud's (devops') beside tests of our code; an
# operator's words (devops') beside a program's own.
_CODE_FAULT_RIVALS = frozenset(("python", "data"))
_TESTED_CODE_RIVALS = frozenset(("python", "data", "devops"))
_OWN_PROGRAM_RIVALS = frozenset(("systems", "devops"))


# A datastore run as a service, nothing asked of what is in it: its replicas, failovers, upgrades,
# backups, nodes, memory and connections are an operator's ("the MySQL replica stopped
# replicating", "upgrade the Redis cluster from 6 to 7"), though its name is the data trade's word.
# A word about its contents (a query, rows, a table, a report) leaves the task to the words.
_DATASTORES = frozenset(b"""postgres postgresql mysql mariadb redis kafka rabbitmq mongodb mongo
    elasticsearch opensearch clickhouse cassandra memcached etcd zookeeper nats pulsar sqs pgbouncer
    database databases db broker brokers replica replicas""".split())
_STORE_OPERATIONS = frozenset(b"""replica replicas replication replicating failover failed primary
    standby upgrade upgrading backup backups restore snapshot snapshots node nodes cluster heap disk
    disks autovacuum vacuum wal tls certificate certificates passwords password credentials pool
    connections max_connections lag lags partitions consumers rebalance dead letter memory cpu hosts
    host downtime restart restarts watermark quorum shard shards""".split())
_STORE_CONTENTS = frozenset(b"""query queries select join joins rows row columns column report
    reports dashboard aggregate compute average sum count total per which who schema model table
    tables index indexes insert inserts""".split())
_STORE_RIVALS = frozenset(("data", "devops"))


def _tells_a_product_fault(words: list[bytes]) -> bool:
    """The second shape of a product's fault (see _SENTENCE_OPENERS): a subject of the product's
    own, then its doing. No parser: the verb is known by its -s and its neighbours."""
    if not words or words[0] not in _SENTENCE_OPENERS:
        return False
    for at in range(2, min(len(words) - 1, _VERB_WITHIN)):
        word, before, after = words[at], words[at - 1], words[at + 1]
        if word in (b"s", b"t"):  # the customer's, doesn't
            continue
        if not (word in _VERBS_NOT_ENDING_IN_S or len(word) > 3 and word.endswith(b"s")
                and not word.endswith((b"ss", b"us", b"is")) and word not in _ENDS_IN_S_NOT_A_VERB):
            continue
        if (before in _PREPOSITIONS or before == b"s" or word in _BUSINESS_RECORDS
                or word in _NOT_THE_PRODUCTS_PART or after in _AFTER_A_PLURAL_SUBJECT
                or after in _PARTS_NAMED_BY_A_PLURAL):
            continue  # a noun: "the share of orders", "the service's goroutines", "orders were"
        if word in _WISHES:
            return False
        head = at - 1
        while head > 1 and words[head] in _ADVERBS:
            head -= 1
        subject = set(words[1:at])
        return (words[head] not in _NOT_THE_PRODUCTS_PART and not subject & (_SURFACES | _MACHINERY)
                and not _BUSINESS_RECORDS.isdisjoint(words))
    return False


def _own_work(separated: bytes, evidence: list[Evidence], lexicon: Lexicon,
              asks: bool) -> Evidence | None:
    """Evidence for the trade a shape of the team's own work names in another trade's words: a
    daemon's or a server's dealings with the OS (systems), a fault in a script or a function or
    tests asked for one (python), a datastore operated (devops). Each only when no trade but those
    at its seam already has its case (min_score); the daemon and the tests not when an operator's
    tool is named outright (a weight-3 devops word: "unit file", "systemd", "terraform"), and no
    fault in code that is asked for."""
    totals: dict[str, float] = {}
    asks_for_code = names_operators_tool = tests_asked = False
    for item in evidence:
        totals[item.domain] = totals.get(item.domain, 0.0) + item.weight
        tests_asked = tests_asked or (item.kind == "deliverable" and item.match == "test")
        # "Write a function to ...": code asked for, the base model's, not a fault in code of ours
        asks_for_code = asks_for_code or (item.kind == "deliverable" and item.weight < 0)
        names_operators_tool = names_operators_tool or (item.domain == "devops" and item.weight >= 3)
    led = {domain for domain, total in totals.items() if total >= lexicon.min_score}
    own_program, code_fault, store = (led <= _OWN_PROGRAM_RIVALS, led <= _CODE_FAULT_RIVALS,
                                      led <= _STORE_RIVALS)
    tested_code = tests_asked and led <= _TESTED_CODE_RIVALS and not names_operators_tool
    if not (own_program or code_fault or store or tested_code):
        return None
    tokens = separated.split()
    words = set(tokens)
    if tested_code and words & _TESTED_PARTS:
        return Evidence(1, "python", "tested_code", "tests for our code, no language named",
                        lexicon.tested_code_weight)
    if not asks_for_code:
        if (own_program and not names_operators_tool and words & _OS_WORDS
                and _OWN_PROGRAM.search(separated)):
            return Evidence(1, "systems", "own_program", "a program of ours meets the OS",
                            lexicon.own_program_weight)
        if code_fault and words & _CODE_PARTS and words & _CODE_FAULTS:
            return Evidence(1, "python", "code_fault", "a fault in our code, no language named",
                            lexicon.code_fault_weight)
        if code_fault and not asks:
            subject = set(tokens[:_PRODUCT_SUBJECT_WORDS])
            if ((words & _PRODUCT_DOINGS and subject & _PRODUCT_PARTS
                 and not subject & _ANALYSTS_ARTEFACTS) or _tells_a_product_fault(tokens)):
                return Evidence(1, "python", "code_fault", "a part of our product misbehaves",
                                lexicon.code_fault_weight)
    if store and words & _DATASTORES and words & _STORE_OPERATIONS and not words & _STORE_CONTENTS:
        return Evidence(1, "devops", "operated_store", "a datastore operated, not its contents",
                        lexicon.operated_store_weight)
    return None


# What a business keeps records of, and the words of a question about them.
_BUSINESS_RECORDS = frozenset(b"""customers clients users employees staff students teachers patients
    doctors products items orders invoices payments transactions purchases sales deals salespeople
    stores branches shops suppliers vendors accounts subscribers members visitors sessions
    shipments deliveries flights passengers bookings reservations tickets complaints reviews
    ratings campaigns drivers riders couriers trips rentals loans claims policies receipts
    customer client employee student patient product invoice payment transaction purchase
    store supplier subscriber visitor shipment flight booking complaint campaign authors author
    books grades warehouses parcels calls tenants shoppers contracts leads applicants candidates
    donors donations guests listings properties vehicles appointments visits viewers listeners
    players readers""".split())
_ANALYSIS_WORDS = frozenset(b"""which who whose per each most least top average total number rank
    share trend never median busiest common compare summarise summarize breakdown between growth
    highest lowest fewest cumulative percentage ratio missing many every differ""".split())
# A record's noun in a program's sense, known by the words beside it: "listeners left behind on
# destroyed elements" (an event's), "the thread that calls it" (a program's calls). A client beside
# a server, a connection's other end, needs no entry: a server is one of _PROGRAM_WORDS.
_TECHNICAL_SENSES = {
    b"listeners": frozenset((
        b"event", b"events", b"element", b"elements", b"dom", b"handler", b"handlers")),
    b"calls": frozenset((
        b"thread", b"threads", b"function", b"functions", b"method", b"methods", b"logger",
        b"library", b"api", b"syscall", b"stack")),
    # "our http client leaks connections": a program's client, not a customer
    b"client": frozenset((b"http", b"api", b"sdk", b"grpc", b"websocket", b"connection",
                          b"connections", b"request", b"requests", b"responses")),
    # a repository's branches, not a bank's or a shop's: "this step never runs on tags"
    b"branches": frozenset((b"git", b"main", b"master", b"tags", b"tag", b"merge", b"push",
                            b"pull", b"commit", b"commits", b"ci", b"pipeline", b"workflow",
                            b"release", b"feature", b"rebase")),
}
# A text about a team's programs and machines reports a fault or a chore, not an analyst's question:
# "secrets for the payment provider are copied by hand onto each machine", "the script prints a
# stack trace to users when the input file is missing".
_PROGRAM_WORDS = frozenset(b"""machine machines server servers secrets credentials script scripts
    program app code function error errors crash crashes exception traceback stack bug page
    button form file class classes method methods module modules library api generator
    functions test tests mock mocks interface endpoint webhook environment environments sandbox
    sandboxes instance instances deploy deployment provider providers timeout timeouts logs gateway
    gateways connections""".split())
# "each other" and a number that is not a count ("the number in the address bar") ask nothing
_NOT_ANALYSIS = re.compile(rb" each other\b| number(?! of\b)")
_FIRST_PERSON = frozenset((b"i", b"my", b"me"))
_ARGUMENT_NOUNS = (b"character", b"byte", b"variable", b"command", b"content")


def _quotes_arguments(lower: bytes) -> bool:
    """Quoted literals as a command line has them: two ("Copy 'src' to 'dest'"), one that is no
    plain word ('domains.txt', "ip_addresses"), or one the task calls a command, a variable, its
    characters or bytes. One plain word alone is as likely a word: "Count the syllables in
    'extraordinary'"."""
    quoted = _quoted(lower)
    return bool(quoted) and (
        len(quoted) > 1 or not quoted[0].replace(b" ", b"").isalpha()
        or any(noun in lower for noun in _ARGUMENT_NOUNS))
# An everyday word right before one of these names what a product is about, not the ask: "a
# recipe app", "the wedding website", "the songs table", "a cover letter generator".
_PRODUCT_NOUNS = frozenset(b"""app apps application website site page pages api service table tables
database db bot component platform tracker schema model dashboard form feature endpoint screen
widget plugin extension backend frontend generator recommender booking catalog planner calculator
scheduler dataset system""".split())
_C_SIGNATURE = re.compile(
    r"\n(?:(?:static|inline|extern|const|unsigned|signed)\s+)*"
    r"(?:struct\s+\w+|void|int|char|double|float|long|short|unsigned|signed|size_t|bool|u?int\d+_t)"
    r"\b(?:\s+(?:int|long|char|const))*[\s*]*\w+\s*\([^)\n]*\)\s*\{")
# Code shapes that name a language: (domain, literal, pattern matched AT the literal). Anchoring
# every pattern at a literal found with str.find keeps a 2 KB task from costing a regex scan per
# pattern.
_SWIFT_MODULES = ("Foundation", "UIKit", "SwiftUI", "AppKit", "XCTest", "Combine")
_CODE_SHAPES: list[tuple[str, str, str | None, re.Pattern[str] | None]] = [
    # (domain, literal, a token the literal implies (checked first, in O(1)), pattern)
    ("cuda", "__global__", "__global__", None),
    ("cuda", "<<<", None, re.compile(r"<<<[^>\n]*>>>")),
    ("cuda", "threadIdx.", "threadidx", None),
    ("web", "function", "function", re.compile(r"function\s+\w+\s*\([^)\n]*\)\s*(:\s*[^{\n]+)?\{")),
    ("web", "=>", None, re.compile(r"=>\s*\{")),
    ("web", ".then(", "then", None),  # a promise's callback
    ("web", "<?php", "php", None),  # PHP is the web's (the SQL it runs is the page's)
    # HTML's (and JSX's) elements
    *[("web", f"<{tag}", tag, re.compile(f"<{tag}[\\s>]"))
      for tag in ("form", "div", "button", "input", "span")],
    # strict (in)equality is JavaScript's (or PHP's); a Markdown underline ends its line
    ("web", "===", None, re.compile(r"(?<![=!<>])===(?!=)(?![ \t]*(\n|$))")),
    ("web", "!==", None, re.compile(r"!==(?!=)(?![ \t]*(\n|$))")),
    ("web", "const ", "const", re.compile(r"const\s+\w+\s*=\s*(\(|async\b|function\b)")),
    ("systems", "#include", "#include", re.compile(r"#include\s*[<\"]")),
    ("systems", "std::", "std", re.compile(r"std::\w")),
    ("systems", "int main", "main", re.compile(r"int\s+main\s*\(")),
    ("systems", "fn ", "fn", re.compile(r"fn\s+\w+\s*\([^)\n]*\)\s*(->|\{)")),
    # Rust's macros called by name: println!("..."), vec![...]
    ("systems", "println!(", "println", None),
    ("systems", "vec![", "vec", None),
    # a C function definition at the start of a line (Java and C# methods sit in a class, Go
    # and Rust say func/fn); each leading word is its own literal
    *[("systems", f"\n{word} ", word, _C_SIGNATURE) for word in (
        "void", "int", "char", "double", "float", "long", "short", "unsigned", "signed",
        "static", "const", "struct", "size_t", "bool", "inline", "extern")],
    # the colon must end the line: Scala's `def f(n : Long) : Long = {` is not Python (a
    # signature is looked for in the next 400 characters: to the end of a 2 KB line cost ~30 us
    # a place)
    ("python", "def ", "def", re.compile(
        r"(?<![^\n\s])def\s+\w+\s*\([^\n]{0,400}\)\s*(->[^\n:]+)?:[ \t]*(#[^\n]*)?(\n|$)")),
    # at the start of a line: the literal includes the newline (the text is searched with one
    # before it), so "from" in prose costs no regex at all
    ("python", "\nimport ", "import", re.compile(
        r"\nimport\s+(?!(?:%s)\b)[\w.]+(\s+as\s+\w+)?[ \t]*(\n|$)" % "|".join(_SWIFT_MODULES))),
    ("python", "\nfrom ", "from", re.compile(r"\nfrom\s+[\w.]+\s+import\s")),
    # a loop header ending in a colon over an indented body, and a file opened in a with
    # statement: Python's ("for (int i = 0; ...) {" and "for x in xs do" are not)
    ("python", "\nfor ", "for", re.compile(
        r"\nfor\s+\w+(?:\s*,\s*\w+)*\s+in\s+[^\n]+:[ \t]*(#[^\n]*)?\n[ \t]+\S")),
    ("python", "\nwhile ", "while", re.compile(r"\nwhile\s+[^\n]+:[ \t]*(#[^\n]*)?\n[ \t]+\S")),
    ("python", "with open(", "open", re.compile(r"with open\([^\n]*\)\s+as\s+\w+\s*:")),
    ("python", "`from ", "from", re.compile(r"`from\s+[\w.]+\s+import\s+(\*|\w)")),  # inline code
    # a test written as Python's assert statement (Java's ends with ";", C's assert is a call)
    ("python", "assert ", "assert", re.compile(r"assert\s+\w+\([^\n;]*\)\s*==\s*[^=\n;]+(\n|$)")),
    ("data", "select ", "select", re.compile(r"select\s+[\w*,. ()]+?\s+from\s+\w", re.I)),
    ("data", "SELECT ", "select", re.compile(r"SELECT\s+[\w*,. ()]+?\s+FROM\s+\w")),
    ("data", "pd.", "pd", re.compile(r"pd\.(DataFrame|Series|read_\w+|concat|merge|to_datetime)\(")),
    # SQL clauses in capitals, as people write SQL in prose: "WHERE tenant_id = ?"
    ("data", "WHERE ", "where", re.compile(
        r"WHERE\s+\w+(\.\w+)?\s*(=|<>|!=|>=|<=|>|<|IN\b|LIKE\b|IS\b|BETWEEN\b)")),
    ("data", "GROUP BY ", "group", None),
    ("data", "COUNT(", "count", re.compile(r"COUNT\((DISTINCT\s+)?[\w.*]+\)")),
    ("data", "ORDER BY ", "order", re.compile(r"ORDER BY\s+\w+(\.\w+)?(\s+(ASC|DESC)\b|\s*,|\s*;|\s*$)")),
    ("devops", "#!", None, re.compile(r"#!\s*/(usr/)?bin/(env\s+)?(ba|z)?sh")),
    # a Terraform resource block
    ("devops", "resource \"", "resource", re.compile(r'resource\s+"\w+"\s+"[\w-]+"\s*\{')),
    # languages no specialist serves: Go and Swift (func), Kotlin (fun), Java and C# methods,
    # Ruby (a def with no colon), Scala (def ...: T =), Julia (typed arguments), Perl subs, Lua
    (UNSERVED, "func ", "func", re.compile(r"func\s+(\(\w+\s+\*?\w+\)\s*)?\w+\s*\([^)\n]*\)")),
    (UNSERVED, "fun ", "fun", re.compile(r"fun\s+\w+\s*\([^)\n]*\)\s*(:\s*[\w<>?]+\s*)?[{=]")),
    *[(UNSERVED, f"{word} ", word, re.compile(
        word + r"\s+(static\s+)?(final\s+)?[\w<>\[\],]+\s+\w+\s*\([^)\n]*\)\s*(throws\s+[\w, ]+)?\{"))
      for word in ("public", "private", "protected")],
    (UNSERVED, "def ", "def", re.compile(r"(?<![^\n\s])def\s+\w+[?!]?(\([^)\n]*\))?[ \t]*(\n|$)")),
    (UNSERVED, "def ", "def", re.compile(
        r"def\s+\w+\s*(\[[^\]\n]*\])?\([^)\n]*\)[ \t]*:[ \t]*[\w\[\], ]+[ \t]*=")),
    (UNSERVED, "function ", "function", re.compile(r"function\s+\w+\s*\([^)\n]*::")),  # Julia
    (UNSERVED, "sub ", "sub", re.compile(r"sub\s+\w+\s*\{")),
    # Swift imports its frameworks the way Python imports a module
    (UNSERVED, "\nimport ", "import", re.compile(r"\nimport\s+(?:%s)[ \t]*(\n|$)" % "|".join(_SWIFT_MODULES))),
    (UNSERVED, "local function", "local", re.compile(r"local function\s+\w+\s*\(")),
    # Go's channels and its fmt package
    (UNSERVED, "make(chan ", "make", None),
    (UNSERVED, "fmt.Print", "fmt", re.compile(r"fmt\.Print(ln|f)?\(")),
]
# A Dockerfile's first lines: a FROM line, then one of its instructions within a few lines.
_DOCKERFILE = re.compile(r"\nFROM\s+[\w.:/@${}-]+(?:\s+AS\s+\w+)?[ \t]*\n(?:[^\n]*\n){0,8}?[ \t]*"
                         r"(?:RUN|COPY|ADD|CMD|ENTRYPOINT|WORKDIR|ENV|ARG|EXPOSE|USER)\s")
# A fenced block's language tag ("```hcl") names its language as a file's extension does: the
# tag is looked up as that file in the lexicon's [*.files] (so "```go" is no served trade's).
_FENCE_TAG = re.compile(rb"```[ \t]*([\w+#-]+)")
_FENCE_FILES = {tag.encode(): name for name, tags in {
    ".py": "python py python3 py3 pycon ipython", ".c": "c", ".h": "h",
    ".cpp": "cpp c++ cc cxx hpp", ".cu": "cuda cu", ".rs": "rust rs", ".zig": "zig",
    ".go": "go golang", ".java": "java", ".kt": "kotlin kt", ".swift": "swift",
    ".cs": "csharp cs c#", ".rb": "ruby rb", ".scala": "scala", ".lua": "lua", ".jl": "julia jl",
    ".js": "js javascript mjs node", ".jsx": "jsx", ".ts": "ts typescript", ".tsx": "tsx",
    ".html": "html", ".vue": "vue", ".svelte": "svelte", ".css": "css", ".scss": "scss",
    ".sass": "sass", ".less": "less", ".php": "php",
    ".sql": "sql postgresql postgres psql mysql sqlite plpgsql",
    ".sh": "bash sh shell zsh console shell-session", ".ps1": "powershell ps1 pwsh",
    ".tf": "hcl terraform tf", "dockerfile": "dockerfile docker", ".yaml": "yaml yml",
    "makefile": "makefile make", ".cmake": "cmake", ".md": "markdown md", ".rst": "rst",
}.items() for tag in tags.split()}
# "AUC dropped from 0.82 to 0.71", "rose from 300 ms to 450 ms": a change measured (no labelled
# word problem says one; a problem asks a quantity of it: "by what percent", "find the rate")
_CHANGE_REPORT = re.compile(
    rb"\b(?:rose|risen|dropped|fell|fallen|jumped|increased|decreased|grew|grown|climbed|spiked"
    rb"|went up|went down|went|doubled|regressed|slowed|improved|degraded) from \S*[0-9]\S*"
    rb"(?: [a-z%]+)? to \S*[0-9]")
_CALCULATION_ASKED = re.compile(
    rb"\b(?:calculate|compute|work out|determine|find the (?:[a-z]+ )?(?:rate|percent|percentage"
    rb"|total|average|number|amount|value|ratio|difference|increase|decrease|growth|change))\b")
# "calculate the ...", "find how ...": matched at each occurrence of the verb.
_IMPERATIVE = {verb: re.compile(verb + rb"\s+(the|how|what|her|his|their|its)\b")
               for verb in (b"calculate", b"find", b"determine", b"compute", b"work out")}
# "the orders table": a table named by a plural noun is a database's ("times table" is not)
_NAMED_TABLE = re.compile(rb"s(?<=[a-z]s) tables?\b")  # literal first: see _SINGLE_QUOTED
_NOT_TABLE_NAMES = frozenset(b"times its this has was is as us yes plus".split())
# "the concert_singer database", "the world_1 SQLite database": a database named by its schema's
# identifier is one to query (the word "database" alone is more often operations')
_NAMED_DATABASE = re.compile(rb"\b[a-z][a-z0-9]*_[a-z0-9_]+ (?:sqlite )?database\b")
_HOOK_NAME = re.compile(r"use(?<!\wuse)[A-Z][a-z]")  # literal first: see _SINGLE_QUOTED
_POWER = re.compile(r"(?<=[A-Za-z0-9)])\^\s*-?[0-9a-z(]")
# |x - 3|: the absolute value of a linear term, matched at each "|"
_ABSOLUTE_VALUE = re.compile(r"\|\s*-?\d*[a-z]\s*[-+]\s*\d+(\.\d+)?\s*\|")
# "f(x) = x^2", "h(k) = k mod m": a one-letter function of one-letter variables, defined;
# matched at each "(" (see _defines_function)
_FUNCTION_ARGUMENTS = re.compile(r"\(\s*[a-z](\s*,\s*[a-z])*\s*\)\s*=(?!=)")


def _defines_function(text: str) -> bool:
    at = text.find("(")
    tries = _MAX_PLACES
    while at != -1 and tries:
        if at >= 1 and text[at - 1].isalpha() and (at < 2 or not (text[at - 2].isalnum()
                                                                   or text[at - 2] in "_.")):
            if _FUNCTION_ARGUMENTS.match(text, at):
                return True
            tries -= 1
        at = text.find("(", at + 1)
    return False


# "3x + 7 = 2x - 5": a coefficient written against its variable (x, y, z or n: "30s", "7b" and
# "4k" are units), found as a token of the separated text, then checked in the text itself for
# an operator after it ("2x faster" is not algebra)
_COEFFICIENT = re.compile(rb" \d+[xyzn] ")
_COEFFICIENT_TERM = re.compile(rb"\d+[xyzn]\s*[-+=*/)]")


# "x + y = 10", "a - 2b = 4": one-letter variables combined and equated to a number; searched only
# around each "=" (a scan of the whole text for it would start at every letter)
_LETTER_EQUATION = re.compile(r"(?<![\w.])[a-z]\s*[-+]\s*\d*[a-z](?![\w.(])\s*=\s*-?\d+(?![\w.])")


def _has_letter_equation(text: str) -> bool:
    at = text.find("=")
    for _ in range(_MAX_PLACES):
        if at == -1:
            break
        if _LETTER_EQUATION.search(text, max(0, at - 16), at + 12):
            return True
        at = text.find("=", at + 1)
    return False


def _has_coefficient_term(lower: bytes, separated: bytes) -> bool:
    """Checked at each place a coefficient token occurs: a regex that scanned the whole text
    for it (with a look-behind) took 38 us over 2 KB."""
    zeroed = separated.translate(_DIGITS_AS_ZERO)
    if not (b"0x " in zeroed or b"0y " in zeroed or b"0z " in zeroed or b"0n " in zeroed):
        return False  # the common case, without a regex that tries every space
    for term in {token.strip() for token in _COEFFICIENT.findall(separated)}:
        at = lower.find(term)
        while at != -1:
            before = lower[at - 1:at]
            if not (before.isalnum() or before in (b"_", b".")) and _COEFFICIENT_TERM.match(lower, at):
                return True
            at = lower.find(term, at + 1)
    return False


# Shapes with no word to gate them are gated by their punctuation, kept apart in one pass.
_PUNCTUATION_SHAPES = [(i, needle.encode()) for i, (_, needle, token, _) in enumerate(_CODE_SHAPES)
                       if not token]
_MARK_CHARS = b"<=>#!^|.`"
_NOT_MARKS = bytes(b for b in range(256) if b not in _MARK_CHARS)
# Words the scan reports besides keywords: each gates a check that would otherwise cost a pass
# over the text. A word may carry several marks ("double" is a C type and a number word); a code
# word's mark is the index of the code shape it gates.
_NUMBER = "#"
_DELIVERABLE = "deliverable"
_URL = "url"
_PERSON_WORD = "person"
_PERSON_WORDS = """someone somebody anyone person friend coworker worker colleague startup company
    firm brother sister mom mother dad father wife husband partner son daughter boss cousin uncle
    aunt grandma grandpa grandmother grandfather parents girlfriend boyfriend roommate neighbour
    neighbor niece nephew developer developers programmer programmers coder designer student gamer
    sysadmin engineer engineers scientist""".split()
_FLAG_TOKENS: list[tuple[str, Any]] = (
    [(token, i) for i, (_, _, token, _) in enumerate(_CODE_SHAPES) if token]
    + [(token, "file_object") for token in _FILE_OBJECTS]
    + [(token, _NUMBER) for token in _NUMBER_WORDS]
    + [("how", b"how "), ("what", b"what "), ("in dollars", b"in dollars")]
    + [("table", "table"), ("tables", "table"), ("http", _URL), ("https", _URL), ("ftp", _URL)]
    + [(verb.decode(), verb) for verb in _IMPERATIVE]
    # a person's clause is looked for only where a person is followed by one (a 2 KB text says
    # "developers" and "that" often enough)
    + [(f"{word} {linker}", _PERSON_WORD) for word in _PERSON_WORDS for linker in ("who", "that")])
# The end of a token with a CSS length ("600px", "1.5rem"): found by the same scan, as a search
# of its own cost ~3 us on 2 KB. Not space-led: they end a token, whatever digits lead it.
_CSS_LENGTH = "css length"
# A word starting "column" or "series": where a column may be named by an identifier.
_COLUMN_WORD = "column word"
_CSS_NEEDLES = [f"{digit}{unit} " for digit in "0123456789" for unit in ("px", "rem")]


# The decision's parts are slotted dataclasses, not pydantic models: routing builds several of
# them per task and must stay within microseconds. A keyword's
# Evidence is built once, with the lexicon, and shared by every task that matches it: read it,
# never change it (not frozen only because a frozen dataclass takes 4x as long to build: 0.6 us).


@dataclass(slots=True)
class Evidence:
    tier: int
    domain: str  # a domain key; "null": a non-technical task; "unserved": a language no specialist serves
    kind: str    # keyword | deliverable | code | notation | word_problem | shell_task |
    #              analysis_question | code_fault | tested_code | own_program | operated_store |
    #              file | file_word | text_file | shared_language | source_language | embedding
    match: str
    weight: float


@dataclass(slots=True)
class Extraction:
    """What the tiers found: every domain's evidence, and the domains that count."""

    scores: dict[str, float] = field(default_factory=dict)
    null_score: float = 0.0
    unserved_score: float = 0.0
    domains: list[str] = field(default_factory=list)
    tier: int | None = None  # the highest tier that decided the domains
    evidence: list[Evidence] = field(default_factory=list)
    similarities: dict[str, float] | None = None
    # tier 3's models one by one, when it has several: {"sentence": {...}, "words": {...}}
    model_similarities: dict[str, dict[str, float]] | None = None
    non_technical: bool = False
    unserved: bool = False  # in a language no specialist serves (and no served domain won)


class Task(BaseModel):
    id: str | None = None
    objective: str
    context_refs: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Lexicon


class Lexicon:
    """``router.toml`` compiled for lookups that cost a few microseconds per task."""

    def __init__(self, data: dict[str, Any]):
        settings = data.get("settings", {})
        self.min_score = float(settings.get("min_score", 2.0))
        self.secondary_ratio = float(settings.get("secondary_ratio", 0.75))
        self.text_file_factor = float(settings.get("text_file_factor", 0.8))
        self.null_margin = float(settings.get("null_margin", 1.0))
        self.word_problem_weight = float(settings.get("word_problem_weight", 3.5))
        self.word_problem_strong_weight = float(settings.get("word_problem_strong_weight", 7.0))
        self.analysis_question_weight = float(settings.get("analysis_question_weight", 2.0))
        self.code_fault_weight = float(settings.get("code_fault_weight", 2.5))
        self.tested_code_weight = float(settings.get("tested_code_weight", 4.0))
        self.own_program_weight = float(settings.get("own_program_weight", 2.0))
        self.operated_store_weight = float(settings.get("operated_store_weight", 2.5))
        self.code_shape_weight = float(settings.get("code_shape_weight", 4.0))
        self.shell_task_weight = float(settings.get("shell_task_weight", 2.0))
        self.named_column_weight = float(settings.get("named_column_weight", 2.0))
        self.css_length_weight = float(settings.get("css_length_weight", 2.0))
        self.hook_name_weight = float(settings.get("hook_name_weight", 2.5))
        self.named_table_weight = float(settings.get("named_table_weight", 1.5))
        self.documents_only_weight = float(settings.get("documents_only_weight", 9.0))
        self.file_word_factor = float(settings.get("file_word_factor", 0.5))
        # ".py" names only a language that other trades write too (data's Python)
        self.shared_extensions: dict[str, tuple[str, ...]] = {
            extension.lower(): tuple(domains)
            for extension, domains in settings.get("shared_extensions", {}).items()}
        # Source code in a language, and the languages each trade writes besides its own files'
        self.source_files = frozenset(kind.lower() for kind in settings.get("source_files", ()))
        self._also_writes = {domain: frozenset(extension.lower() for extension in extensions)
                             for domain, extensions in settings.get("writes", {}).items()}
        for domain, extensions in self._also_writes.items():
            if domain not in DOMAINS:
                raise ValueError(f"settings.writes: unknown domain {domain!r}; known: "
                                 f"{', '.join(DOMAINS)}")
            unknown = extensions - self.source_files - {"*"}
            if unknown:
                raise ValueError(f"settings.writes.{domain}: {', '.join(sorted(unknown))} not in "
                                 f"settings.source_files")
        # "Write [a README] for the Helm chart": the opening verbs whose object names the
        # deliverable, and the verbs that name it themselves ("Document the payloads")
        self.deliverable_verbs = frozenset(verb.lower().encode()
                                           for verb in settings.get("deliverable_verbs", ()))
        implied = {verb.lower().encode(): noun.lower()
                   for verb, noun in settings.get("implied_deliverables", {}).items()}
        self.deliverable_verbs |= implied.keys()
        self.deliverables: dict[bytes, tuple[Evidence, ...]] = {}
        # padded needle -> [label, [(domain, weight), ...], needs a longer token, [marks]]
        self._needles: dict[str, list[Any]] = {}
        # "^document": the task's first word (an imperative names the deliverable)
        self.leading: dict[bytes, list[Evidence]] = {}
        self.files: dict[str, list[tuple[str, float]]] = {}
        self.folders: dict[str, list[tuple[str, float]]] = {}
        self.multi_folders: list[tuple[str, str, float]] = []
        for domain, tables in data.items():
            if domain == "settings":
                continue
            if domain not in DOMAINS and domain not in ("null", UNSERVED):
                raise ValueError(f"unknown domain {domain!r}; known: {', '.join(DOMAINS)}, null, "
                                 f"{UNSERVED}")
            for keyword, weight in tables.get("keywords", {}).items():
                self._add_keyword(keyword.lower(), domain, float(weight))
            for noun, weight in tables.get("deliverables", {}).items():
                self._add_deliverable(noun.lower(), domain, float(weight))
            for pattern, weight in tables.get("files", {}).items():
                pattern = pattern.lower()
                if pattern.endswith("/"):
                    if pattern.strip("/").count("/"):
                        self.multi_folders.append((pattern, domain, float(weight)))
                    else:
                        self.folders.setdefault(pattern.strip("/"), []).append((domain, float(weight)))
                else:
                    self.files.setdefault(pattern, []).append((domain, float(weight)))
        # A trade writes the work products its own [files] list and those settings.writes adds;
        # None: all ("*")
        owners: dict[str, set[str]] = {}
        for kind, hits in [*self.files.items(),
                           *((folder + "/", hits) for folder, hits in self.folders.items()),
                           *((pattern, [(domain, weight)]) for pattern, domain, weight in self.multi_folders)]:
            if kind in self.source_files:
                owners.setdefault(kind, set()).update(domain for domain, _ in hits)
        self.writes: dict[str, frozenset[str] | None] = {}
        for domain in DOMAINS:
            also = self._also_writes.get(domain, frozenset())
            own = {kind for kind, domains in owners.items() if domain in domains}
            self.writes[domain] = None if "*" in also else frozenset(own | also)
        # "load balancers" is evidence as much as "load balancer": every word or phrase also
        # matches with its last word in the plural, as the same keyword; listed itself with the
        # same weights it is still the same keyword ("a positive integer ... positive integers"
        # counts once), with other weights its own.
        for needle, (label, hits, needs_longer, _) in list(self._needles.items()):
            plural = _plural(needle[:-1].rsplit(" ", 1)[-1]) if not needs_longer else None
            if plural:
                head = needle[:-1].rsplit(" ", 1)[0]
                listed = self._needles.setdefault(f"{head} {plural} ", [label, hits, False, []])
                if listed[1] == hits and not listed[2]:
                    listed[0] = label
        for token, mark in _FLAG_TOKENS:
            self._needle(" " + token + " ", token)[3].append(mark)
        for needle in _CSS_NEEDLES:
            self._needle(needle, _CSS_LENGTH)[3].append(_CSS_LENGTH)
        for needle in (" column", " series"):  # a word that starts so: "columns", "Series"
            self._needle(needle, _COLUMN_WORD)[3].append(_COLUMN_WORD)
        # a deliverable is looked for only when the text has a word of one (or an implied verb)
        for key in [*self.deliverables, *implied]:
            token = _TOKEN.findall(key.decode())[0]
            self._needle(" " + token + " ", token)[3].append(_DELIVERABLE)
        # One Aho-Corasick pass over the separated text finds every keyword, phrase, prefix and
        # flag word in C; the needles carry their spaces, so only whole tokens match ("ts" is not
        # found inside "tests", "spython" is not python). A contiguous NFA, not a DFA: it scans
        # 2 KB in ~12 us as the DFA does, in 37 MB less memory, and in the benchmark, where each
        # task finds the caches cold, its p99 was 3-7 us lower in four runs of five.
        # Per needle: its label, its evidence (built once, shared by every task that matches),
        # whether it needs a longer token, whether it is a number word, the flags it raises, the
        # code shapes it gates, and whether it is evidence of an everyday (non-technical) ask.
        self.payloads = [
            (label, tuple(Evidence(1, domain, "keyword", label, weight) for domain, weight in hits),
             needs_longer, _NUMBER in marks,
             tuple(m for m in marks if m != _NUMBER and not isinstance(m, int)),
             tuple(m for m in marks if isinstance(m, int)),
             bool(hits) and all(domain == "null" for domain, _ in hits))
            for label, hits, needs_longer, marks in self._needles.values()]
        # A needle that needs no look at its neighbourhood and counts no number says all it says
        # at its first match: later matches of it are skipped with one set lookup (a 2 KB task
        # repeats its words; the loop over matches was the largest cost left).
        self.plain_needles = frozenset(
            index for index, (_, _, needs_longer, is_number, _, _, everyday)
            in enumerate(self.payloads) if not (needs_longer or is_number or everyday))
        # Each keyword's needles, and the longest needle: to find a keyword's occurrences
        # near a place without scanning the whole text again (see _keywords_outside).
        label_needles: dict[str, list[tuple[bytes, bool]]] = {}
        for needle, (label, _, needs_longer, _) in self._needles.items():
            label_needles.setdefault(label, []).append((needle.encode(), needs_longer))
        self.label_needles = {label: tuple(needles) for label, needles in label_needles.items()}
        self.longest_needle = max(map(len, self._needles), default=0)
        self.automaton = ahocorasick_rs.BytesAhoCorasick(
            [needle.encode() for needle in self._needles],
            implementation=ahocorasick_rs.Implementation.ContiguousNFA)
        # The machine's own objects matter only to a short one-liner; scanning for them in every
        # text cost ~5 us on 2 KB ("variable", "processes", "http" are everywhere in long tasks).
        self.system_objects = ahocorasick_rs.BytesAhoCorasick(
            [f" {token} ".encode() for token in sorted(_SYSTEM_OBJECTS)])

        self.implied_deliverables: dict[bytes, tuple[Evidence, ...]] = {}
        for verb, noun in implied.items():
            if noun.encode() not in self.deliverables:
                raise ValueError(f"implied deliverable {verb.decode()!r} = {noun!r}: "
                                 f"{noun!r} is not in any [DOMAIN.deliverables] table")
            self.implied_deliverables[verb] = tuple(
                Evidence(1, e.domain, "deliverable", f"{verb.decode()} ({noun})", e.weight)
                for e in self.deliverables[noun.encode()])

    def _add_deliverable(self, noun: str, domain: str, weight: float) -> None:
        tokens = noun.split()
        if not 1 <= len(tokens) <= 2 or any(not _TOKEN.fullmatch(t.replace("-", "_"))
                                            for t in tokens):
            raise ValueError(f"deliverable {noun!r}: give one or two words ('readme', "
                             "'release notes')")
        evidence = Evidence(1, domain, "deliverable", noun, weight)
        forms = [" ".join(tokens)]
        plural = _plural(tokens[-1])  # "readmes", "guides"
        if plural:
            forms.append(" ".join([*tokens[:-1], plural]))
        if len(tokens) == 2:
            # the object is split on spaces only: "Translate the quick-start" names a quick start
            forms += [form.replace(" ", "-") for form in forms]
        for form in forms:
            key = form.encode()
            self.deliverables[key] = (*self.deliverables.get(key, ()), evidence)

    def _needle(self, needle: str, label: str) -> list[Any]:
        return self._needles.setdefault(needle, [label, [], False, []])

    def _add_keyword(self, keyword: str, domain: str, weight: float) -> None:
        if keyword.startswith("^"):
            if _TOKEN.findall(keyword[1:]) != [keyword[1:]]:
                raise ValueError(f"{keyword!r}: a leading '^' goes with a single word")
            self.leading.setdefault(keyword[1:].encode(), []).append(
                Evidence(1, domain, "keyword", keyword, weight))
            return
        if keyword.endswith("*"):
            if _TOKEN.findall(keyword[:-1]) != [keyword[:-1]]:
                raise ValueError(f"{keyword!r}: a trailing '*' goes with a single word")
            payload = self._needle(" " + keyword[:-1], keyword)
            _set_weight(payload[1], domain, weight)
            payload[2] = True
            return
        tokens = _TOKEN.findall(keyword)
        if not tokens:
            raise ValueError(f"keyword {keyword!r} has no letters or digits")
        # The words of a phrase may be apart by one or two separators ("use-after-free",
        # "std::thread", "df -h", "kernel, launch"), not more.
        label = " ".join(tokens)
        needles = {" " + "".join(t + g for t, g in zip(tokens, gaps)) + tokens[-1] + " "
                   for gaps in itertools.product((" ", "  "), repeat=len(tokens) - 1)}
        # and as the keyword itself is spelled, farther apart: "weights & biases" is three
        # separators in a text that says it ("Weights & Biases"), as is "makemigrations --merge"
        needles.add(" " + _separated(keyword.lower().encode()).decode().strip(" ") + " ")
        for needle in needles:
            _set_weight(self._needle(needle, label)[1], domain, weight)

    @classmethod
    def load(cls, path: Path | None = None,
             extra: Iterable[tuple[str, str, float]] = ()) -> Lexicon:
        """The keyword file (default: the packaged one), plus ``extra`` (domain, keyword, weight)
        entries such as the ones operators added in the registry; an extra entry replaces the
        file's weight for the same keyword of the same domain, however it is spelt."""
        path = Path(path or LEXICON_FILE)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ValueError(f"router lexicon {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"router lexicon {path}: {exc}") from None
        for domain, keyword, weight in extra:
            data.setdefault(domain, {}).setdefault("keywords", {})[keyword] = weight
        return cls(data)

    @classmethod
    def for_registry(cls, registry: Any, path: Path | None = None,
                     extra: Iterable[tuple[str, str, float]] = ()) -> Lexicon:
        """The lexicon the dispatcher routes with: the file and the registry's keywords (and
        ``extra`` ones, to try a keyword before adding it)."""
        taught = [(k.domain, k.keyword, k.weight) for k in registry.router_keywords()]
        return cls.load(path, extra=[*taught, *extra])


def _set_weight(hits: list[tuple[str, float]], domain: str, weight: float) -> None:
    """A phrase weighs once per domain however it is spelt ("hidden-import", "hidden import"):
    a later spelling replaces the earlier one's weight, as an operator's keyword replaces the
    file's."""
    for i, (known, _) in enumerate(hits):
        if known == domain:
            hits[i] = (domain, weight)
            return
    hits.append((domain, weight))


def check_keyword(domain: str, keyword: str, weight: float) -> str:
    """The keyword as the lexicon stores it (lower case, single spaces), or a ValueError that
    says what is wrong with it: the keyword file's own rules, and a weight in range."""
    keyword = " ".join(keyword.lower().split())
    if not -10 <= weight <= 10 or weight == 0:
        raise ValueError(f"weight {weight} out of range: give a non-zero number between -10 and 10 "
                         "(4 = unambiguous on its own, 2 = clear, 0.5 = a hint; negative takes "
                         "evidence back)")
    Lexicon({domain: {"keywords": {keyword: weight}}})
    return keyword


def _plural(word: str) -> str | None:
    """The regular English plural of a keyword's last word, or None where guessing would be
    wrong or pointless (short tokens, numbers, symbols)."""
    if len(word) < 3 or not word.isalpha():
        return None
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


# ---------------------------------------------------------------------------------------------
# Tiers 1 and 2


_NAMED_STEMS = frozenset(("dockerfile", "makefile", "jenkinsfile", "readme", "vagrantfile", "procfile"))


def _file_hits(lexicon: Lexicon, ref: str) -> list[tuple[str, float, str]]:
    """(domain, weight, what matched) for one path, its strongest match per domain."""
    path = ref.strip().lower().replace("\\", "/")
    parts = path.split("/")  # empty parts ("a//b", a leading "/") match no folder
    best: dict[str, tuple[float, str]] = {}
    if path[-1:] != "/":
        # The name, its stem for Dockerfile.dev and the like, its extension, in that order.
        name = parts.pop()
        files = lexicon.files
        labels = [name]
        dot = name.find(".")
        if dot != -1:
            if name[:dot] in _NAMED_STEMS:
                labels.append(name[:dot])
            labels.append(name[name.rindex("."):])
        for label in labels:
            for domain, weight in files.get(label, ()):
                if domain not in best or weight > best[domain][0]:
                    best[domain] = (weight, label)
    # The file is what the task changes; its folders only say where it lives. When the name
    # speaks for a domain, a folder of another domain counts half (charts/api/README.md is docs),
    # unless the name is only an extension the folder's domain writes too (etl/load.py).
    named = set(best)
    whole: tuple[str, ...] = ()
    if len(best) == 1:
        [(_, name_label)] = best.values()
        whole = lexicon.shared_extensions.get(name_label, ())
    folders = lexicon.folders
    folder_hits = [(folder + "/", domain, weight) for folder in parts if folder in folders
                   for domain, weight in folders[folder]]
    if lexicon.multi_folders:
        slashed = ("" if path.startswith("/") else "/") + path + ("" if path.endswith("/") else "/")
        folder_hits += [(pattern, domain, weight) for pattern, domain, weight in lexicon.multi_folders
                        if "/" + pattern in slashed]
    for label, domain, weight in folder_hits:
        if named and domain not in named and domain not in whole:
            weight /= 2
        if domain not in best or weight > best[domain][0]:
            best[domain] = (weight, label)
    return [(domain, weight, label) for domain, (weight, label) in best.items()]


def _names_a_document(lexicon: Lexicon, ref: str) -> bool:
    """Whether a path's own name is a document's (a .md or .rst file, a README), whatever its
    folders say: sql/window_functions.md is a page about SQL, not SQL."""
    hits = _file_hits(lexicon, ref.strip().replace("\\", "/").rsplit("/", 1)[-1])
    return bool(hits) and all(hit[0] == "docs" for hit in hits)


# A task that mentions more file names than this is a listing; its first ones say what it is about.
_MAX_NAMES = 32


def _file_names_in(lower: bytes, lexicon: Lexicon) -> list[str]:
    """File names with a known extension mentioned in the text ("simple_yolo.cu"), each once, in
    the order of their first mention (the order their evidence is listed and halved in)."""
    names: dict[str, None] = {}
    mentions = 0
    # the first dotted words only: "a.b a.b ..." is no list of files either
    for match in itertools.islice(_EXTENSION.finditer(lower), 4 * _MAX_NAMES):
        if "." + match.group(1).decode() in lexicon.files:
            mentions += 1
            if mentions > _MAX_NAMES:
                break
            # The name's head, read backwards from the dot: a forward search for "[\w./-]+$"
            # retries at every offset and cost ~18 us per name.
            start = match.start()
            head = _FILE_NAME_HEAD.match(lower[max(0, start - 120):start][::-1]).group(0)[::-1]
            if head.strip(b"./"):
                names[(head.lstrip(b"/") + match.group(0)).decode()] = None
    return list(names)


# Tried at the first mentions of "column" only: a search for the whole pattern tried every
# offset (~70 us on 2 KB), and so did one for a quote next to "column" (~30 us).
_QUOTED_NAME_BEFORE = re.compile(rb"""(?<![\w])(['"])\w[\w ]{0,30}\1 $""")
_COLUMN_QUOTED_NAME = re.compile(rb"""columns? (['"])\w[\w ]{0,30}\1""")


def _names_a_column(lower: bytes) -> bool:
    at = lower.find(b"column")
    for _ in range(3):  # a column is named among its first mentions if at all (~0.5 us a mention)
        if at == -1:
            break
        # a quote must touch the word ("column 'B'", "'B' column") before a regex is tried
        after = lower[at + 6:at + 9]
        if (after[:1] == b" " and after[1:2] in b"'\"" or after[:1] == b"s" and after[2:3] in b"'\""
                ) and _COLUMN_QUOTED_NAME.match(lower, at):
            return True
        if at > 1 and lower[at - 2:at - 1] in b"'\"" and _QUOTED_NAME_BEFORE.search(
                lower[max(0, at - 36):at]):
            return True
        at = lower.find(b"column", at + 6)
    return False


# A column called by an identifier: "the FlightNumber column", "the From_To column", "In the
# Airline column" (a capital inside the sentence); a row by its label ("row 'f'"); pandas' Series
# named mid-sentence ("Slice the Series `s`"; not "the Fibonacci Series"). Each is looked for only
# where its literal is (a regex scan from every word of 2 KB cost ~200 us).
_IDENTIFIER = re.compile(r"[A-Za-z]+_\w+|[A-Z][a-z]+[A-Z]\w*")
_ROW_LABEL = re.compile(r"row '\w{1,20}'")


def _names_by_identifier(text: str, column_words: bool) -> bool:
    """``column_words``: the scan found a word starting "column" or "series" (each search of
    2 KB for a word that is not there costs ~1 us)."""
    for needle in (" column", " Series") if column_words else ():
        at = text.find(needle)
        for _ in range(3):
            if at == -1:
                break
            start = text.rfind(" ", 0, at) + 1
            word = text[start:at]
            if needle == " Series":
                if word.isalpha() and word.islower():
                    return True
            elif _IDENTIFIER.fullmatch(word) or (word[:1].isupper() and word[1:].islower()
                                                 and text[max(0, start - 4):start] == "the "):
                return True
            at = text.find(needle, at + 1)
    return "'" in text and "row '" in text and _ROW_LABEL.search(text) is not None


# A link's page ("https://.../exercise-9.php"): no file to work on.
_URL_PAGE = re.compile(r"(://[^\s'\"<>]+?)\.(?:php\d?|html?|aspx?|jsp|cgi)\b", re.IGNORECASE)


def _any_domain_reaches(evidence: list[Evidence], score: float) -> bool:
    totals: dict[str, float] = {}
    for item in evidence:
        if item.domain in DOMAINS:
            totals[item.domain] = totals.get(item.domain, 0.0) + item.weight
    return any(total >= score for total in totals.values())


def _keywords_also_in(rest: bytes, evidence: list[Evidence], done: set[str],
                      lexicon: Lexicon) -> list[Evidence]:
    """``evidence`` without the keywords the scan found only in the parts blanked out of
    ``rest`` (the task's lower-case text without its quoted values, or without a command line's
    arguments). Evidence that is no scanned keyword ("named column") stays."""
    outside = _labels_in(_separated(rest), lexicon)
    return [e for e in evidence if e.kind != "keyword" or e.match in outside
            or e.match not in done]


def _keywords_outside(separated: bytes, spans: list[tuple[int, int]], evidence: list[Evidence],
                      done: set[str], lexicon: Lexicon) -> list[Evidence]:
    """``evidence`` without the scanned keywords whose every occurrence has a word inside
    ``spans`` (parts of ``separated`` to blank out): what :func:`_keywords_also_in` gives for the
    text with those parts blanked, found by looking around the spans alone (a rescan of 2 KB cost
    ~20 us, most of a person's clause's cost)."""
    said = {item.match for item in evidence if item.kind == "keyword" and item.match in done}
    if not said:
        return evidence
    reach = lexicon.longest_needle
    payloads = lexicon.payloads
    touched = set()
    for start, end in spans:
        low = max(0, start - reach)
        window = separated[low:end + reach]
        for index, first, last in lexicon.automaton.find_matches_as_indexes(window, overlapping=True):
            label = payloads[index][0]
            if label in said and _words_touch(window, first, last, start - low, end - low):
                touched.add(label)
    gone = {label for label in touched
            if not _occurs_outside(separated, spans, lexicon.label_needles[label])}
    if not gone:
        return evidence
    return [item for item in evidence if item.kind != "keyword" or item.match not in gone]


def _words_touch(text: bytes, first: int, last: int, start: int, end: int) -> bool:
    """Whether the words of a needle matched at text[first:last] (its leading space, and any
    trailing one, are no word) reach into text[start:end]."""
    return first + 1 < end and last - (text[last - 1] == 32) > start


def _occurs_outside(separated: bytes, spans: list[tuple[int, int]],
                    needles: tuple[tuple[bytes, bool], ...]) -> bool:
    """Whether one of a keyword's needles occurs in ``separated`` with no word in ``spans``."""
    for needle, needs_longer in needles:
        at = separated.find(needle)
        while at != -1:
            last = at + len(needle)
            if not (needs_longer and separated[last:last + 1] == b" ") and not any(
                    _words_touch(separated, at, last, start, end) for start, end in spans):
                return True
            at = separated.find(needle, at + 1)
    return False


def _labels_in(separated: bytes, lexicon: Lexicon) -> set[str]:
    """The keywords (by label) the lexicon finds in a separated text."""
    labels = set()
    for index, _, end in lexicon.automaton.find_matches_as_indexes(separated, overlapping=True):
        label, _, needs_longer = lexicon.payloads[index][:3]
        if not (needs_longer and separated[end] == 32):
            labels.add(label)
    return labels


_NEGATED_TOOL = re.compile(rb"([\w.+#]+)-free\b")


def _without_negated_tools(lower: bytes, separated: bytes, lexicon: Lexicon) -> bytes:
    """A tool named to say it is not used ("our pandas-free script", "the CUDA-free CPU
    fallback") is no evidence for its trade: its word is blanked, unless "X-free" is itself a
    term of the lexicon ("lock-free", "use-after-free"). Only a tool's name (a word the lexicon
    weighs 3 or more on its own) is taken back: "a PySpark UDF-free version" is still about
    UDFs' trade."""
    blanked = bytearray(separated)
    for match in itertools.islice(_NEGATED_TOOL.finditer(lower), _MAX_PLACES):
        word = b" " + match.group(1) + b" "
        # overlapping: " cuda" (the prefix needle of "cuda*") ends before " cuda " does
        whole = [index for index, first, last
                 in lexicon.automaton.find_matches_as_indexes(word, overlapping=True)
                 if first == 0 and last == len(word)]
        if not any(hit.weight >= 3 for index in whole for hit in lexicon.payloads[index][1]):
            continue
        word_start, free_end = match.start(1) + 1, match.end() + 1  # offsets in `separated`
        window_start = max(0, word_start - 40)
        window = separated[window_start:free_end + 1]
        if any(first + window_start <= word_start and last + window_start >= free_end + 1
               for _, first, last in lexicon.automaton.find_matches_as_indexes(window, overlapping=True)):
            continue
        blanked[word_start:match.end(1) + 1] = b" " * (match.end(1) - match.start(1))
    return bytes(blanked)


def extract(task: Task, lexicon: Lexicon, *, relinked: bool = False) -> Extraction:
    """Tiers 1 and 2: evidence and scores per domain, and the domains that count."""
    text = task.objective
    if text[:5].lower() == "goal:":
        # A planner's subtask under its goal ("Goal: a churn dashboard for the leadership
        # meeting.\nSubtask 2: compute monthly churn per plan ..."): the subtask is the work, the
        # goal its reason. The goal's words decide only when the subtask names no trade (of 80
        # labelled such tasks 70 right on the whole text, 73 this way, none lost).
        subtask = _SUBTASK.search(text)
        if subtask:
            own = extract(Task(objective=text[subtask.start() + 1:], context_refs=task.context_refs),
                          lexicon)
            if own.domains:
                return own
    lower, separated = _separate(text)
    if b"-free" in lower:
        separated = _without_negated_tools(lower, separated, lexicon)
    evidence: list[Evidence] = []

    # Tier 1: keywords, phrases, prefixes and flag words, in one pass (see Lexicon). A keyword
    # counts once however often it occurs (phrase variants share their label); numbers count
    # every time.
    flags: set[Any] = set()
    shapes: set[int] = set()
    number_words = 0
    done: set[str] = set()
    payloads = lexicon.payloads
    plain = lexicon.plain_needles
    seen: set[int] = set()
    for index, _, end in lexicon.automaton.find_matches_as_indexes(separated, overlapping=True):
        if index in seen:
            continue
        if index in plain:
            seen.add(index)
        label, hits, needs_longer, is_number, marks, gated, everyday = payloads[index]
        if needs_longer and separated[end] == 32:
            continue  # "cuda*" wants a longer token than "cuda"
        if is_number:
            number_words += 1
        if label in done:
            continue
        if everyday and separated[end:end + 16].split(b" ", 1)[0] in _PRODUCT_NOUNS:
            continue  # "a recipe app", "the songs table": the subject of something technical
        done.add(label)
        if hits:
            evidence += hits
        if marks:
            flags.update(marks)
        if gated:
            shapes.update(gated)
    if _URL in flags and not relinked:
        # A link's page is no file to work on: ".../python-recursion-exercise-9.php" is not PHP.
        # The scan says whether there is a link (a search of its own costs ~1.5 us on 2 KB).
        unlinked = _URL_PAGE.sub(r"\1", text, count=_MAX_PLACES)
        if unlinked != text:
            return extract(Task(objective=unlinked, context_refs=task.context_refs), lexicon,
                           relinked=True)
    # Tier 1: keywords of the first word only ("^document": the imperative names the deliverable)
    words = separated.split(None, 1)
    first_word = words[0] if words else b""
    if first_word in lexicon.leading:
        evidence += lexicon.leading[first_word]
    deliverable = _task_deliverable(lower, first_word, lexicon) if _DELIVERABLE in flags else ()
    if deliverable and task.context_refs and deliverable[0].domain == "null":
        deliverable = ()  # a letter is no work on the repository's files
    evidence += deliverable

    # The punctuation the remaining checks look for, kept in order and nothing else: one pass
    # instead of a search of the whole text per check ("<<<", "=>", "#!", "^", "=", "|", ".", "`").
    marks = lower.translate(None, _NOT_MARKS)

    # Tier 1: the shape of code in the task names its language. Only the shapes whose word the
    # scan found, or whose punctuation is present, run their pattern; in their listed order.
    has_code = False
    for index, needle in _PUNCTUATION_SHAPES:
        if needle in marks:
            shapes.add(index)
    if shapes:
        coded: set[str] = set()
        lines = "\n" + text  # so that "\nfrom " also finds a first line
        for index in sorted(shapes):
            domain, needle, _, pattern = _CODE_SHAPES[index]
            if domain not in coded and _found_at(lines, needle, pattern):
                has_code = True
                coded.add(domain)
                if domain == "systems" and "__global__" in text:
                    continue  # CUDA C++: the kernel, not the C++, names the specialist
                evidence.append(Evidence(1, domain, "code", domain + " code", lexicon.code_shape_weight))

    # A fenced block tagged with its language says so outright, as its file would.
    if b"`" in marks and b"```" in lower:
        names = {_FENCE_FILES.get(match.group(1))
                 for match in itertools.islice(_FENCE_TAG.finditer(lower), _MAX_PLACES)}
        for name in sorted(names - {None}):
            for domain, weight in lexicon.files.get(name, ()):
                has_code = True
                evidence.append(Evidence(1, domain, "code", f"a ```{name.lstrip('.')} block", weight))

    # A Dockerfile pasted into the text is the Dockerfile the task changes, as one named in the
    # context refs is: the Python its RUN lines install does not make it Python's.
    if b"from " in lower and _found_at("\n" + text, "\nFROM ", _DOCKERFILE):
        has_code = True
        for domain, weight in lexicon.files.get("dockerfile", ()):
            evidence.append(Evidence(1, domain, "file", "a pasted Dockerfile (dockerfile)", weight))

    # Tier 1: a power written as x^2 or (n+1)^k is algebra (a regex's ^abc is not: nothing before).
    if b"^" in marks and _found_at(text, "^", _POWER):
        evidence.append(Evidence(1, "math", "notation", "algebraic power", lexicon.word_problem_weight))
    # An equation, or an absolute value in an equation or inequality (|2x - 3| < 5).
    if not has_code and (
            (b"|" in marks and (b"=" in marks or b"<" in marks or b">" in marks)
             and _found_at(text, "|", _ABSOLUTE_VALUE))
            or b"=" in marks and (_has_coefficient_term(lower, separated)
                                  or _has_letter_equation(text)
                                  or _defines_function(text))):
        evidence.append(Evidence(1, "math", "notation", "equation", lexicon.word_problem_weight))

    # Tier 1: a table named by a plural noun ("join the users and orders tables")
    if "table" in flags and b"s table" in lower:
        for match in _NAMED_TABLE.finditer(lower):
            word = lower[:match.start() + 1].rsplit(None, 1)[-1]
            if word.isalpha() and word not in _NOT_TABLE_NAMES:
                evidence.append(Evidence(1, "data", "notation", "named table",
                                         lexicon.named_table_weight))
                break

    # Tier 1: a database named by its identifier ("Against the world_1 database: ...")
    if b"_" in lower and b" database" in lower and _NAMED_DATABASE.search(lower):
        evidence.append(Evidence(1, "data", "notation", "named database", lexicon.named_table_weight))

    # Tier 1: an arithmetic word problem (no code, no files, nothing in backticks: those are
    # identifiers or output, and word problems have none): a quantity question over at least two
    # numbers; or three or more numbers and any question or "calculate/find the ...". Three
    # numbers and a question are strong evidence: stronger than a recipe or a family member.
    if not has_code and not task.context_refs and b"`" not in marks:
        quantity = any(needle in flags and _found_at(lower, needle, pattern)
                       for needle, pattern in _QUANTITY_QUESTION.items())
        imperative = any(verb in flags and _found_at(lower, verb, pattern)
                         for verb, pattern in _IMPERATIVE.items())
        # "How do I train for a 10K in eight weeks if I can run 3K now?" asks for a method: a
        # how-to question is a word problem only when it also asks for a quantity.
        # "... 7.2 GB of 4.2 GB used; should we boost the overhead?" asks for advice, as does
        # any question whose last sentence opens "(what) should we/I", "how do I" ("scores 0.98 on
        # training and 0.61 on the holdout; how do I tell if it's overfitting?") or proposes a
        # change ("...; lower the memory utilisation?"): no labelled word problem asks one.
        question = text.rstrip().endswith("?") and (quantity or not (
            lower.startswith(_HOW_TO_ASKS) or _asks_advice(lower)))
        numbers = _count_numbers(lower, separated, number_words) if quantity or imperative or question else 0
        if numbers >= 2 and (b"'" in lower or b'"' in lower):
            # a quoted literal is a value, not a quantity ("a column of strings like '2023-01-05'")
            unquoted = _unquoted(lower)
            if unquoted != lower:
                numbers = _count_numbers(unquoted, _separated(unquoted), number_words)
        if numbers >= 2 and b"." in marks:
            # a version is no quantity: "merge two dicts in Python 3.9+", "on Ubuntu 22.04"
            numbers -= _version_numbers(text)
        if (numbers >= 2 and not quantity and b" to " in lower and _CHANGE_REPORT.search(lower)
                and not (imperative and _CALCULATION_ASKED.search(lower))):
            # a measurement's change is a metric's report, not a problem's two quantities: "the
            # p95 latency rose from 300 ms to 450 ms after the release; find the cause"
            numbers -= 2
        if numbers >= 2 and b"ib " in separated and any(u in separated for u in _BINARY_UNITS):
            # "Tried to allocate 10.73 GiB on an 8 GiB card": binary units measure a machine,
            # and no word problem uses them
            numbers = 0
        if numbers >= 3:
            evidence.append(Evidence(1, "math", "word_problem", "word problem",
                                     lexicon.word_problem_strong_weight))
        elif numbers == 2 and (quantity or imperative):
            evidence.append(Evidence(1, "math", "word_problem", "word problem",
                                     lexicon.word_problem_weight))

    # Tier 1: a CSS length is a page's ("narrower than 600px", "padding: 1.5rem").
    if _CSS_LENGTH in flags:
        evidence.append(Evidence(1, "web", "keyword", "a CSS length", lexicon.css_length_weight))

    # Tier 1: a React hook or Vue composable named by the convention (useStableSocket, useCart):
    # the scan sees one lowercased token, the convention is in its case.
    if b"use" in lower and _HOOK_NAME.search(text):
        evidence.append(Evidence(1, "web", "notation", "a hook's name", lexicon.hook_name_weight))

    # Tier 1: a column called by its name ("the 'priority' column", "column 'B'") is a table's.
    if ((b"'" in lower or b'"' in lower) and _names_a_column(lower)) or (
            not task.context_refs and _names_by_identifier(text, _COLUMN_WORD in flags)
            ):  # in Grid.vue "the Status column" is a page's
        evidence.append(Evidence(1, "data", "keyword", "named column", lexicon.named_column_weight))
        if (b"'" in lower or b'"' in lower) and len(text) <= _COMMAND_LINE_MAX:
            # what a table's cells hold is a value, not a trade: "change the 'snake' entries to
            # 'python'" (a short ask; a long one says its trade in other words too)
            unquoted = _unquoted(lower)
            if unquoted != lower:
                evidence = _keywords_also_in(unquoted, evidence, done, lexicon)

    # Tier 1: a shell one-liner (short; starts with a shell-ish verb, talks about files, paths or
    # the machine's state; comes with no source file: "Convert the directory walker in walk.cpp"
    # is a change to that file; delivers no document: "Create a README listing the values in
    # values.yaml" is not one).
    text_files = _file_names_in(lower, lexicon) if b"." in marks else ()
    verb, rest = first_word, words[1] if len(words) > 1 else b""
    if lower.startswith(b"(") and b")" in lower[:40]:  # "(GNU specific) Display ..."
        verb, _, rest = lower[lower.index(b")") + 1:].strip().partition(b" ")
    asked = False
    if verb in _QUESTION_OPENERS:  # "How do I copy a directory to a remote server ...?"
        for lead in _QUESTION_LEADS:
            if lower.startswith(lead):
                verb, _, rest = lower[len(lead):].partition(b" ")
                # the lead is a question's, not a how-to guide's
                evidence = [e for e in evidence if e.match != "how to"]
                # ... and a trade that has its say keeps it: "How do I run a shell command from
                # Python?"
                asked = _any_domain_reaches(evidence, lexicon.min_score)
                break
    # only a short ask with no code and no files can be a one-liner: a long text skips the
    # verb and command checks (~3 us on 2 KB)
    if not has_code and not task.context_refs and len(text) <= _COMMAND_LINE_MAX:
        if verb == b"do" and rest.startswith(b"not "):  # "Do not mark variables ... for export"
            verb, _, rest = rest[4:].partition(b" ")
        elif verb == b"case" and rest.startswith((b"insensitive ", b"sensitive ")):
            verb, _, rest = rest.partition(b" ")[2].partition(b" ")  # "Case-insensitive search for"
        if (verb.endswith(b"ly") or verb in _LEADING_ADVERBS) and rest:
            verb = rest.split(None, 1)[0]  # "Automatically log into", "Force delete": the verb is next
        # "report.ipynb takes 20 minutes...": a file's name opens the text, not a verb
        named_file = lower.startswith(verb + b".") and lower[len(verb) + 1:len(verb) + 2].isalpha()
        shell_verb = not asked and not named_file and (
            verb in _SHELL_VERBS and (verb != b"make" or rest.startswith(_MADE_BY_COMMAND)) or (
            verb == b"write" and rest.startswith(_WRITE_STREAMS)) or (
            verb == b"keep" and rest.startswith(b"only ")))  # not "Keep the API secret out of ..."
        # a command's own name first; "sleep for 10 seconds" is one too, not a bedtime
        command = verb in _COMMAND_WORDS or lower.startswith(_COMMAND_ASKS) or (
            b"one-liner" in lower or b"one liner" in lower) or (
            verb in (b"sleep", b"wait") and rest.startswith((b"for ", b"until "))) or (
            _COMMAND_LINE.match(lower) is not None and not _ABOUT_ITS_OUTPUT.search(lower))
        if ((shell_verb or command) and not any(
                e.weight > 0 for e in deliverable) and (
                "file_object" in flags or text_files or _ABSOLUTE_PATH.search(text)
                or command or (b"." in marks and _PLAIN_FILE.search(lower))
                or (b"*" in lower and _GLOB.search(lower))
                or (len(text) <= _SHELL_TASK_MAX and (
                    (bool(lexicon.system_objects.find_matches_as_indexes(separated))
                     and not (verb in _CHANGE_VERBS
                              and _any_domain_reaches(evidence, lexicon.min_score)))
                    or ("$" in text and _SHELL_VARIABLE.search(text))
                    # quoted arguments alone are a command line only when no trade has its say:
                    # "Set the 'Content-Security-Policy' header in the Express app" is web's
                    or ((b"'" in lower or b'"' in lower) and not _ABOUT_ITS_OUTPUT.search(lower) and (
                        _QUOTED_COMMAND.search(lower) or (
                            _quotes_arguments(lower)
                            and not _any_domain_reaches(evidence, lexicon.min_score)))))))
                and not _CODE_AT_HAND.search(lower)):  # last: a regex, and rarely decisive
            evidence.append(Evidence(1, "devops", "shell_task", "shell one-liner",
                                     lexicon.shell_task_weight))
            # A command line's arguments are not its trade: what it quotes ('Rename "svnlog.py" to
            # "svnlog"', 'file type of command "python"') and the files it globs ("*.php and *.js
            # files under /home").
            arguments = lower
            if (b"'" in lower or b'"' in lower) and not _ABOUT_ITS_OUTPUT.search(lower):
                arguments = _unquoted(arguments)
            if b"*" in lower and b" file" in lower:  # "*.vue components that use ..." are the trade's
                arguments = _GLOB_ARGUMENT.sub(b" ", arguments)
            if b"/" in lower:  # "show which package owns /usr/bin/python3"
                arguments = _ABSOLUTE_PATH_ARGUMENT.sub(b" ", arguments)
            if verb in _LISTING_VERBS and b" file" in lower and _SEARCHED_PLACE.search(lower):
                # the kinds and the names of the files looked for are what is searched, not a trade:
                # "Find all php files whose name is tecmint.php in the current directory"
                arguments = _NAMED_FILE_ARGUMENT.sub(b" ", _without_file_kinds(arguments))
            elif verb in _PRINTING_VERBS and not task.context_refs:
                # a file a command prints from is its argument: "Print the sum of the second
                # column of data.csv" is a one-liner over a file, not a table's trade
                arguments = _NAMED_FILE_ARGUMENT.sub(b" ", arguments)
            if arguments != lower:
                evidence = _keywords_also_in(arguments, evidence, done, lexicon)
                text_files = _file_names_in(arguments, lexicon) if b"." in arguments else ()

    # Tier 1: the trade of the person an everyday ask is for is no trade of the task: "Recommend a
    # chair for someone who writes C++ ten hours a day". A clause of a few words after the person
    # (it stops where the ask goes on: "... who knows Java how Python generators work"; not at
    # "and", which joins the things the person does: "... who reads Grafana dashboards and
    # Kubernetes logs all day". No labelled task's route moved when "and" stopped ending it.)
    if _PERSON_WORD in flags and not has_code and not task.context_refs:
        clauses = _person_clauses(lower)
        if clauses:
            evidence = _keywords_outside(separated, [(start + 1, end + 1) for start, end in clauses],
                                         evidence, done, lexicon)

    # Tier 1-2: a part the task clears at its start ("The Dockerfile is fine; ...") is not the
    # trade: its keywords, and a context ref it names, do not count.
    cleared = _CLEARED_PART.match(lower) if b" fine" in lower else None
    refs = task.context_refs
    if cleared:
        evidence = _keywords_outside(separated, [(cleared.start(1) + 1, cleared.end(1) + 1)],
                                     evidence, done, lexicon)
        cleared_words = {word.decode() for word in cleared.group(1).split()}
        refs = [ref for ref in refs
                if ref.rstrip("/").rsplit("/", 1)[-1].lower() not in cleared_words]
        text_files = [name for name in text_files if name.rsplit("/", 1)[-1] not in cleared_words]

    # Tier 1: a question about a business's records, asked in its own words ("Which customers
    # bought in January but not in February?", "Total the invoices per client"): an analyst's
    # question, short, when nothing else speaks for a trade. Not a word problem (GSM8K's stores
    # and customers come with numbers and a question) and not a personal ask ("more customers for
    # my bakery").
    if (not has_code and not task.context_refs and len(text) <= _SHELL_TASK_MAX
            and not any(e.kind in ("word_problem", "shell_task")
                        or (e.domain == "null" and e.weight >= 3) for e in evidence)
            and not _any_domain_reaches(evidence, lexicon.min_score)):
        tokens = set(_NOT_ANALYSIS.sub(b" ", separated).split())
        records = {r for r in tokens & _BUSINESS_RECORDS
                   if not tokens & _TECHNICAL_SENSES.get(r, frozenset())}
        if (records and tokens & _ANALYSIS_WORDS and not tokens & _PROGRAM_WORDS
                and not (tokens & _FIRST_PERSON and not lower.startswith(b"tell me "))
                and first_word not in (b"let", b"allow")):
            # ("Let visitors switch the site between English and French" asks for a feature; an
            # analyst's "Tell me which ..." is no personal ask)
            evidence.append(Evidence(1, "data", "analysis_question", "a question about records",
                                     lexicon.analysis_question_weight))

    # Tier 2: the words of a context ref's name ("03_pandas.py", "kafka_consumer.py") count as
    # keywords at file_word_factor of their weight, each once with the text's
    if refs and lexicon.file_word_factor:
        factor = lexicon.file_word_factor
        for ref in refs:
            stem = ref.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
            named = _separated(stem.replace("_", " ").encode())
            for index, _, end in lexicon.automaton.find_matches_as_indexes(named, overlapping=True):
                label, hits, needs_longer = payloads[index][:3]
                if label in done or not hits or (needs_longer and named[end] == 32):
                    continue
                done.add(label)
                evidence += [Evidence(2, hit.domain, "file_word", f"{ref} ({label})", hit.weight * factor)
                             for hit in hits if hit.weight > 0]
    # Tier 2: context refs, and file names mentioned in the text. Several files of one kind are
    # hardly more evidence than one: each further file of a domain counts half the one before.
    if refs or text_files:
        file_hits = []
        documents_only = stylesheets_only = bool(refs)
        for ref in refs:
            hits = _file_hits(lexicon, ref)
            documents_only = documents_only and bool(hits) and (
                all(hit[0] == "docs" for hit in hits) or _names_a_document(lexicon, ref))
            stylesheets_only = stylesheets_only and ref.lower().endswith(_STYLESHEETS)
            file_hits += [(weight, domain, f"{ref} ({label})", "file") for domain, weight, label in hits]
        if text_files:
            ref_names = {ref.rstrip("/").rsplit("/", 1)[-1].lower() for ref in task.context_refs}
            factor = lexicon.text_file_factor
            for name in text_files:
                if name.rsplit("/", 1)[-1] not in ref_names:
                    file_hits += [(weight * factor, domain, f"{name} ({label})", "text_file")
                                  for domain, weight, label in _file_hits(lexicon, name)]
        file_hits.sort(key=_first, reverse=True)  # stable: equal weights keep their order
        per_domain: dict[str, int] = {}
        listed: set[tuple[str, str]] = set()
        for weight, domain, label, kind in file_hits:
            if (domain, label) in listed:
                continue  # the same ref given twice
            listed.add((domain, label))
            n = per_domain.get(domain, 0)
            per_domain[domain] = n + 1
            evidence.append(Evidence(2, domain, kind, label, weight / (2 ** n)))
        if documents_only:
            # every file the task touches is a document (README.md, docs/install.md): so is what
            # it delivers, whatever the text is about (192 labelled tasks, all documentation)
            evidence.append(Evidence(2, "docs", "deliverable", "only documents in the refs",
                                     lexicon.documents_only_weight))
        elif stylesheets_only:
            # every file the task touches is a stylesheet: it delivers a page's look, whatever
            # the page is about ("Style the API docs page ..." with docs/theme/custom.css; 51
            # labelled tasks with a stylesheet in the refs, all web's)
            evidence.append(Evidence(2, "web", "deliverable", "only stylesheets in the refs",
                                     lexicon.documents_only_weight))

    # Tier 1: the team's own work told in another trade's words (see _own_work)
    if not has_code and not task.context_refs and len(text) <= _OWN_WORK_MAX:
        # a question or an analyst's imperative asks about the records, and a making verb for a
        # new part ("Write the onboarding email the app sends ..."): none reports a product's fault
        asks = b"?" in lower or first_word in _ANALYSTS_ASKS or first_word in _MAKING_VERBS
        own = _own_work(separated, evidence, lexicon, asks)
        if own:
            evidence.append(own)

    return decide(evidence, lexicon)


_first = itemgetter(0)
_SUBTASK = re.compile(r"\n\s*sub-?task\b[^:\n]*:", re.IGNORECASE)

# The object of an opening verb ends at the first of these words or at punctuation: "Write [a
# README] for the Helm chart", "Add [comments] to the Dockerfile explaining ...".
_PHRASE_BREAKS = frozenset(b"""for to of in on about that which who with without from into onto
    by at as and or so above below under over before after inside near beside explaining
    describing listing covering showing using why how what when where whether""".split())
_PHRASE_WORDS = 6
_ALPHANUMERIC = re.compile(rb"[a-z0-9]")
# ... and where it goes, after one of these ("Add a table [to the README]")
_DESTINATIONS = frozenset((b"to", b"in", b"into"))
# ... or, for a verb that adds to its object, what it adds ("Annotate the Terraform module with
# comments"; not "Add a CI job with a changelog step")
_ADDS_WITH = frozenset((b"annotate",))
_DESTINATION_WORDS = 5
# "a README section", "a FAQ entry": a part of a deliverable is that deliverable
_DOCUMENT_PARTS = frozenset(b"""entry entries section sections page pages note notes paragraph
    block blocks example examples chapter step steps""".split())
# "Document the payloads" (a verb) and not "Document upload fails" (a noun)
_DETERMINERS = frozenset(b"""the a an our every each all this these those its their your my any
    how what why which when where""".split())
# A later sentence's first word. The object and where it goes lie within a few hundred bytes:
# slicing there keeps a 2 KB task from being copied once per sentence.
# (after a full stop, or after a blank line: the ask under pasted code)
_SENTENCE_START = re.compile(rb"(?:\.\s+|\n[ \t]*\n\s*)([a-z]+)")
_PHRASE_BYTES = 240
_LATER_SENTENCES = 3  # the ask is stated early; a 2 KB log is not searched sentence by sentence


def _noun_phrase(words: list[bytes], start: int, limit: int) -> tuple[list[bytes], bytes, int]:
    """The noun phrase at ``words[start]``: its words, the break word that ended it (b"" at
    punctuation or the limit) and the index after it."""
    phrase: list[bytes] = []
    index = start
    while index < len(words) and len(phrase) < limit:
        word = words[index].strip(b"'\"`*")
        index += 1
        if not word.isalnum() and not _ALPHANUMERIC.search(word):
            continue  # punctuation only ("the //! overview"): neither a word nor an end
        ends = word[-1] in b",:;.!?)"
        word = word.rstrip(b",:;.!?)").split(b".", 1)[0]  # README.md: a README
        if word in _PHRASE_BREAKS:
            return phrase, word, index
        if not word or b"(" in word:
            break
        phrase.append(word)
        if ends:
            break
    return phrase, b"", index


_SPECIFIC = frozenset((b"the", b"our", b"this", b"its", b"each", b"every"))
_SAYS_WHERE = frozenset((b"explain", b"describe", b"note", b"mention", b"state"))
_STYLESHEETS = (".css", ".scss", ".sass", ".less", ".styl")
_CONVERTING_VERBS = frozenset((b"turn", b"convert"))
_MAKING_VERBS = frozenset((b"write", b"add", b"create", b"make", b"draft", b"generate",
                           b"produce", b"prepare"))
_OPERATORS_ARTEFACTS = "devops"  # the trade of [devops.deliverables]: see _deliverable
_WRITING_VERBS = frozenset((b"write", b"draft", b"rewrite", b"make", b"plan", b"suggest",
                            b"prepare", b"revise", b"proofread", b"translate"))


def _named_deliverable(phrase: list[bytes], lexicon: Lexicon) -> tuple[Evidence, ...] | None:
    if not phrase:
        return None
    found = lexicon.deliverables.get(b" ".join(phrase[-2:])) or lexicon.deliverables.get(phrase[-1])
    if not found and len(phrase) > 1 and phrase[-1] in _DOCUMENT_PARTS:
        found = lexicon.deliverables.get(phrase[-2])  # "a troubleshooting entry", "a docs block"
    return found


def _task_deliverable(lower: bytes, first_word: bytes, lexicon: Lexicon) -> tuple[Evidence, ...]:
    """The deliverable of the opening verb; a task that opens with a statement instead gets the
    first of its next few sentences that opens with such a verb ("Our Storybook has no
    descriptions. Write a docs block for ...")."""
    if first_word in lexicon.deliverable_verbs:
        return _deliverable(lower, first_word, lexicon)  # the ask itself; later sentences detail it
    if first_word in _SAYS_WHERE and lower[len(first_word):len(first_word) + 4] == b" in ":
        # "Explain in the header comment what ...": where it is said is the deliverable (not
        # "Explain the comment above the lock": a question about it)
        return _deliverable(lower, first_word, lexicon)
    for sentence in itertools.islice(_SENTENCE_START.finditer(lower), _LATER_SENTENCES):
        verb = sentence.group(1)
        if verb in lexicon.deliverable_verbs:
            found = _deliverable(lower[sentence.start(1):sentence.start(1) + _PHRASE_BYTES], verb,
                                 lexicon)
            if found:
                return found
    return ()


def _deliverable(lower: bytes, verb: bytes, lexicon: Lexicon) -> tuple[Evidence, ...]:
    """Tier 1: the deliverable the task's opening verb asks for, named by the last word (or two)
    of its object: "Write a README for the Helm chart" delivers a README, whatever it is about."""
    words = lower[:_PHRASE_BYTES].split(None, _PHRASE_WORDS + _DESTINATION_WORDS + 2)[1:]
    if verb in lexicon.implied_deliverables:
        # "Document the shell scripts": the verb names the deliverable, its object the subject.
        # Not "Document upload fails": a noun, no determiner after it.
        if words and words[0] in _DETERMINERS:
            return lexicon.implied_deliverables[verb]
        return ()
    if verb in _CONVERTING_VERBS and b"into" in words:
        # "Turn the wiki page about deploying into a tested shell script": what the object
        # becomes is the deliverable, not what it was
        becomes, _, _ = _noun_phrase(words, words.index(b"into") + 1, _PHRASE_WORDS)
        return _named_deliverable(becomes, lexicon) or ()
    phrase, stop, end = _noun_phrase(words, 0, _PHRASE_WORDS)
    found = _named_deliverable(phrase, lexicon)
    if found and found[0].domain == "null" and (phrase[0] in _SPECIFIC
                                                 or verb not in _WRITING_VERBS):
        # "Write the email that the app sends", "Add a card to the dashboard": a piece of the
        # product, not a letter
        return ()
    if found and verb not in _MAKING_VERBS and found[0].domain == _OPERATORS_ARTEFACTS:
        # an operator's artefact is delivered when it is made; "Annotate the workflow with
        # comments" delivers comments, and "Fix the Dockerfile" is left to its words
        found = None
    if found:
        return found
    if stop in _DESTINATIONS or (stop == b"with" and verb in _ADDS_WITH):
        # "Add a 'Supported versions' table to the README", "Fix the typo in the tutorial": what
        # the object goes into is the deliverable (if it is one: code there is only the place)
        place, _, _ = _noun_phrase(words, end, _DESTINATION_WORDS)
        found = _named_deliverable(place, lexicon)
        if found and all(e.weight > 0 for e in found):
            return found
    return ()


# What a terse bug report has and an everyday ask rarely does: an identifier's shape (snake_case,
# camelCase, a call "a.b(", "::", "()", backticks) or a word for something going wrong. Tier 3 may
# decide on less certainty for such a text (see core.router).
_IDENTIFIER_SHAPE = re.compile(r"[A-Za-z]_[A-Za-z]|[a-z][A-Z]|\w\.\w+\(|::|\(\)|`")
_FAILURE_WORD = re.compile(r"\b(?:errors?|exceptions?|crash(?:es|ed)?|fail(?:s|ed|ing|ure)?|bug|"
                           r"warnings?|hangs?|stuck|broken|deadlock|timeout|timed out)\b", re.IGNORECASE)


def looks_technical(text: str) -> bool:
    return bool(_IDENTIFIER_SHAPE.search(text) or _FAILURE_WORD.search(text))


def sharing_domains(extraction: Extraction, lexicon: Lexicon) -> tuple[str, ...]:
    """The other domains that write the leading domain's language, when all the leading domain
    has is files whose extension names only that language (a ``.py`` file, no Python word): the
    words, not the extension, must then say which trade the task is (python or data)."""
    if not extraction.domains:
        return ()
    return _shared_language_files(extraction.evidence, extraction.domains[0], lexicon,
                                  ("file", "text_file"))[0]


# router.toml's weight for a word that names its trade on its own
_UNAMBIGUOUS = 4.0


def lead_rests_on_words(extraction: Extraction, lexicon: Lexicon) -> bool:
    """Whether the leading domain's case is words alone, which tier 3 may weigh against its
    own: no code in the task, no shell one-liner, no file of the task's but a ``.py`` file
    (which every trade writes), and no word that names the trade on its own (weight 4: "nvcc",
    "Node.js", "C++")."""
    top = extraction.domains[0]
    for item in extraction.evidence:
        if item.domain != top or item.weight <= 0:
            continue
        if item.weight >= _UNAMBIGUOUS or item.kind in ("code", "shell_task") or (
                item.kind in ("file", "file_word") and _file_kind(item) not in lexicon.shared_extensions):
            return False
    return True


def _ranked(scores: dict[str, float]) -> list[tuple[str, float]]:
    """Domains best first; equal scores in name order."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _file_kind(item: Evidence) -> str:
    """The extension, name or folder a tier-2 file evidence matched, as tier 2 writes it:
    "a/b.py (.py)" -> ".py"."""
    return item.match.rsplit(" (", 1)[-1].rstrip(")")


def _file_path(item: Evidence) -> str:
    """The path a tier-2 file evidence is about: "a/b.py (.py)" -> "a/b.py"."""
    return item.match.rsplit(" (", 1)[0]


def _hand_lead(scores: dict[str, float], evidence: list[Evidence], top: str, owner: str,
               tier: int, kind: str, match: str) -> list[tuple[str, float]]:
    """``owner`` gains the leading trade's whole score, with evidence of ``kind`` saying why."""
    weight = scores[top]
    scores[owner] += weight
    evidence.append(Evidence(tier, owner, kind, match, weight))
    return _ranked(scores)


def _shared_language_files(evidence: list[Evidence], top: str, lexicon: Lexicon,
                           kinds: tuple[str, ...]) -> tuple[tuple[str, ...], float]:
    """When all of ``top``'s evidence is files of ``kinds`` whose extension other domains write
    too (a ``.py`` file): those domains and the files' weight; otherwise nothing."""
    sharers: tuple[str, ...] = ()
    weight = 0.0
    for item in evidence:
        if item.domain != top or item.weight <= 0:
            continue
        if item.kind not in kinds:
            return (), 0.0
        extension = _file_kind(item)
        if extension not in lexicon.shared_extensions:
            return (), 0.0
        sharers = lexicon.shared_extensions[extension]
        weight += item.weight
    return sharers, weight


def _words_decide_shared_language(ranked: list[tuple[str, float]], scores: dict[str, float],
                                  evidence: list[Evidence], lexicon: Lexicon
                                  ) -> list[tuple[str, float]]:
    """A ``.py`` file says Python, not whose Python: when such files are all the leading domain
    has and the words make a case for a domain that writes the language too (the evidence a
    domain needs to be chosen), the files count for that domain ("Deduplicate the events by
    (user_id, event_id)" in service/events.py is data's). Tier 3 does the same for words that
    name no tool."""
    top = ranked[0][0]
    sharers, shared = _shared_language_files(evidence, top, lexicon, ("file",))
    if not sharers:
        return ranked  # the leading domain has words (or a file) of its own
    words: dict[str, float] = {}
    for item in evidence:
        if item.domain in sharers and item.kind not in ("file", "text_file"):
            words[item.domain] = words.get(item.domain, 0.0) + item.weight
    best = max(sharers, key=lambda domain: words.get(domain, 0.0), default=None)
    if best is None or words.get(best, 0.0) < lexicon.min_score:
        return ranked
    scores[best] += shared
    evidence.append(Evidence(2, best, "shared_language", f"the {top} files, in {best}'s words", shared))
    return _ranked(scores)


def _language_decides_trade(ranked: list[tuple[str, float]], scores: dict[str, float],
                            evidence: list[Evidence], lexicon: Lexicon
                            ) -> list[tuple[str, float]]:
    """When every file the task comes with is one trade's work product (code in its language, a
    Dockerfile, a CI workflow) and the trade its words lead to has no file of its own and does not
    write it, the change is that file: its trade takes the task, and the words say what the file
    is about (DuckDB's optimizer in topn_window_elimination.cpp, about duplicate rows and
    row_number, is C++ work; a workflow that caches pip packages is the pipeline's). In the
    labelled tasks whose files are all one language's code, the label is that language's trade
    (or one that writes it: data's Python, CUDA's host C++) in all but two."""
    top = ranked[0][0]
    writes = lexicon.writes.get(top)
    if writes is None:
        return ranked  # documentation and algorithms are written for code in any language
    owner = None
    kinds = set()
    files = [item for item in evidence if item.kind == "file" and item.weight > 0]
    # a ref's folder says where it lives; its name, when it speaks, says what it is: data's jobs/
    # folder does not make jobs/reindex.py a second trade's file (a folder of the leading trade's
    # own still makes it that trade's: scripts/deploy.py about pods)
    named = {_file_path(item) for item in files if not _file_kind(item).endswith("/")}
    for item in files:
        if item.domain != top and _file_kind(item).endswith("/") and _file_path(item) in named:
            continue
        if item.domain == top or item.domain not in scores or owner not in (None, item.domain):
            return ranked  # the leading trade's own file, files of several trades, or unserved code
        owner = item.domain
        kind = _file_kind(item)
        if kind in lexicon.source_files:
            kinds.add(kind)
    if owner is None or not kinds or kinds & writes:
        return ranked
    return _hand_lead(scores, evidence, top, owner, 2, "source_language",
                      f"{', '.join(sorted(kinds))} files, in {top}'s words")


def _code_asked_in_trades_words(ranked: list[tuple[str, float]], scores: dict[str, float],
                                evidence: list[Evidence], lexicon: Lexicon
                                ) -> list[tuple[str, float]]:
    """Algorithms and documentation are written for code in any language: when such a trade leads
    on its subject's words but the task asks for code (its deliverable is a function, a program, a
    script), it has no file of its own there, and another trade's own words make a case (the
    evidence a domain needs to be chosen), the code is that trade's and the subject says what it
    computes: "Write a C function that computes the GCD with the Euclidean algorithm" is C work,
    however many math words it has."""
    top = ranked[0][0]
    if lexicon.writes.get(top, ()) is not None or not any(
            item.kind == "deliverable" and item.weight < 0 for item in evidence) or any(
            item.domain == top and item.tier == 2 and item.weight > 0 for item in evidence):
        return ranked  # (a README to rewrite is the document's work, whatever the CLI it shows)
    words: dict[str, float] = {}
    for item in evidence:
        if item.kind == "keyword" and item.domain != top and item.domain in scores:
            words[item.domain] = words.get(item.domain, 0.0) + item.weight
    owner = max(words, key=words.__getitem__, default=None)
    if owner is None or words[owner] < lexicon.min_score:
        return ranked
    return _hand_lead(scores, evidence, top, owner, 1, "code_language",
                      f"code asked for, in {top}'s words")


_DELIVERABLE_LEAD = 0.5  # how far above its subject's trade a requested document is lifted


def _deliverable_outweighs_subject(ranked: list[tuple[str, float]], scores: dict[str, float],
                                   evidence: list[Evidence]) -> list[tuple[str, float]]:
    """A document asked for by the opening verb is the deliverable whatever it is about: "Add
    comments to the GPU kernel explaining the tiling scheme" is documentation, however many
    CUDA words explain what the comments are about. Its weight alone was tuned to outweigh a
    subject's words; as the lexicon grows a subject says more, so the deliverable's trade is
    lifted just above the strongest other trade instead (431 labelled tasks with such a
    deliverable: 429 are the deliverable's trade)."""
    trade = None
    for item in evidence:
        if item.kind == "deliverable" and item.weight > 0 and item.domain in scores:
            trade = item.domain
            break
    if trade is None or ranked[0][0] == trade:
        return ranked
    lift = ranked[0][1] - scores[trade] + _DELIVERABLE_LEAD
    scores[trade] += lift
    evidence.append(Evidence(1, trade, "deliverable", "the deliverable, above its subject", lift))
    return _ranked(scores)



def decide(evidence: list[Evidence], lexicon: Lexicon,
           similarities: dict[str, float] | None = None) -> Extraction:
    scores: dict[str, float] = {}
    null_score = unserved_score = 0.0
    tier_of: dict[str, int] = {}
    kinds = set()
    has_source_file = False
    for item in evidence:
        domain, kind = item.domain, item.kind
        kinds.add(kind)
        if domain == "null":
            null_score += item.weight
        elif domain == UNSERVED:
            unserved_score += item.weight
        else:
            scores[domain] = scores.get(domain, 0.0) + item.weight
            if item.tier > tier_of.get(domain, 0):
                tier_of[domain] = item.tier
            if kind == "file":
                has_source_file = True
    word_problem = "word_problem" in kinds
    ranked = _ranked(scores)
    # the rules that move a lead need files or a deliverable: most tasks have neither
    if len(ranked) > 1 and ("file" in kinds or "deliverable" in kinds):
        ranked = _words_decide_shared_language(ranked, scores, evidence, lexicon)
        ranked = _language_decides_trade(ranked, scores, evidence, lexicon)
        ranked = _code_asked_in_trades_words(ranked, scores, evidence, lexicon)
        ranked = _deliverable_outweighs_subject(ranked, scores, evidence)
    extraction = Extraction(scores={d: round(s, 3) for d, s in ranked}, null_score=null_score,
                            unserved_score=unserved_score, evidence=evidence,
                            similarities=similarities)
    if not ranked or ranked[0][1] < lexicon.min_score:
        extraction.non_technical = null_score >= lexicon.min_score and null_score >= unserved_score
        extraction.unserved = not extraction.non_technical and unserved_score >= lexicon.min_score
        return extraction
    top = ranked[0][1]
    # A task that comes with a source file of a domain is technical, whatever words it uses
    # ("add keyboard shortcuts to List.tsx").
    # A word problem is told in everyday words ("a 20% tip on our $50 dinner bill"): they outweigh
    # it only when they say more.
    margin = -0.001 if word_problem and ranked[0][0] == "math" else lexicon.null_margin
    if null_score >= lexicon.min_score and null_score >= top - margin and not has_source_file:
        extraction.non_technical = True
        return extraction
    if unserved_score > top and not has_source_file and any(
            item.domain == UNSERVED and item.kind == "code" for item in evidence):
        # code in a language no specialist serves outweighs the words that describe it: a Swift
        # function whose comment says "divisible by" (not a one-liner that mentions Java)
        extraction.unserved = True
        return extraction
    extraction.domains = [d for d, s in ranked if s >= lexicon.min_score
                          and s >= lexicon.secondary_ratio * top]
    extraction.tier = max(tier_of[d] for d in extraction.domains)
    return extraction
