"""Decrypted spools do not outlive an executor killed with -9: the next start removes them, never a live one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.executor.pgp_files import UNOWNED_GRACE_SECONDS, Spool, _orphaned, sweep_orphaned_spools

HOLD_A_SPOOL = """
import sys, time
from pathlib import Path
from services.executor.pgp_files import Spool
spool = Spool(sys.argv[1])
(Path(spool.path) / "0.plain").write_bytes(b"customer_id,email\\nC1,a@example.com\\n")
print(spool.path, flush=True)
time.sleep(600)
"""


def test_the_spool_of_a_killed_process_is_swept_and_a_live_one_kept(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_SPOOL, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert holder.stdout is not None
    dead_spool = Path(holder.stdout.readline().strip())
    live = Spool(str(tmp_path))  # this process's own, in use
    try:
        assert sweep_orphaned_spools(str(tmp_path)) == 0  # both owners alive: nothing removed
        assert (dead_spool / "0.plain").exists()

        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert sweep_orphaned_spools(str(tmp_path)) == 1
        assert not dead_spool.exists() and Path(live.path).is_dir()
    finally:
        holder.kill()
        live.close()
    assert list(tmp_path.iterdir()) == []


def test_a_spool_without_its_lock_file_is_left_while_young_and_swept_when_old(tmp_path: Path) -> None:
    unowned = tmp_path / "connect-spool-abc"
    unowned.mkdir()  # as if the process died between creating the directory and its lock file
    assert sweep_orphaned_spools(str(tmp_path)) == 0
    old = time.time() - UNOWNED_GRACE_SECONDS - 1
    os.utime(unowned, (old, old))
    assert sweep_orphaned_spools(str(tmp_path)) == 1 and not unowned.exists()
    (tmp_path / "connect-spool-not-a-dir").write_text("x")
    (tmp_path / "other").mkdir()
    assert sweep_orphaned_spools(str(tmp_path)) == 0  # only spool directories are touched


def test_a_spool_removed_by_its_owner_during_the_sweep_is_no_error(tmp_path: Path) -> None:
    # Listed by the sweep, then removed by the live executor that closed it: not an orphan, and no
    # exception (the sweep runs at start; raising there would stop the executor from starting).
    assert _orphaned(tmp_path / "connect-spool-gone") is False
