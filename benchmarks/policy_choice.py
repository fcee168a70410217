"""Choose EX-RAY's decision policy on a calibration population, from the masks an evaluation stored.

EX-RAY's masks and cross-check accuracies do not depend on the policy (``Verdict.under``), so every named
policy can be compared on the verdicts of ``exray evaluate`` runs without optimising a mask. Given one or
more evaluation directories (``exray evaluate --methods exray --out DIR``) of populations *other than the
one to be reported*, this prints, pooled over them, each policy's model-level TP / FP / FN / TN and
balanced accuracy ((TPR + TNR) / 2: a calibration population's clean/trojaned ratio is not the reported
one's), and the choice: the highest balanced accuracy, then the fewest false positives, then the order of
``--policies`` (the first: the incumbent). Not a test.

    .venv/bin/python benchmarks/policy_choice.py build/semantic-calib/repair build/semantic-calib/adaptive

A model is flagged when a trigger EX-RAY keeps reaches the evaluation's gate (as ``exray evaluate``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from exray.refinement import ASR_TOLERANCE, TriggerScore
from exray.refinement.exray import ExrayMethod

POLICIES = ("r2", "r3", "paper", "official")


def outcomes(directory: Path, policy: str) -> list[tuple[bool, bool]]:
    """(poisoned, flagged by ABS + EX-RAY under ``policy``) per model of one evaluation directory."""
    evaluation = json.loads((directory / "evaluation.json").read_text())
    gate = evaluation["config"]["gate"]
    method = ExrayMethod(policy=policy)
    result = []
    for model in evaluation["models"]:
        if model["triggers"] is None or model["errors"]:
            print(f"{directory}: {model['model']} left out ({model['errors'] or 'not scanned'})")
            continue
        record = json.loads((directory / "cache" / "exray" / f"{model['model']}.json").read_text())
        judged = {i for i, t in enumerate(model["triggers"]) if "exray" in t["scores"]}
        if record.get("error") or not judged <= set(record["indices"]):
            raise SystemExit(
                f"{directory}: the cached verdicts of {model['model']} are not those of its evaluation.json "
                "(rerun exray evaluate into it)"
            )
        scores = method.redecide([TriggerScore.from_dict(s) for s in record["scores"]])
        verdicts = zip(record["indices"], scores)
        natural = {i for i, s in verdicts if i in judged and s.verdict is not None and s.verdict.natural}
        # flagged as `exray evaluate` flags: a kept trigger reaches the gate
        asrs = [t["asr"] for i, t in enumerate(model["triggers"]) if i not in natural]
        result.append((bool(model["poisoned"]), max(asrs, default=0.0) >= gate - ASR_TOLERANCE))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", type=Path, nargs="+", help="exray evaluate output directories")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), help="the first is the incumbent")
    args = parser.parse_args(argv)
    print("policy     TP  FP  FN  TN   TPR   TNR  balanced accuracy")
    ranked = []
    for order, policy in enumerate(args.policies):
        pooled = [o for d in args.directories for o in outcomes(d, policy)]
        tp = sum(p and f for p, f in pooled)
        fp = sum(f and not p for p, f in pooled)
        fn = sum(p and not f for p, f in pooled)
        tn = sum(not p and not f for p, f in pooled)
        tpr = tp / (tp + fn) if tp + fn else float("nan")
        tnr = tn / (tn + fp) if tn + fp else float("nan")
        balanced = round((tpr + tnr) / 2, 9)  # ties are ties, whatever the float order
        print(f"{policy:9s} {tp:3d} {fp:3d} {fn:3d} {tn:3d}  {tpr:.2f}  {tnr:.2f}  {balanced:.3f}")
        ranked.append((-balanced, fp, order, policy))
    print("choice (balanced accuracy, then fewest FP, then the listed order):", min(ranked)[3])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
