"""What there is to choose from and what ran: presets, search spaces and sweeps, one line each.

Listing only reads: it creates no store, folder or lock. A sweep whose files
cannot be read is listed with that status, so one broken folder never hides
the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from hypercl_core.errors import first_line
from orchestrator.folders import SPEC, driver_running

DESCRIPTION_WIDTH = 88  # beside the longest preset name, a line fits a 120-column terminal
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z][a-z])")  # a capitalised word: not "Fig. A8", "et al. 2020", "e.g. the"


def text_table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell (a header is just the first row); no trailing blanks."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def header_summary(path: Path) -> str:
    """The first sentence of a YAML file's leading comment paragraph, shortened to one line."""
    lines = []
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text.startswith("#") or not text.lstrip("#").strip():
            break
        lines.append(text.lstrip("#").strip())
    paragraph = " ".join(lines)
    end = _SENTENCE_END.search(paragraph)
    sentence = paragraph[: end.start() + 1] if end else paragraph
    if len(sentence) <= DESCRIPTION_WIDTH:
        return sentence
    return sentence[: DESCRIPTION_WIDTH - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def presets() -> list[tuple[str, str]]:
    """(name, description) of every preset, from its header comment."""
    from hypercl_core.config import available_presets, resolve_preset  # noqa: PLC0415

    return [(name, header_summary(resolve_preset(name)) or "-") for name in available_presets()]


def spaces() -> list[tuple[str, str]]:
    """(name, description) of every built-in search space: its `description` field, else its header comment."""
    from search_spaces.space import available_spaces, resolve_space  # noqa: PLC0415

    found = []
    for name in available_spaces():
        path = resolve_space(name)
        try:
            tree = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            found.append((name, f"(not valid YAML: fix {path})"))
            continue
        described = tree.get("description") if isinstance(tree, dict) else None
        found.append((name, described or header_summary(path) or "-"))
    return found


def sweep_folders(runs_dir: Path) -> list[Path]:
    """The sweep folders under runs_dir/sweeps/ (those with a sweep.yaml), oldest first."""
    specs = (runs_dir / "sweeps").glob(f"*/{SPEC}")
    return [spec.parent for spec in sorted(specs, key=lambda p: p.stat().st_mtime)]


@dataclass(frozen=True)
class SweepRow:
    """One line of `hypercl sweeps`."""

    name: str
    kind: str  # sweep | rerun | robustness, or "?" when sweep.yaml cannot be read
    status: str  # finished | running | interrupted | not started | unreadable ...
    done: int | None  # trials that ended (finished, stopped by ASHA, rejected, failed); None: store not read
    total: int | None
    finished: int | None  # of those, the ones that learned every task (what `best` ranks)
    best: str  # "<metric> <value>", or "-"
    folder: Path

    def cells(self) -> list[str]:
        def shown(n: int | None) -> str:
            return "?" if n is None else str(n)

        return [self.name, self.kind, self.status, f"{shown(self.done)}/{shown(self.total)}", shown(self.finished),
                self.best, str(self.folder)]


SWEEP_HEADER = ["name", "kind", "status", "trials", "finished", "best", "folder"]


def sweep_rows(runs_dir: Path) -> list[SweepRow]:
    return [sweep_row(folder) for folder in sweep_folders(runs_dir)]


def sweep_row(folder: Path) -> SweepRow:
    """A sweep's state from its sweep.yaml and its MLflow store (the tracking URI it recorded)."""
    try:
        spec = yaml.safe_load((folder / SPEC).read_text())
    except (OSError, yaml.YAMLError) as exc:
        return SweepRow(folder.name, "?", f"unreadable {SPEC} ({first_line(exc)})", None, None, None, "-", folder)
    if not isinstance(spec, dict):
        return SweepRow(folder.name, "?", f"unreadable {SPEC} (not a mapping)", None, None, None, "-", folder)
    kind = str(spec.get("kind", "?"))
    # as SweepSpec.total_trials (orchestrator.sweep imports Ray: seconds a listing need not wait)
    total = spec.get("num_samples") if kind == "sweep" else len(spec.get("variants") or [])
    name = str(spec.get("name") or folder.name)
    if not spec.get("parent_run_id"):  # the folder exists; its driver stopped before MLflow had a run
        return SweepRow(name, kind, "not started", 0, total, 0, "-", folder)
    try:
        status, outcomes, best = _progress(folder, name, spec)
    except Exception as exc:  # noqa: BLE001 - whatever the store raises (server down, schema, file), list the rest
        return SweepRow(name, kind, f"unreadable store ({first_line(exc)})", None, total, None, "-", folder)
    return SweepRow(name, kind, status, outcomes.total - outcomes.unfinished, total, outcomes.finished, best, folder)


def _progress(folder: Path, name: str, spec: dict):
    """(status, how each trial ended, best value) from the sweep's MLflow store."""
    from orchestrator.best import best_runs, open_sweep_experiment  # noqa: PLC0415
    from orchestrator.outcomes import read_outcomes  # noqa: PLC0415
    from orchestrator.tracking import KIND, check_tracking_uri, embedded_uri  # noqa: PLC0415

    uri = spec.get("tracking_uri") or embedded_uri(folder)
    check_tracking_uri(uri)  # a server that is down answers in seconds, not after minutes of retries
    client, experiment = open_sweep_experiment(uri, name)
    parent = client.get_run(spec["parent_run_id"])
    trials = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{KIND}` = 'trial'",
                                max_results=50_000)
    # a comparison's presets may differ in length (None: "finished all their tasks")
    num_tasks = None if spec.get("kind") == "compare" else \
        ((spec.get("base_config") or {}).get("benchmark") or {}).get("num_tasks", 0)
    metric = spec.get("metric") or "final_acc"
    if spec.get("kind") == "compare":  # the best over different methods says nothing: the table compares them
        best = f"per method: hypercl table --name {name}"
    else:
        top = best_runs(uri, name, metric, 1, spec.get("mode"))
        best = f"{metric} {top[0].data.metrics[metric]:.4f}" if top else "-"
    return _status(parent.info.status, folder), read_outcomes(trials, num_tasks), best


def _status(parent_status: str, folder: Path) -> str:
    """The parent run's status; RUNNING while no driver holds the folder's lock is a sweep whose driver was killed."""
    if parent_status == "FINISHED":
        return "finished"
    if parent_status == "RUNNING":
        return "running" if driver_running(folder) else "interrupted"
    return "interrupted"  # KILLED: Ctrl-C, SIGTERM or the driver's error; resumable
