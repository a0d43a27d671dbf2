"""Each trial's checkpoint, stored under the trial's durable key.

Tune keeps a checkpoint per Tune trial, and which Tune trials exist is part
of an experiment state that it saves in the background (a killed driver can
leave it minutes old, or half copied). A sweep resumes from what cannot go
stale instead: the Optuna study or the variant list names each trial
(`orchestrator.searcher`), and its checkpoint lies here under that name, on
the sweep folder or on `--storage` (s3://..., a shared folder) where every
node reaches it. A retried or resumed trial continues at its next task
whichever Tune trial runs it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

CHECKPOINT_FILE = "checkpoint.pt"


class TrialCheckpoints:
    def __init__(self, root: str):
        self.root = root.rstrip("/")  # a URI (s3://bucket/prefix) or an absolute path

    def _fs(self):
        from pyarrow import fs  # noqa: PLC0415

        filesystem, path = fs.FileSystem.from_uri(self.root)
        return filesystem, path

    def save(self, key: str, local_file: Path) -> None:
        """Upload under a temporary name, then move: a reader sees the old checkpoint or the new one."""
        filesystem, root = self._fs()
        folder = f"{root}/{key}"
        filesystem.create_dir(folder, recursive=True)
        tmp = f"{folder}/.{uuid.uuid4().hex}.tmp"
        with open(local_file, "rb") as src, filesystem.open_output_stream(tmp) as dst:
            dst.write(src.read())
        filesystem.move(tmp, f"{folder}/{CHECKPOINT_FILE}")

    def fetch(self, key: str, local_file: Path) -> bool:
        """Copy the trial's checkpoint to `local_file`; False when the trial has none yet."""
        from pyarrow import fs  # noqa: PLC0415

        filesystem, root = self._fs()
        path = f"{root}/{key}/{CHECKPOINT_FILE}"
        if filesystem.get_file_info(path).type != fs.FileType.File:
            return False
        with filesystem.open_input_stream(path) as src:
            local_file.write_bytes(src.read())
        return True
