"""`make install PREFIX=... DESTDIR=...` into a temporary root (docs/operations.md).

Proves that:
- the tree is as documented: hscd and hsc, libhsc static and shared with the SONAME libhsc.so.0,
  the public headers, hsc.pc, hscd(8) and hsc(1), the sample configuration, the systemd unit;
- the shared library exports only hsc_ symbols (the layers' internals and llhttp stay hidden);
- examples/embed.c, as installed, builds with `pkg-config --cflags --libs hsc` alone and serves
  a streamed answer;
- `man -l` renders both pages, and hscd(8) lists every flag `hscd --help` lists;
- the installed hscd accepts the installed sample configuration (--check);
- the systemd units (service and socket) pass `systemd-analyze verify` (when systemd-analyze
  is there).
"""

import os
import re
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse

from hscd import SANITIZE, Hscd, RawConn, binary

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PREFIX = "/opt/hsc"


def run(args, env=None, timeout=300):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(args), p.returncode, out))
    return out


class Install(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hsc-install-")
        cls.dest = os.path.join(cls.tmp, "root")
        cls.build = os.path.dirname(binary())
        run(["make", "-s", "-C", ROOT, "install", "BUILD=" + cls.build, "PREFIX=" + PREFIX,
             "DESTDIR=" + cls.dest, "JOBS=1"])
        cls.prefix = cls.dest + PREFIX

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, rel):
        return os.path.join(self.prefix, rel)

    def test_tree(self):
        for rel in ["bin/hscd", "bin/hsc", "lib/libhsc.a", "lib/libhsc.so", "lib/libhsc.so.0",
                    "include/hsc/hsc.h", "include/hsc/server.h", "include/hsc/client.h",
                    "include/hsc/responder.h", "include/hsc/codec.h",
                    "lib/pkgconfig/hsc.pc", "share/man/man8/hscd.8", "share/man/man1/hsc.1",
                    "etc/hscd/hscd.conf", "lib/systemd/system/hscd.service",
                    "lib/systemd/system/hscd.socket",
                    "share/doc/hsc/examples/embed.c"]:
            self.assertTrue(os.path.exists(self.path(rel)), rel)
        self.assertTrue(os.access(self.path("bin/hscd"), os.X_OK))
        self.assertEqual(os.readlink(self.path("lib/libhsc.so.0")), "libhsc.so.0.1.0")

    def test_soname_and_exports(self):
        dyn = run(["readelf", "-d", self.path("lib/libhsc.so")])
        self.assertIn("Library soname: [libhsc.so.0]", dyn)
        syms = run(["nm", "-D", "--defined-only", self.path("lib/libhsc.so")]).split("\n")
        names = [line.split()[-1] for line in syms if line.strip()]
        self.assertIn("hsc_server_new", names)
        self.assertIn("hsc_server_reload", names)
        self.assertIn("hsc_client_new", names)
        self.assertEqual([n for n in names if not n.startswith("hsc_")], [])

    def test_embed_builds_with_pkg_config_alone(self):
        env = dict(os.environ, PKG_CONFIG_PATH=self.path("lib/pkgconfig"))
        flags = run(["pkg-config", "--cflags", "--libs", "hsc"], env=env).split()
        exe = os.path.join(self.tmp, "embed")
        cc = ["cc"] + (["-fsanitize=address,undefined"] if SANITIZE else [])
        run(cc + ["-o", exe, self.path("share/doc/hsc/examples/embed.c")] + flags, env=env)
        env = dict(os.environ, LD_LIBRARY_PATH=self.path("lib"))
        ldd = run(["ldd", exe], env=env)
        self.assertIn(self.path("lib/libhsc.so.0"), ldd)
        srv = Hscd(program=exe, env=env).start()
        try:
            with RawConn(srv.port) as c:
                c.request("GET", "/v1/stream?q=" + urllib.parse.quote("two words"))
                r = c.read_response(timeout=10)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.chunks, [b"owt\n", b"sdrow\n"])
        finally:
            self.assertEqual(srv.stop(), 0, srv.describe())

    def test_man_pages_render_and_list_every_flag(self):
        env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
        for page in ["share/man/man8/hscd.8", "share/man/man1/hsc.1"]:
            out = run(["man", "-l", "-P", "cat", self.path(page)], env=env)
            self.assertIn("NAME", out)
        page = run(["man", "-l", "-P", "cat", self.path("share/man/man8/hscd.8")], env=env)
        page = re.sub(r".\x08", "", page)
        flags = set(re.findall(r"--[a-z][a-z_-]+", run([binary(), "--help"])))
        self.assertGreater(len(flags), 40)
        self.assertEqual(sorted(f for f in flags if f not in page), [])

    def test_sample_configuration_checks(self):
        out = run([self.path("bin/hscd"), "--check", "--config",
                   self.path("etc/hscd/hscd.conf")])
        self.assertIn("configuration OK", out)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_systemd_unit_verifies(self):
        with open(self.path("lib/systemd/system/hscd.service"), encoding="utf-8") as f:
            unit = f.read()
        for key in ["DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=hscd",
                    "LimitNOFILE=", "ExecReload=/bin/kill -HUP $MAINPID"]:
            self.assertIn(key, unit)
        # The unit names /usr/bin/hscd; verify it against the copy installed here.
        unit = unit.replace("/usr/bin/hscd", self.path("bin/hscd"))
        path = os.path.join(self.tmp, "hscd.service")
        with open(path, "w", encoding="utf-8") as f:
            f.write(unit)
        shutil.copy(self.path("lib/systemd/system/hscd.socket"), self.tmp)
        run(["systemd-analyze", "verify", "--man=no", path, os.path.join(self.tmp, "hscd.socket")])


if __name__ == "__main__":
    unittest.main()
