"""The promotion gate of a head: the conditions in configuration (`training.gate`) that its
held-out evaluation (training/evaluate.py, kept on its registry version) must meet before
`promote` makes it the champion.

Baselines are the scorers a head would replace or must beat: the task's rule-based labeler and
the majority vote of the labelling functions, whichever of them the evaluation holds.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from conf.settings import GateSettings, Settings
from lake.registry import Registry
from rollout.coverage import coverage
from training.evaluate import lead_is_clear, left_out_said

HEAD = "head"  # the head's column among an evaluation's scorers
EVALUATION_TAG = "evaluation"  # a head version's held-out evaluation summary (JSON) in the registry
ROUNDING = 1e-9  # a figure this close to its bound meets it: 0.80 + 0.02 is 0.8200000000000001 in floats


def head_signal(task: str) -> str:
    """The registered model (and signal name) of a task's head."""
    return f"head_{task}"


def is_head(signal: str) -> bool:
    return signal.startswith("head_")


def gate_failures(summary: Mapping[str, Any], conf: GateSettings) -> list[str]:
    """The conditions an evaluation summary fails, each said in one line (empty: it passes)."""
    metrics, slices = summary["metrics"], summary["slices"]
    head = metrics[HEAD]
    baselines = {name: m["roc_auc"] for name, m in metrics.items() if name != HEAD and m.get("roc_auc") is not None}
    failures = []
    not_finite = [f"{name}'s {figure}" for name, m in metrics.items() for figure in ("roc_auc", "ece")
                  if isinstance(m.get(figure), float) and not math.isfinite(m[figure])]
    if not_finite:  # every comparison with NaN is false: each condition would pass
        return [f"the evaluation holds figures that are not numbers ({', '.join(not_finite)}): it cannot be judged; train and evaluate again"]
    held_out = summary.get("held_out") or {}
    if head.get("roc_auc") is None:  # one class on the items every scorer scored: where a baseline left items out, maybe its doing
        too_few = _too_few(summary["task"], head, held_out, conf) if held_out.get("left_out") else []
        return too_few or ["the held-out gold items hold one class only: no ROC-AUC to judge; label more items"]
    failures += _too_few(summary["task"], head, held_out, conf)
    if baselines:
        best = max(baselines, key=baselines.get)
        if head["roc_auc"] < baselines[best] + conf.min_auc_margin - ROUNDING:
            failures.append(f"ROC-AUC {head['roc_auc']:.3f} is not above {best}'s {baselines[best]:.3f} by "
                            f"training.gate.min_auc_margin {conf.min_auc_margin}{_judged_on(head, held_out)}")
        if conf.lead_beyond_noise:
            failures += _leads_within_noise(summary.get("leads"), baselines)
    else:  # no rule or majority vote scored the held-out items: nothing to judge the head against
        failures.append(f"no baseline (rule or majority vote) scored the held-out gold items, so the head beats nothing; its "
                        f"ROC-AUC {head['roc_auc']:.3f} is judged against nothing: enable the task's rule signal or make weak labels "
                        f"(content-signals labels weak), then train again (or promote with --force)")
    sizes = summary.get("slice_items", {})  # kept since; an older summary's slices are judged as they are
    for kind, values in slices.get(HEAD, {}).items():
        for value, auc in values.items():
            if sizes.get(kind, {}).get(value, conf.min_slice_items) < conf.min_slice_items:
                continue  # smaller than the gate in force asks for
            better = {name: theirs for name in baselines
                      if (theirs := slices.get(name, {}).get(kind, {}).get(value)) is not None and auc < theirs - conf.max_slice_drop - ROUNDING}
            if better:  # one line per slice, however many baselines it trails
                failures.append(f"slice {kind}={value}: ROC-AUC {auc:.3f} is below "
                                + " and ".join(f"{name}'s {theirs:.3f}" for name, theirs in better.items())
                                + f" by more than training.gate.max_slice_drop {conf.max_slice_drop}")
    if head["ece"] > conf.max_ece + ROUNDING:
        failures.append(f"calibration error (ECE) {head['ece']:.3f} is above training.gate.max_ece {conf.max_ece}")
    return failures


