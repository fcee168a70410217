"""``exray scan --backend ray`` on a local Ray instance (issue 18 §5): the same records as the local pool,
failures isolated per model, the driver the only writer of a resumable results file, budgets enforced in
the task, and a clear error when Ray is missing."""

import json
import sys

import pytest

from exray.cli import main
from exray.errors import ConfigError
from exray.pipeline import ModelBudget, ScanOptions, read_results, scan_many
from exray.pipeline.ray_backend import RayBackend

ray = pytest.importorskip("ray")

# the scanner alone: which backend runs a scan changes nothing in it, and EX-RAY's masks would cost minutes
FAST = ScanOptions(scanner_options={"epochs": 10, "probe_epochs": 2}, refine=None, device="cpu")
pytestmark = pytest.mark.xdist_group("ray")  # one Ray instance per test worker at a time


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_a_local_instance_is_started_for_the_batch_and_stopped_after_it(local_ray, model_dirs, monkeypatch):
    """Without a running instance the batch starts one on this machine's cores and stops it after; a
    running one (a cluster the user connected to) is used and left running. (The calls are recorded, and
    the tasks run on the module's instance: a second cold Ray start would cost the suite half a minute.)"""
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(("init", kwargs)))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append(("shutdown", {})))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (record,) = scan_many([model_dirs["clean"]], FAST, progress=False, backend=RayBackend())
    assert record["error"] is None and record["probability"] is not None
    mine = [c for c in calls if c[0] == "shutdown" or "include_dashboard" in c[1]]  # not Ray's auto-init
    assert [c[0] for c in mine] == ["init", "shutdown"]
    assert mine[0][1]["address"] is None and mine[0][1]["num_cpus"] >= 1
    calls.clear()
    list(scan_many([model_dirs["planted"]], FAST, progress=False, backend=RayBackend(address="auto")))
    mine = [c for c in calls if "include_dashboard" in c[1]]
    assert mine[0][1]["address"] == "auto" and "num_cpus" not in mine[0][1]  # a cluster sizes itself


def test_ray_gives_the_records_of_the_local_pool(local_ray, model_dirs, tmp_path):
    paths = [model_dirs["clean"], model_dirs["planted"]]
    local = {r["model"]: r for r in scan_many(paths, FAST, progress=False)}
    out = tmp_path / "ray.jsonl"
    remote = {r["model"]: r for r in scan_many(paths, FAST, out=out, progress=False, backend=RayBackend())}
    assert set(remote) == set(local) == set(read_results(out))
    for model, record in local.items():
        assert remote[model]["probability"] == pytest.approx(record["probability"], abs=1e-6)
        assert [(t["victim"], t["target"], t["asr"]) for t in remote[model]["triggers"]] == [
            (t["victim"], t["target"], t["asr"]) for t in record["triggers"]
        ]
    # resumable: the driver wrote every line, a second run scans nothing
    assert list(scan_many(paths, FAST, out=out, progress=False, backend=RayBackend())) == []


def test_a_failing_model_costs_only_its_own_record(local_ray, model_dirs, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    paths = [broken, model_dirs["clean"]]
    records = {r["model"]: r for r in scan_many(paths, FAST, progress=False, backend=RayBackend())}
    assert records[str(broken)]["probability"] is None and records[str(broken)]["error"]
    assert records[str(model_dirs["clean"])]["error"] is None


def test_the_time_budget_holds_inside_a_ray_task(local_ray, model_dirs):
    slow = ScanOptions(scanner_options={"epochs": 100000}, refine=None, device="cpu")
    budget = ModelBudget(seconds=2)
    (record,) = scan_many([model_dirs["planted"]], slow, progress=False, budget=budget, backend=RayBackend())
    assert record["probability"] is None and "time budget of 2 s" in record["error"]


def test_the_scan_command_runs_on_ray(local_ray, model_dirs, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    argv = ["scan", str(model_dirs["clean"]), str(model_dirs["planted"]), "--out", str(out), "--quiet"]
    argv += ["--backend", "ray", "--ray-cpus", "1", "--scanner-option", "epochs=10", "--device", "cpu"]
    argv += ["--no-refine"]
    assert main(argv) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["model"] for r in lines) == sorted(
        str(p) for p in (model_dirs["clean"], model_dirs["planted"])
    )


def test_ray_flags_without_the_ray_backend_are_refused(model_dirs, tmp_path, capsys):
    argv = ["scan", str(model_dirs["clean"]), "--out", str(tmp_path / "r.jsonl"), "--ray-cpus", "2"]
    assert main(argv) == 2
    assert "--ray-cpus needs --backend ray" in capsys.readouterr().err


def test_a_missing_ray_is_one_clear_error(model_dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ConfigError, match=r"pip install 'exray\[ray\]'"):
        list(scan_many([model_dirs["clean"]], FAST, progress=False, backend=RayBackend()))


@pytest.mark.parametrize("bad", [{"cpus": 0}, {"retries": -1}, {"address": ""}, {"cpus": True}])
def test_bad_ray_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        RayBackend(**bad)
