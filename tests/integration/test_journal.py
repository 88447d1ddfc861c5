"""The journal (--data-dir, --fsync; docs/internals/journal.md), seen from real clients.

Proves that:
- hscd keeps its journal in ./hsc-data by default (created on start), and --data-dir none keeps
  nothing (a restart starts a new epoch);
- after SIGTERM or kill -9 and a restart on the same directory, history, the epoch and the ids
  continue: a subscriber resuming with its last id gets exactly the rest and no hsc.gap, new
  publishes continue the sequence, --history limits apply to what is replayed, and a resume from
  before what history kept gets hsc.gap (expired);
- a second hscd on the same directory fails at start naming the first one's pid;
- crash: publishers run flat out with --fsync always (and batch), hscd is killed with SIGKILL at
  random moments several times; after each restart every acknowledged publish is there once, in
  order, and a subscriber that was live resumes with its last id and gets exactly the rest (no
  gap, no duplicate); the npm `eventsource` client stays subscribed across kill -9 and a restart
  on the same port and sees every message once;
- damage: a torn last record is cut off, a flipped byte in the middle skips one record (logged,
  counted in /metrics, resumes across it get hsc.gap, still after compaction has removed the
  damaged segment), an empty segment is removed, a segment of
  a newer format, a damaged meta file and a directory that cannot be created stop the start with
  exit status 1 and a message;
- a full disk (RLIMIT_FSIZE lowered on the running process) turns publishes into 503 with the
  reason and Retry-After while subscribers are still served; once the limit is raised, publishes
  work again, and after a restart exactly the acknowledged events are there;
- compaction keeps the journal's bytes within the documented bound while thousands of events go
  through small segments, and what history held survives a restart.
"""

import json
import os
import random
import resource
import shutil
import signal
import tempfile
import threading
import time

from hscd import HOST, SLOW, Hscd, RawConn, ServerTestCase, binary, free_port, run_hscd, wait_for
from test_channels import Publisher, Sub, metric, metrics, publish_target, split_id, sys_print
from test_eventsource import EsClient


