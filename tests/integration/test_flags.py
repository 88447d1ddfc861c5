"""hscd's flags table (src/hscd/flags.c) and what is generated from it.

Proves that:
- docs/hscd.md's flag section is byte-identical to `hscd --help-markdown` (the table as
  Markdown), so the docs cannot drift from the code;
- every flag of the table is listed once in `hscd --help`, with the same value name and default
  as in the docs; the hidden --help-markdown is not listed;
- an unknown flag, a missing value, a value given to a switch and a bad value exit 2 with a
  message naming the flag as typed and, for a bad value, what a good one looks like; a bad token
  in the environment names the variable without repeating its value;
- the aliases (the Python template's --server_ip, --server_port, --max_gen_len and the dashed
  forms) and the --name=value form set what their flags set.
"""

import difflib
import os
import re
import subprocess
import unittest

from hscd import HOST, ServerTestCase, binary, pieces, run_hscd

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "hscd.md")
BEGIN = "<!-- hscd-flags:begin -->"
END = "<!-- hscd-flags:end -->"
REGENERATE = ("docs/hscd.md's flag table differs from `hscd --help-markdown`: after changing "
              "src/hscd/flags.c, rebuild and run scripts/gen-flag-docs.sh, then commit "
              "docs/hscd.md")

# | `--name` | `METAVAR` | `default` | text |   (or | `-h`, `--help` | ...)
_ROW = re.compile(r"^\| (?:`-\w`, )?`--([a-z_-]+)` \| (?:`([^`]*)`)? \| (?:`([^`]*)`)? \| ")


def markdown():
    rc, out, err = run_hscd(["--help-markdown"])
    if rc != 0:
        raise AssertionError("hscd --help-markdown exited %d: %s" % (rc, err))
    return out


def table_rows():
    """(flag, metavar or None, default or None) for each row of the Markdown table."""
    rows = [m.groups() for m in map(_ROW.match, markdown().splitlines()) if m]
    if len(rows) < 40:
        raise AssertionError("only %d flags in hscd --help-markdown" % len(rows))
    return rows


class GeneratedDocs(unittest.TestCase):

    def test_doc_section_is_what_help_markdown_prints(self):
        with open(DOC, encoding="utf-8") as f:
            doc = f.read()
        self.assertEqual(doc.count(BEGIN + "\n"), 1, "%s: no single %s line" % (DOC, BEGIN))
        self.assertEqual(doc.count(END + "\n"), 1, "%s: no single %s line" % (DOC, END))
        start = doc.index(BEGIN + "\n")
        section = doc[start:doc.index(END + "\n", start) + len(END) + 1]
        generated = markdown()
        self.assertTrue(generated.startswith(BEGIN + "\n") and generated.endswith(END + "\n"),
                        "hscd --help-markdown does not print the markers:\n" + generated)
        if section != generated:
            diff = difflib.unified_diff(section.splitlines(True), generated.splitlines(True),
                                        "docs/hscd.md", "hscd --help-markdown", n=1)
            self.fail(REGENERATE + "\n" + "".join(diff))


class HelpFromTheTable(unittest.TestCase):

    def test_every_flag_is_in_help_with_its_value_and_default(self):
        rc, out, err = run_hscd(["--help"])
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        for flag, metavar, default in table_rows():
            with self.subTest(flag=flag):
                # "  --name METAVAR" then two spaces or the line's end (a long one wraps)
                head = re.compile(r"^  (?:-\w, )?--%s(?![\w-])(?: (\S.*?))?(?:  |$)"
                                  % re.escape(flag))
                idx = [i for i, l in enumerate(lines) if head.match(l)]
                self.assertEqual(len(idx), 1, "--%s is not listed once in --help:\n%s"
                                 % (flag, out))
                self.assertEqual(head.match(lines[idx[0]]).group(1), metavar,
                                 "--%s: --help and the docs name its value differently" % flag)
                # the entry: its line and the indented lines up to the next flag or heading
                entry = [lines[idx[0]]]
                for l in lines[idx[0] + 1:]:
                    if not l.startswith("    ") or l.lstrip().startswith("-"):
                        break
                    entry.append(l)
                m = re.search(r"\(default ([^)]*)\)", " ".join(entry))
                self.assertEqual(m.group(1) if m else None, default,
                                 "--%s: --help and the docs show different defaults" % flag)

    def test_help_markdown_is_hidden(self):
        rc, out, _ = run_hscd(["--help"])
        self.assertEqual(rc, 0)
        self.assertNotIn("--help-markdown", out)
        self.assertNotIn("help-markdown", [f for f, _, _ in table_rows()])


