"""Sharded scans for job arrays (issue 18 §5): the shards partition the models, the task's shard comes from
the flag or the job-array environment, and `exray merge` joins the shard files."""

import json

import pytest

from exray.cli import main
from exray.errors import ConfigError
from exray.files import read_results
from exray.pipeline.shards import Shard, merge_results, parse_shard, shard_from_env

MODELS = [f"zoo/id-{i:08d}" for i in (7, 3, 11, 0, 5, 9, 2)] + ["zoo/id-00000003/"]  # one given twice


@pytest.mark.parametrize("count", [1, 2, 3, 8, 9])
def test_shards_partition_the_sorted_models(count):
    shards = [Shard(i, count).select(MODELS) for i in range(count)]
    chosen = [str(m) for shard in shards for m in shard]
    assert sorted(chosen) == sorted({str(m).rstrip("/") for m in MODELS})  # every model once
    assert [str(m) for m in shards[0]] == sorted({m.rstrip("/") for m in MODELS})[::count]


def test_results_path_of_a_shard():
    assert str(Shard(3, 10).results_path("out/results.jsonl")) == "out/results.shard-3-of-10.jsonl"
    assert str(Shard(0, 2).results_path("r-{shard}.jsonl")) == "r-0-of-2.jsonl"


@pytest.mark.parametrize("text", ["3", "a/b", "3/3", "-1/2", "1/0", "1/2/3", ""])
def test_bad_shards_are_refused(text):
    with pytest.raises(ConfigError):
        parse_shard(text)


def test_shard_from_the_job_array_environment():
    slurm = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "5"}
    assert shard_from_env(slurm) == Shard(2, 5, "SLURM_ARRAY_TASK_ID")  # --array=1-5: task 3 is the third
    assert shard_from_env({"JOB_COMPLETION_INDEX": "4", "EXRAY_SHARD_COUNT": "6"}).index == 4
    assert shard_from_env({"SLURM_JOB_ID": "17"}) is None
    with pytest.raises(ConfigError, match="EXRAY_SHARD_COUNT"):
        shard_from_env({"JOB_COMPLETION_INDEX": "4"})
    with pytest.raises(ConfigError, match="integers"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "2"})


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_merge_keeps_a_success_over_a_failure_and_sorts(tmp_path):
    a = _write(
        tmp_path / "a.jsonl", [{"model": "m2", "error": None, "score": 1}, {"model": "m1", "error": "x"}]
    )
    b = _write(
        tmp_path / "b.jsonl", [{"model": "m1", "error": None, "score": 2}, {"model": "m2", "error": "y"}]
    )
    merged = merge_results([a, b], a)  # the output may be one of the inputs
    assert merged == {
        "m1": {"model": "m1", "error": None, "score": 2},
        "m2": {"model": "m2", "error": None, "score": 1},
    }
    assert [json.loads(line)["model"] for line in a.read_text().splitlines()] == ["m1", "m2"]
    with pytest.raises(ConfigError, match="does not exist"):
        merge_results([tmp_path / "missing.jsonl"], tmp_path / "out.jsonl")


FAST = ["--scanner-option", "epochs=10", "--scanner-option", "probe_epochs=2", "--quiet"]


def test_a_sharded_scan_merges_to_the_whole_scan(model_dirs, tmp_path, monkeypatch):
    dirs = [str(model_dirs["clean"]), str(model_dirs["planted"])]
    out = tmp_path / "results.jsonl"
    assert main(["scan", *dirs, "--out", str(out), "--shard", "0/2", *FAST]) == 0
    # the second task takes its shard from Slurm's variables, as in a job array
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert main(["scan", *dirs, "--out", str(out), *FAST]) == 0
    shards = [tmp_path / f"results.shard-{i}-of-2.jsonl" for i in (0, 1)]
    assert [len(read_results(s)) for s in shards] == [1, 1]
    assert main(["merge", *map(str, shards), "--out", str(out)]) == 0
    merged = read_results(out)
    assert sorted(merged) == sorted(dirs)
    assert all(r["error"] is None for r in merged.values())
    # --shard none scans everything in spite of the environment: all models are in the merged file already
    assert main(["scan", *dirs, "--out", str(out), "--shard", "none", *FAST]) == 0
    assert read_results(out) == merged
