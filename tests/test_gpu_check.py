"""benchmarks/gpu_check.sh in its dry mode: the same commands on the CPU, tiny, so a GPU session finds it working."""

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_check_runs_dry_on_the_cpu_and_records_every_figure(tmp_path, data_root, monkeypatch):
    results = tmp_path / "results.json"
    monkeypatch.setenv("HYPERCL_DATA", str(data_root))
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out"), "--dry",
                           "--results", str(results), "--results-md", str(tmp_path / "RESULTS.md")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    records = json.loads(results.read_text())
    methods = {r["method"] for r in records if r["scenario"].startswith("GPU check: cpu path")}
    assert len(methods) == 14  # every method of the registry, as a preset runs it
    assert {r["metric"] for r in records if r["scenario"].startswith("CL1 on cpu")} == {"steps_per_s", "final_acc"}
    sweeps = [r for r in records if r["metric"] == "trials_per_hour"]
    assert [r["method"] for r in sweeps] == ["2 trials per GPU"] and sweeps[0]["value"] > 0
    assert "trials_per_hour" in (tmp_path / "RESULTS.md").read_text()