class Errors(unittest.TestCase):

    def check(self, args, *needles, env=None):
        if env is None:
            rc, _, err = run_hscd(args)
        else:
            proc = subprocess.run([binary()] + args, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=10)
            rc, err = proc.returncode, proc.stderr.decode("utf-8", "replace")
        self.assertEqual(rc, 2, "%s: exit %d, stderr %r" % (args, rc, err))
        for n in needles:
            self.assertIn(n, err, "%s: the message lacks %r" % (args, n))
        self.assertNotIn("listening", err)
        return err

    def test_unknown_flags(self):
        self.check(["--no-such-flag"], "unknown option '--no-such-flag'", "hscd --help")
        self.check(["--no-such-flag=1"], "--no-such-flag", "hscd --help")

    def test_missing_value_and_switch_with_a_value(self):
        self.check(["--history-age"], "--history-age needs a value")
        self.check(["--server_port"], "--server_port needs a value")
        self.check(["--legacy-get=1"], "--legacy-get takes no value")

    def test_bad_values_name_the_flag_and_the_fix(self):
        for args, fix in [
            (["--max-header-bytes", "10"], "256 to 65535"),
            (["--max-queue-bytes", "5g"], "4k to 4g"),
            (["--threads", "1000"], "1 to 256"),
            (["--history", "-3"], "0 to 1000000"),
            (["--retry", "2d"], "a duration such as 2s"),
            (["--history-age", "0"], "a duration"),
            (["--log-level", "chatty"], "error, warn, notice, info, debug"),
            (["--stream-token", "two words"], "no spaces"),
            (["--exec", ""], "a command"),
            (["--cors-origin", ""], "origins such as"),
            (["--max-gen-len=many"], "0 to 1000000"),
            (["--server_port", "65536"], "0 to 65535"),
            (["--server-port", "x"], "0 to 65535"),
        ]:
            with self.subTest(args=args):
                flag = args[0].split("=")[0]
                value = args[1] if len(args) > 1 else args[0].split("=")[1]
                self.check(args, "%s: invalid value '%s'" % (flag, value), fix)

    def test_a_bad_token_in_the_environment_is_named_not_shown(self):
        env = dict(os.environ, HSC_SUBSCRIBE_TOKEN="secret with spaces")
        err = self.check(["--listen", HOST + ":0"], "$HSC_SUBSCRIBE_TOKEN", "no spaces", env=env)
        self.assertNotIn("secret", err)


class Aliases(ServerTestCase):

    def answer(self, srv, text):
        with srv.connect() as c:
            c.request("GET", "/v1/stream?q=" + text)
            r = c.read_response()
        self.assertTrue(r.complete, r)
        return r.text()

    def test_template_spellings(self):
        srv = self.start("--server_ip", HOST, "--server_port", "0", "--max_gen_len", "2",
                         listen=None)
        self.assertIn("listening on http://%s:%d" % (HOST, srv.port), srv.log())
        self.assertEqual(self.answer(srv, "t"), "".join(pieces(2, "t")))

    def test_dashed_spellings_and_equals_form(self):
        srv = self.start("--server-ip=" + HOST, "--server-port=0", "--max-gen-len=3",
                         listen=None)
        self.assertIn("listening on http://%s:%d" % (HOST, srv.port), srv.log())
        self.assertEqual(self.answer(srv, "d"), "".join(pieces(3, "d")))


if __name__ == "__main__":
    unittest.main()