class JournalCase(ServerTestCase):
    """Servers on a data directory of the test's own, which outlives restarts."""

    def data_dir(self):
        d = tempfile.mkdtemp(prefix="hsc-journal-test-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def launch(self, d, *args, listen=HOST + ":0"):
        """An hscd on `d` that the test may kill: the cleanup kills it by PID if still running."""
        s = Hscd("--data-dir", d, *args, listen=listen)
        self._servers.append(s)
        self.addCleanup(lambda: s._kill() if s.running() else None)
        return s.start()

    def stop_ok(self, s):
        self.stop_clean(s)

    def kill9(self, s):
        s.send_signal(signal.SIGKILL)
        s.wait(10 * SLOW)

    def publisher(self, srv):
        p = Publisher(srv)
        self.addCleanup(p.close)
        return p

    def sub(self, srv, channels, **kw):
        s = Sub(srv, channels, **kw)
        self.addCleanup(s.close)
        s.head()
        return s

    def all_events(self, srv, channel, marker):
        """Everything history holds on `channel`, read until an event whose data is `marker`."""
        s = self.sub(srv, [channel], query_id="earliest")
        s.wait(lambda: any(e.data == marker for e in s.events), 30, "the marker " + marker)
        s.close()
        return s.events


class Restart(JournalCase):

    def test_default_directory_is_created_in_the_working_directory(self):
        cwd = tempfile.mkdtemp(prefix="hsc-cwd-")
        self.addCleanup(shutil.rmtree, cwd, True)
        s = Hscd(program=binary(), cwd=cwd)
        self._servers.append(s)
        self.addCleanup(self.stop_clean, s)
        s.start()
        self.publisher(s).publish("room", "kept")
        self.assertTrue(os.path.isfile(os.path.join(cwd, "hsc-data", "meta")))
        self.assertTrue(any(n.startswith("seg-") for n in os.listdir(os.path.join(cwd, "hsc-data"))))

    def test_data_dir_none_keeps_nothing(self):
        cwd = tempfile.mkdtemp(prefix="hsc-cwd-")
        self.addCleanup(shutil.rmtree, cwd, True)
        s = Hscd("--data-dir", "none", cwd=cwd)
        self._servers.append(s)
        self.addCleanup(self.stop_clean, s)
        s.start()
        first = self.publisher(s).publish("room", "gone")["id"]
        self.stop_clean(s)
        self.assertEqual(os.listdir(cwd), [])
        s2 = self.start("--data-dir", "none")
        second = self.publisher(s2).publish("room", "new")["id"]
        self.assertNotEqual(split_id(first)[0], split_id(second)[0])
        self.assertNotIn("hsc_journal_bytes", metrics(s2))

    def check_restart(self, how):
        d = self.data_dir()
        srv = self.launch(d, "--threads", "2")
        p = self.publisher(srv)
        live = self.sub(srv, ["a", "b"])
        ids = [p.publish("a" if i % 3 else "b", "m%d" % i)["id"] for i in range(30)]
        live.wait_events(12)
        last = live.events[11].id
        live.close()
        p.close()
        if how == "term":
            self.stop_ok(srv)
        else:
            self.kill9(srv)
        srv2 = self.launch(d, "--threads", "2")
        again = self.sub(srv2, ["a", "b"], last_event_id=last)
        p2 = self.publisher(srv2)
        nxt = p2.publish("a", "after")["id"]
        self.assertEqual(split_id(nxt)[0], split_id(ids[0])[0], "the epoch changed")
        self.assertEqual(split_id(nxt)[1], split_id(ids[-1])[1] + 1, "the sequence did not go on")
        again.wait(lambda: any(e.data == "after" for e in again.events), 10, "the new event")
        got = [(e.id, e.data) for e in again.events]
        want = [(ids[i], "m%d" % i) for i in range(12, 30)] + [(nxt, "after")]
        self.assertEqual(got, want)
        self.assertEqual(metric(srv2, "hsc_resumes_missed_total"), 0)
        return srv2

    def test_sigterm_then_resume_exactly(self):
        srv = self.check_restart("term")
        self.stop_ok(srv)

    def test_kill9_then_resume_exactly(self):
        srv = self.check_restart("kill")
        self.stop_ok(srv)

    def test_history_limits_apply_to_the_replay(self):
        d = self.data_dir()
        srv = self.launch(d)
        p = self.publisher(srv)
        ids = [p.publish("h", "e%d" % i)["id"] for i in range(20)]
        p.close()
        self.stop_ok(srv)
        srv2 = self.launch(d, "--history", "5")
        s = self.sub(srv2, ["h"], query_id="earliest")
        s.wait_events(5)
        self.assertEqual([e.data for e in s.events[:5]], ["e%d" % i for i in range(15, 20)])
        old = self.sub(srv2, ["h"], last_event_id=ids[3])
        old.wait_events(6)
        self.assertEqual(old.events[0].type, "hsc.gap")
        self.assertIn("expired", old.events[0].data)
        self.assertEqual([e.data for e in old.events[1:6]], ["e%d" % i for i in range(15, 20)])
        self.stop_ok(srv2)

    def test_second_hscd_on_the_same_directory_fails(self):
        d = self.data_dir()
        srv = self.launch(d)
        rc, _, err = run_hscd(["--listen", HOST + ":0", "--data-dir", d])
        self.assertEqual(rc, 1, err)
        self.assertIn("in use by another hscd (pid %d)" % srv.proc.pid, err)
        self.stop_ok(srv)

    def test_metrics(self):
        d = self.data_dir()
        srv = self.launch(d, "--fsync", "always")
        p = self.publisher(srv)
        for i in range(10):
            p.publish("m", "x%d" % i)
        m = metrics(srv)
        self.assertGreaterEqual(m["hsc_journal_fsyncs_total"], 1)
        self.assertEqual(m["hsc_journal_records_total"], 10)
        self.assertGreaterEqual(m["hsc_journal_writes_total"], 1)
        self.assertGreater(m["hsc_journal_bytes"], 10 * 30)
        self.assertEqual(m["hsc_journal_segments"], 1)
        self.assertEqual(m["hsc_journal_records_skipped_total"], 0)
        self.assertEqual(m["hsc_journal_failing"], 0)
        self.assertGreater(m["hsc_journal_write_seconds_sum"], 0)
        self.stop_ok(srv)


class Racer(threading.Thread):
    """Publishes to one channel as fast as its connection allows until the server goes away;
    keeps what was acknowledged, in order."""

    def __init__(self, srv, channel, tag):
        super().__init__(daemon=True)
        self.port = srv.port
        self.channel = channel
        self.tag = tag
        self.acked = []
        self.stopped = threading.Event()

    def run(self):
        i = 0
        try:
            with RawConn(self.port, timeout=10 * SLOW) as c:
                while not self.stopped.is_set():
                    data = "%s-%d" % (self.tag, i)
                    c.request("POST", publish_target(self.channel), body=data.encode())
                    r = c.read_response()
                    if r.status != 200:
                        return
                    self.acked.append((json.loads(r.body.decode("utf-8"))["id"], data))
                    i += 1
        except (OSError, AssertionError):
            return


class Crash(JournalCase):

    def crash_rounds(self, fsync, rounds):
        d = self.data_dir()
        args = ["--fsync", fsync, "--threads", "2", "--history", "1000000", "--history-bytes",
                "1g"]
        srv = self.launch(d, *args)
        rng = random.Random(15)
        journal = []  # every event of every round, as read back after the restarts
        total_acked = 0
        for rnd in range(rounds):
            live = self.sub(srv, ["crash"])
            racers = [Racer(srv, "crash", "r%d.%d" % (rnd, k)) for k in range(4)]
            for r in racers:
                r.start()
            time.sleep(rng.uniform(0.3, 1.0))
            try:
                live.listen(0.05)
            except OSError:
                pass
            self.kill9(srv)
            for r in racers:
                r.stopped.set()
                r.join(10)
            live.read_to_end(5)
            seen = [(e.id, e.data) for e in live.events]
            srv = self.launch(d, *args)
            marker = "end-%d" % rnd
            last = seen[-1][0] if seen else None
            resumed = self.sub(srv, ["crash"], last_event_id=last) if last else None
            self.publisher(srv).publish("crash", marker)
            events = [(e.id, e.data) for e in self.all_events(srv, "crash", marker)]
            self.assertFalse([e for e in events if e[0] is None], "a gap in the earliest replay")
            seqs = [split_id(i)[1] for i, _ in events]
            self.assertEqual(seqs, sorted(set(seqs)), "ids not increasing or repeated")
            datas = [x for _, x in events]
            self.assertEqual(len(datas), len(set(datas)), "an event twice")
            have = set(events)
            acked = [a for r in racers for a in r.acked]
            total_acked += len(acked)
            lost = [a for a in acked if a not in have]
            self.assertEqual(lost, [], "acknowledged publishes lost (round %d)" % rnd)
            for r in racers:  # each publisher's events in the order it published them
                pos = [events.index(a) for a in r.acked]
                self.assertEqual(pos, sorted(pos))
            round_events = events[len(journal):]
            journal = events
            if resumed is not None:
                resumed.wait(lambda: any(e.data == marker for e in resumed.events), 30, marker)
                gaps = [e for e in resumed.events if e.type == "hsc.gap"]
                self.assertEqual(gaps, [], "a resume after the crash got a gap")
                got = seen + [(e.id, e.data) for e in resumed.events]
                self.assertEqual(got, round_events, "live + resumed != what the journal holds")
            sys_print("journal crash round %d (--fsync %s): %d acknowledged, %d in the journal "
                      "this round (%d written but unanswered), live subscriber saw %d, 0 lost"
                      % (rnd, fsync, len(acked), len(round_events) - 1,
                         len(round_events) - 1 - len(acked), len(seen)))
        self.assertGreater(total_acked, 0)
        self.stop_ok(srv)

    def test_kill9_with_fsync_always(self):
        self.crash_rounds("always", 4)

    def test_kill9_with_fsync_batch(self):
        self.crash_rounds("batch", 3)

    def test_eventsource_client_across_kill9(self):
        d = self.data_dir()
        port = free_port()
        listen = "%s:%d" % (HOST, port)
        srv = self.launch(d, "--retry", "200ms", listen=listen)
        es = EsClient("http://%s/v1/events?channel=es" % listen, until="end", timeout=60)
        self.addCleanup(es.close)
        self.assertTrue(wait_for(lambda: es.of("open"), 20), "no open: %r" % es.lines)
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_subscribers") == 1, 5))
        p = Publisher(srv)
        sent = [p.publish("es", "one-%d" % i)["id"] for i in range(20)]
        self.assertTrue(wait_for(lambda: len(es.events()) == 20, 10))
        p.close()
        self.kill9(srv)
        srv = self.launch(d, "--retry", "200ms", listen=listen)
        p = Publisher(srv)
        sent += [p.publish("es", "two-%d" % i)["id"] for i in range(20)]
        self.assertTrue(wait_for(lambda: len(es.of("connect")) >= 2 and
                                 metric(srv, "hsc_subscribers") == 1, 20), es.lines[-5:])
        sent.append(p.publish("es", "end")["id"])
        p.close()
        status, err = es.wait_exit()
        self.assertEqual(status, 0, err)
        evs = es.events()
        self.assertEqual([e["id"] for e in evs], sent)
        self.assertEqual([e["data"] for e in evs],
                         ["one-%d" % i for i in range(20)] + ["two-%d" % i for i in range(20)]
                         + ["end"])
        self.assertFalse([e for e in evs if e["type"] == "hsc.gap"])
        self.stop_ok(srv)


def segments(d):
    return sorted(n for n in os.listdir(d) if n.startswith("seg-"))


class Damage(JournalCase):

    def filled(self, n=10):
        """A directory holding events e0..e{n-1} on channel "d", after a clean stop."""
        d = self.data_dir()
        srv = self.launch(d)
        p = self.publisher(srv)
        ids = [p.publish("d", "e%d" % i)["id"] for i in range(n)]
        p.close()
        self.stop_ok(srv)
        return d, ids

    def test_torn_last_record_is_cut_off(self):
        d, ids = self.filled()
        seg = os.path.join(d, segments(d)[0])
        size = os.path.getsize(seg)
        os.truncate(seg, size - 3)
        srv = self.launch(d)
        self.assertIn("incomplete last record", srv.log())
        self.assertLess(os.path.getsize(seg), size - 3)  # cut at the last whole record
        evs = self.all_events(srv, "d", "e8")
        self.assertEqual([e.data for e in evs], ["e%d" % i for i in range(9)])
        s = self.sub(srv, ["d"], last_event_id=ids[5])
        nxt = self.publisher(srv).publish("d", "next")["id"]
        s.wait(lambda: any(e.data == "next" for e in s.events), 10, "next")
        self.assertEqual([e.data for e in s.events], ["e6", "e7", "e8", "next"])
        self.assertEqual(split_id(nxt)[1], split_id(ids[8])[1] + 1)
        self.stop_ok(srv)

    def test_flipped_byte_in_the_middle_skips_one_record(self):
        d, ids = self.filled()
        seg = os.path.join(d, segments(d)[0])
        with open(seg, "r+b") as f:
            data = f.read()
            at = data.index(b"e4")
            f.seek(at)
            f.write(b"X")
        srv = self.launch(d)
        self.assertEqual(srv.log().count("damaged record"), 1, srv.log())
        self.assertEqual(metric(srv, "hsc_journal_records_skipped_total"), 1)
        evs = self.all_events(srv, "d", "e9")
        self.assertEqual([e.data for e in evs], ["e%d" % i for i in range(10) if i != 4])
        across = self.sub(srv, ["d"], last_event_id=ids[2])
        across.wait_events(7)
        self.assertEqual(across.events[0].type, "hsc.gap")
        self.assertIn("expired", across.events[0].data)
        after = self.sub(srv, ["d"], last_event_id=ids[6])
        self.publisher(srv).publish("d", "next")
        after.wait(lambda: any(e.data == "next" for e in after.events), 10, "next")
        self.assertEqual([e.data for e in after.events], ["e7", "e8", "e9", "next"])
        self.stop_ok(srv)

    def test_a_loss_is_still_reported_after_compaction(self):
        d, ids = self.filled()
        first = os.path.join(d, segments(d)[0])
        with open(first, "r+b") as f:
            data = f.read()
            f.seek(data.index(b"e4"))
            f.write(b"X")
        args = ["--journal-segment-size", "4k", "--history", "10"]
        srv = self.launch(d, *args)
        p = self.publisher(srv)
        for i in range(200):
            p.publish("other-%d" % (i % 4), "filler %d %s" % (i, "z" * 80))
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_journal_compactions_total") >= 1, 10))
        self.assertTrue(wait_for(lambda: not os.path.exists(first), 10), segments(d))
        p.close()
        self.kill9(srv)
        srv2 = self.launch(d, *args)
        self.assertEqual(metric(srv2, "hsc_journal_records_skipped_total"), 0)  # gone now
        across = self.sub(srv2, ["d"], last_event_id=ids[2])
        across.wait_events(7)
        self.assertEqual(across.events[0].type, "hsc.gap")
        self.assertIn("expired", across.events[0].data)
        self.stop_ok(srv2)

    def test_damaged_segment_header_is_moved_aside(self):
        d, ids = self.filled()
        seg = segments(d)[0]
        with open(os.path.join(d, seg), "r+b") as f:
            f.write(b"X")
        srv = self.launch(d)
        self.assertIn("damaged header", srv.log())
        self.assertTrue(os.path.exists(os.path.join(d, seg + ".damaged")))
        self.assertEqual(metric(srv, "hsc_journal_records_skipped_total"), 1)
        s = self.sub(srv, ["d"], last_event_id=ids[5])
        nxt = self.publisher(srv).publish("d", "next")["id"]
        self.assertGreater(split_id(nxt)[1], 1 << 32, "ids of the lost events could come again")
        s.wait(lambda: any(e.data == "next" for e in s.events), 10, "next")
        self.assertEqual(s.events[0].type, "hsc.gap")
        self.assertIn("expired", s.events[0].data)
        self.stop_ok(srv)

    def test_zero_length_segment_is_removed(self):
        d, ids = self.filled()
        empty = os.path.join(d, "seg-00000000000000ff.hsj")
        open(empty, "wb").close()
        srv = self.launch(d)
        self.assertFalse(os.path.exists(empty))
        self.assertIn("is empty", srv.log())
        evs = self.all_events(srv, "d", "e9")
        self.assertEqual(len(evs), 10)
        self.stop_ok(srv)

    def test_newer_format_refuses_to_start(self):
        d, _ = self.filled()
        seg = os.path.join(d, segments(d)[0])
        with open(seg, "r+b") as f:
            f.seek(8)
            f.write(b"\x09")
        rc, _, err = run_hscd(["--listen", HOST + ":0", "--data-dir", d])
        self.assertEqual(rc, 1, err)
        self.assertIn("newer hscd (journal format 9", err)
        self.assertIn("cannot start", err)

    def test_damaged_meta_refuses_to_start(self):
        d, _ = self.filled()
        with open(os.path.join(d, "meta"), "w") as f:
            f.write("garbage\n")
        rc, _, err = run_hscd(["--listen", HOST + ":0", "--data-dir", d])
        self.assertEqual(rc, 1, err)
        self.assertIn("'meta' is not an hsc journal's", err)

    def test_directory_that_cannot_be_created(self):
        d = self.data_dir()
        blocker = os.path.join(d, "file")
        open(blocker, "w").close()
        rc, _, err = run_hscd(["--listen", HOST + ":0", "--data-dir",
                               os.path.join(blocker, "sub")])
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot create it", err)
        self.assertIn("--data-dir none", err)
        if os.geteuid() != 0:  # root writes anywhere: a read-only directory stops only others
            ro = os.path.join(d, "ro")
            os.mkdir(ro, 0o500)
            rc, _, err = run_hscd(["--listen", HOST + ":0", "--data-dir", ro])
            self.assertEqual(rc, 1, err)
            self.assertIn("must be writable", err)


class DiskFull(JournalCase):

    def test_rlimit_fsize_gives_503_then_recovers_always(self):
        self.check_full("always")

    def test_rlimit_fsize_gives_503_then_recovers_batch(self):
        self.check_full("batch")

    def check_full(self, fsync):
        d = self.data_dir()
        srv = self.launch(d, "--fsync", fsync)
        p = self.publisher(srv)
        ok = [p.publish("full", "before-%d" % i)["id"] for i in range(5)]
        seg = os.path.join(d, segments(d)[-1])
        limit = os.path.getsize(seg) + 40
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        watcher = self.sub(srv, ["full"], query_id="earliest")
        watcher.wait_events(5)
        refused = 0
        for i in range(5):
            r = p.post(publish_target("full"), "x" * 100)
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.header("Retry-After"), "1")
            self.assertIn("journal: cannot write", r.text())
            refused += 1
        self.assertEqual(metric(srv, "hsc_journal_failing"), 1)
        self.assertGreaterEqual(metric(srv, "hsc_journal_write_errors_total"), 5)
        late = self.sub(srv, ["full"], query_id="earliest")  # subscribers are still served
        late.wait_events(5)
        self.assertEqual([e.data for e in late.events[:5]], ["before-%d" % i for i in range(5)])
        resource.prlimit(srv.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        ok.append(p.publish("full", "after")["id"])
        self.assertEqual(metric(srv, "hsc_journal_failing"), 0)
        watcher.wait(lambda: any(e.data == "after" for e in watcher.events), 10, "after")
        self.assertIn("works again", srv.log())
        p.close()
        self.kill9(srv)
        srv2 = self.launch(d)
        evs = self.all_events(srv2, "full", "after")
        self.assertEqual([e.id for e in evs], ok)
        self.stop_ok(srv2)


class Compaction(JournalCase):

    def test_disk_stays_bounded_and_history_survives_off(self):
        self.check_compaction("off")

    def test_disk_stays_bounded_and_history_survives_always(self):
        self.check_compaction("always")

    def test_over_the_bound_compacts_without_a_full_segment(self):
        # Segments over 2 x history + one segment must be compacted at the next write, not only
        # at the moment a segment fills: under load, publishes overshoot the segment being closed
        # (with batch and off they go on while the next one is created), and the segment after
        # the last check may never fill. Here deterministically: a journal written with 64 MiB
        # segments, reopened with 4 KiB ones, gets a few events that fill no segment.
        d = self.data_dir()
        srv = self.launch(d, "--history", "10")
        p = self.publisher(srv)
        for i in range(300):
            p.publish("b%d" % (i % 3), "event %d %s" % (i, "y" * 80))
        p.close()
        self.stop_ok(srv)
        big = segments(d)
        self.assertEqual(len(big), 1)
        args = ["--journal-segment-size", "4k", "--history", "10"]
        srv = self.launch(d, *args)
        p = self.publisher(srv)
        for i in range(3):
            p.publish("b0", "small %d" % i)
        self.assertTrue(wait_for(lambda: metric(srv, "hsc_journal_compactions_total") >= 1, 10),
                        "journal %d bytes, history %d bytes"
                        % (metric(srv, "hsc_journal_bytes"), metric(srv, "hsc_history_bytes")))
        self.assertTrue(wait_for(lambda: not os.path.exists(os.path.join(d, big[0])), 10),
                        segments(d))
        m = metrics(srv)
        self.assertLessEqual(m["hsc_journal_bytes"], 2 * m["hsc_history_bytes"] + 2 * 4096)
        p.close()
        self.stop_ok(srv)

    def check_compaction(self, fsync):
        d = self.data_dir()
        args = ["--journal-segment-size", "4k", "--history", "10", "--fsync", fsync]
        srv = self.launch(d, *args)
        p = self.publisher(srv)
        ids = {}
        peak = 0
        for i in range(1500):
            ch = "c%d" % (i % 3)
            ids.setdefault(ch, []).append(p.publish(ch, "event %d %s" % (i, "y" * 80))["id"])
            if i % 100 == 99:
                m = metrics(srv)
                peak = max(peak, m["hsc_journal_bytes"])
                # 2 x history + 2 segments once the writer thread has caught up (with batch and
                # off, publishes write while it compacts: a descheduled writer lets tiny
                # segments overshoot for a moment).
                bound = 2 * m["hsc_history_bytes"] + 2 * 4096 + 1024
                self.assertTrue(wait_for(lambda: metric(srv, "hsc_journal_bytes") <= bound, 5),
                                "journal bytes above %d: %r" % (bound, metrics(srv)))
        # The last publishes may have started a compaction: files and counters agree once the
        # writer is done with it.
        def on_disk():
            try:
                return sum(os.path.getsize(os.path.join(d, n)) for n in segments(d))
            except FileNotFoundError:  # deleted by the compaction meanwhile
                return -1
        self.assertTrue(wait_for(lambda: on_disk() == metric(srv, "hsc_journal_bytes"), 10),
                        "%d bytes in files, %r" % (on_disk(), metrics(srv)))
        m = metrics(srv)
        self.assertGreater(m["hsc_journal_compactions_total"], 5)
        sys_print("journal compaction (--fsync " + fsync + "): 1500 events of ~100 bytes, history %d bytes, journal peak "
                  "%d bytes, %d segment file(s) now, %d compactions"
                  % (m["hsc_history_bytes"], peak, len(segments(d)),
                     m["hsc_journal_compactions_total"]))
        p.close()
        self.kill9(srv)
        srv2 = self.launch(d, *args)
        for ch, chids in ids.items():
            s = self.sub(srv2, [ch], query_id="earliest")
            s.wait_events(10)
            self.assertEqual([e.id for e in s.events[:10]], chids[-10:])
            s.close()
            old = self.sub(srv2, [ch], last_event_id=chids[-20])
            old.wait_events(11)
            self.assertEqual(old.events[0].type, "hsc.gap")
            self.assertIn("expired", old.events[0].data)
            old.close()
            exact = self.sub(srv2, [ch], last_event_id=chids[-4])
            exact.wait_events(3)
            self.assertEqual([e.id for e in exact.events[:3]], chids[-3:])
            exact.close()
        self.stop_ok(srv2)
