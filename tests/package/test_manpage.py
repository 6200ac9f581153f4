#!/usr/bin/env python3
"""The man page (packaging/interactor-connector.1) against the binary it documents:

- every command `interactor-connector --help` lists is a command of the page's COMMANDS
  section and is in its SYNOPSIS;
- every long option a command's --help lists is in that command's part of the page;
- the page's version is the binary's;
- `man -l` renders it, with groff's warnings on, and prints no warning.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
from pkglib import Runner, expect, main_guard, run  # noqa: E402


def help_commands(binary):
    out = run([binary, "--help"]).stdout
    section = out.split("commands:", 1)[1].split("\n\n", 1)[0]
    cmds = [line.split()[0] for line in section.splitlines() if line.strip()]
    expect(len(cmds) >= 5, "cannot read the commands of --help:\n" + out)
    return cmds


def help_options(binary, cmd):
    p = run([binary, cmd, "--help"], check=False)
    expect(p.returncode == 0, "%s --help exited %d" % (cmd, p.returncode))
    return sorted(set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", p.stdout)) - {"help"})


def plain(roff):
    """The roff source with the escapes these pages use turned into text."""
    s = roff.replace("\\-", "-").replace("\\(dq", '"').replace("\\(aq", "'").replace("\\e", "\\")
    s = re.sub(r"\\f[BIRP]", "", s)
    s = s.replace("\\c", "")
    return s


def sections(text):
    """{section name: text} of the .SH sections."""
    parts = re.split(r"^\.SH +(.+)$", text, flags=re.M)
    return {parts[i].strip().strip('"'): parts[i + 1] for i in range(1, len(parts), 2)}


def command_blocks(commands_text):
    """{command word: its text} in COMMANDS. A command is the tag of a .TP outside .RS/.RE
    (".BR version \", \" --version" names two); its text runs to the next such tag or .PP."""
    blocks, depth, names = {}, 0, []
    lines = commands_text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".RS"):
            depth += 1
        elif line.startswith(".RE"):
            depth -= 1
        elif line.startswith(".TP") and depth == 0 and i + 1 < len(lines):
            tag = re.sub(r"^\.[A-Z]+ ", "", lines[i + 1])
            names = re.findall(r"[a-z][a-z-]*|--?[a-z]+", tag.replace('"', " "))
            for w in names:
                blocks.setdefault(w, []).append(tag)
            i += 2
            continue
        elif line.startswith(".PP") and depth == 0:
            names = []
        for w in names:
            blocks[w].append(line)
        i += 1
    return {k: "\n".join(v) for k, v in blocks.items()}


def test_commands(args, page):
    secs = sections(page)
    expect("COMMANDS" in secs and "SYNOPSIS" in secs, "no COMMANDS or SYNOPSIS section")
    blocks = command_blocks(secs["COMMANDS"])
    missing = [c for c in help_commands(args.binary) if c not in blocks]
    expect(not missing, "commands of --help not described in COMMANDS: %s" % missing)
    synopsis = secs["SYNOPSIS"]
    missing = [c for c in help_commands(args.binary)
               if not re.search(r"^\.B %s$" % re.escape(c), synopsis, flags=re.M)]
    expect(not missing, "commands of --help missing from the SYNOPSIS: %s" % missing)


def test_options(args, page):
    blocks = command_blocks(sections(page)["COMMANDS"])
    missing = []
    for cmd in help_commands(args.binary):
        if cmd == "version":
            continue
        for opt in help_options(args.binary, cmd):
            if "--" + opt not in blocks.get(cmd, ""):
                missing.append("%s --%s" % (cmd, opt))
    expect(not missing, "options of <command> --help not described under their command: %s"
           % missing)


def test_version(args, page):
    m = re.search(r'^\.TH .*"interactor-connector ([0-9.]+)"', page, flags=re.M)
    expect(m, "no version in .TH")
    out = run([args.binary, "version"]).stdout
    expect(out.split()[1] == m.group(1), "the page says %s, the binary %s" % (m.group(1), out.strip()))


def test_renders(args, page):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    env.pop("MAN_KEEP_FORMATTING", None)
    p = run(["man", "--warnings", "-E", "UTF-8", "-l", args.manpage], env=env, check=False)
    expect(p.returncode == 0, "man -l exited %d: %s" % (p.returncode, p.stderr))
    expect(not p.stderr.strip(), "man -l warned:\n" + p.stderr)
    text = p.stdout
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "FILES"):
        expect(re.search(r"^%s$" % heading, text, flags=re.M), "rendered page has no " + heading)
    expect("check-config" in text and "--no-connect" in text, "rendered page lacks content")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--manpage", required=True)
    args = ap.parse_args()
    with open(args.manpage) as f:
        page = plain(f.read())
    r = Runner()
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            if name == "test_renders" and not os.path.exists("/usr/bin/man"):
                print("SKIP test_renders: man is not installed (apt-get install man-db)")
                continue
            r.run(name, fn, args, page)
    return r.finish()


if __name__ == "__main__":
    main_guard(main)