def _too_few(task: str, head: Mapping[str, Any], held_out: Mapping[str, Any], conf: GateSettings) -> list[str]:
    """The refusal of a verdict on fewer held-out positives or negatives than the gate asks for
    (none for an older summary that did not count them): where a baseline left held-out items out
    (`held_out`, training.evaluate.held_out_coverage), how many and which, so the user fixes its
    coverage where the held-out gold itself holds enough of each class, instead of labelling more."""
    if head.get("items") is None or head.get("positives") is None:
        return []
    positives, negatives = int(head["positives"]), int(head["items"] - head["positives"])
    if min(positives, negatives) >= conf.min_class_items:
        return []
    too_few = (f"the held-out gold holds {positives} positive and {negatives} negative items, fewer than training.gate.min_class_items "
               f"{conf.min_class_items} of a class: ")
    label_more = f"label more (content-signals label-sample {task})"
    if not held_out.get("left_out"):
        return [too_few + f"a ROC-AUC on so few is mostly which items were held out; {label_more} and train again"]
    names = " and ".join(held_out["left_out"])
    held = f"of the {held_out['items']} held-out gold items ({held_out['positives']} positive) every scorer scored {int(head['items'])}, {left_out_said(held_out)}"
    if min(held_out["positives"], held_out["items"] - held_out["positives"]) >= conf.min_class_items:
        return [too_few + f"{held}: the gold is enough, {names}'s coverage is not: have {names} score them and train again"]
    return [too_few + f"{held}: {label_more} and have {names} score them, then train again"]


def _leads_within_noise(leads: Mapping[str, Mapping[str, float] | None] | None, baselines: Mapping[str, float]) -> list[str]:
    """The refusals of training.gate.lead_beyond_noise: each baseline whose lead's 95% interval reaches zero."""
    if leads is None:
        return ["training.gate.lead_beyond_noise: the evaluation has no intervals (trained before they were kept): train it again"]
    failures = []
    for name in baselines:
        lead = leads.get(name)
        if not lead_is_clear(lead):
            shown = "no interval" if lead is None else (f"{lead['difference']:+.3f}, 95% interval [{lead['ci95_low']:+.3f}, "
                                                        f"{lead['ci95_high']:+.3f}]")
            failures.append(f"the ROC-AUC lead over {name} ({shown}) is not above zero across its 95% interval "
                            f"(training.gate.lead_beyond_noise): label more held-out gold items")
    return failures


def _judged_on(head: Mapping[str, Any], held_out: Mapping[str, Any]) -> str:
    """How many held-out gold items (and positives) a ROC-AUC was judged on, where the summary says:
    a verdict on a handful of positives is mostly chance; where a baseline left items out
    (`held_out`), of how many held out, as the too-few refusal beside it counts them."""
    if head.get("items") is None or head.get("positives") is None:
        return ""
    if held_out.get("left_out"):
        return (f" (judged on the {int(head['items'])} of the {held_out['items']} held-out gold items every scorer scored, "
                f"{int(head['positives'])} positive)")
    return f" (judged on {int(head['items'])} held-out gold items, {int(head['positives'])} positive)"


def promotion_refusals(settings: Settings, registry: Registry, signal: str, version: str, champion: str | None) -> list[str]:
    """Why `version` of `signal` may not become the champion: it covers fewer items than the
    champion (every signal), or, for a head, its evaluation fails the gate or is missing. None for the
    champion itself: promoting it moves nothing (a retry of a killed promote writes what its move owes)."""
    if champion == version:
        return []
    refusals = []
    if champion is not None:
        found = coverage(settings.lakehouse_root, signal, champion, version)
        if not found.complete:
            refusals.append(found.message())
    if is_head(signal):
        tags = registry.client.get_model_version(signal, version).tags
        if EVALUATION_TAG not in tags:
            refusals.append(f"{signal} version {version} has no held-out evaluation on gold labels: train it with gold labels "
                            f"(content-signals train TASK --labels ...)")
        else:
            refusals += gate_failures(json.loads(tags[EVALUATION_TAG]), settings.training.gate)
    return refusals
