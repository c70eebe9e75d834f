"""A disk-backed set of custom_ids: duplicate detection whose memory does not grow with the
input (a Python set of 20 million ids would take gigabytes).

One SQLite table in a scratch directory, keyed by the id itself (exact: no hash collisions),
with a bounded page cache. Durability is switched off on purpose: the index lives for one pass
over the input and is rebuilt from scratch by a retried step.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType

INDEX_FILE = "custom-ids.sqlite"
# SQLite's page cache, in KiB (negative cache_size): what the index may hold in memory.
CACHE_KIB = 16 * 1024
# Inserts per transaction: big enough to amortise the commit, small enough to spill early.
COMMIT_EVERY = 50_000


def _key(custom_id: str) -> bytes:
    # Bytes, not TEXT: a JSON custom_id may hold a lone surrogate ("\ud800"), which SQLite's
    # UTF-8 text cannot take; the line is refused later, but the lookup must not crash.
    return custom_id.encode("utf-8", "surrogatepass")


class DiskIdSet:
    """``in`` and ``add`` for custom_ids (what ``api.lines.SeenIds`` asks), stored in
    ``directory/custom-ids.sqlite``. Close it (or use ``with``) to delete the file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / INDEX_FILE
        self._db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode = OFF",
            "synchronous = OFF",
            "locking_mode = EXCLUSIVE",
            "temp_store = FILE",
            f"cache_size = -{CACHE_KIB}",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE IF NOT EXISTS ids (id BLOB PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("BEGIN")
        self._pending = 0
        self.count = 0

    def __contains__(self, custom_id: object) -> bool:
        if not isinstance(custom_id, str):
            return False
        row = self._db.execute("SELECT 1 FROM ids WHERE id = ?", (_key(custom_id),)).fetchone()
        return row is not None

    def add(self, custom_id: str) -> None:
        cursor = self._db.execute("INSERT OR IGNORE INTO ids (id) VALUES (?)", (_key(custom_id),))
        self.count += cursor.rowcount
        self._pending += 1
        if self._pending >= COMMIT_EVERY:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            self._pending = 0

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> DiskIdSet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
