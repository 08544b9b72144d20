"""The heads section of `make eval` (training/heads_evaluation.py) on the small training lakehouse:
every scorer on the same held-out gold items, the baselines' ROC-AUC against sklearn on the frames
themselves, and a crossover curve whose heads were trained on as many gold labels as it says."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from sklearn.metrics import roc_auc_score
from training_lakehouse import ERRORS, training_lakehouse

from training import heads_evaluation
from training.heads_evaluation import compare_heads, crossover_sizes, write_heads_report
from training.loader import batches, fold_of, split_of


def test_crossover_sizes_double_past_200_and_end_at_what_there_is() -> None:
    assert crossover_sizes(30) == [25, 30]
    assert crossover_sizes(340) == [25, 50, 100, 200, 340]
    assert crossover_sizes(900) == [25, 50, 100, 200, 400, 800, 900]
    assert crossover_sizes(10) == [10]


def test_every_scorer_is_judged_on_the_same_held_out_gold_and_the_curve_on_its_gold_labels(tmp_path, empty_registry_db, monkeypatch) -> None:
    lake = training_lakehouse(tmp_path, empty_registry_db)
    trained_on = []
    train_head = heads_evaluation.train_head

    def recording(snapshot, conf):  # the items each head trains on: those outside the test split with an ok row
        trained_on.append([c for split in ("train", "validation") for batch in batches(snapshot, split, 64, 1) for c in batch["content_id"]])
        return train_head(snapshot, conf)

    monkeypatch.setattr(heads_evaluation, "train_head", recording)
    result = compare_heads(lake.settings, "low_quality", lake.weak, lake.gold, lake.majority, "image_embedding", "1")

    held_out = [c for c in lake.ids[:-ERRORS] if split_of(c) == "test"]  # no duplicates table: every item its own group
    assert result["held_out_items"] == len(held_out)
    without_row = [c for c in lake.ids[-ERRORS:] if split_of(c) == "test"]  # held-out gold of error rows: no head can score it
    assert without_row and result["held_out_without_row"] == len(without_row)  # train says it; before, the section dropped it
    truth = lake.gold.set_index("content_id").loc[held_out, "label"]
    for scorer, frame in (("label_model", lake.weak), ("majority_vote", lake.majority)):
        expected = roc_auc_score(truth, frame.set_index("content_id").loc[held_out, "p_positive"])
        assert result["roc_auc"][scorer] == pytest.approx(expected, abs=1e-9), scorer
    assert result["roc_auc"]["weak_head"] > result["roc_auc"]["rule"]  # the vectors carry the truth; the rule is noisier

    outside_test = [c for c in lake.ids[:-ERRORS] if split_of(c) != "test"]  # before, it counted the gold of the error rows too
    assert any(split_of(c) != "test" for c in lake.ids[-ERRORS:])
    curve = result["crossover"]["curve"]
    assert [p["gold_labels"] for p in curve] == crossover_sizes(len(outside_test))
    assert curve[-1]["roc_auc"] == result["roc_auc"]["gold_head"]
    # heads: the weak one, then the curve's (the last on all gold), each on gold from outside the test split
    assert [len(ids) for ids in trained_on[1:]] == [p["gold_labels"] for p in curve]
    assert all(set(ids) <= set(outside_test) for ids in trained_on[1:])
    weak = result["roc_auc"]["weak_head"]
    assert result["crossover"]["gold_labels_to_match_weak_head"] == next((p["gold_labels"] for p in curve if p["roc_auc"] >= weak), None)

    for baseline, margin in result["weak_head_margin"].items():
        assert margin["difference"] == pytest.approx(weak - result["roc_auc"][baseline], abs=1e-9)
        assert margin["ci95_low"] < margin["difference"] < margin["ci95_high"]

    page = write_heads_report({"tasks": {"low_quality": result}}, tmp_path / "report" / "heads.html").read_text()
    assert "data:image/png;base64," in page and "gold-only head ROC-AUC" in page and "weak-label head minus baseline" in page
    assert f"<td>low_quality</td><td>{len(held_out)}</td><td>{len(without_row)}</td>" in page  # before, the page dropped the count


def test_eval_only_heads_replaces_the_heads_section_and_keeps_the_others(tmp_path) -> None:
    from jobs.cli import _parser
    from rollout.evaluate import replace_section

    assert _parser().parse_args(["eval", "--only", "heads"]).only == "heads"
    report = tmp_path / "eval" / "latest.json"
    replace_section("heads", {"tasks": {}}, report)
    report.write_text(json.dumps({"labels": {"blurry": 1}, "heads": {"tasks": {"old": 1}}}))
    assert replace_section("heads", {"tasks": {"new": 2}}, report) == json.loads(report.read_text())
    assert json.loads(report.read_text()) == {"labels": {"blurry": 1}, "heads": {"tasks": {"new": 2}}}


def test_cross_fitting_scores_every_gold_item_once_by_heads_and_weak_labels_that_never_saw_its_fold(
        tmp_path, empty_registry_db, monkeypatch) -> None:
    lake = training_lakehouse(tmp_path, empty_registry_db, overrides=("training.learning_rate=0.05",))  # a third of the items to train on
    held_by_call, trained_on = [], []

    def weak_without(held):
        held_by_call.append(set(held))
        return lake.weak, lake.majority

    train_head = heads_evaluation.train_head

    def recording(snapshot, conf):
        trained_on.append(set(snapshot.labels.loc[snapshot.labels["split"] != "test", "content_id"]))
        return train_head(snapshot, conf)

    monkeypatch.setattr(heads_evaluation, "train_head", recording)
    wrong = lake.ids[::20]  # gold the annotators got wrong: the truth says otherwise
    gold = lake.gold.assign(label=lake.gold["label"].where(~lake.gold["content_id"].isin(wrong), 1 - lake.gold["label"]))
    result = heads_evaluation.cross_fitted(lake.settings, "low_quality", gold, weak_without, "image_embedding", "1", folds=3)

    folds = [{c for c in lake.ids if fold_of(c, 3) == f} for f in range(3)]  # no duplicates table: every item its own group
    assert held_by_call == folds
    assert trained_on[0::2] == trained_on[1::2] == [set(lake.ids) - fold for fold in folds]  # weak head, gold head per fold
    scored = lake.ids[:-ERRORS]
    assert result["items"] == len(scored) and result["positives"] == int(gold.set_index("content_id").loc[scored, "label"].sum())
    assert result["without_row"] == ERRORS  # every fold's gold without an ok row, counted (before, dropped)
    majority = lake.majority.set_index("content_id").loc[scored, "p_positive"]
    expected = roc_auc_score(gold.set_index("content_id").loc[scored, "label"], majority)
    assert result["roc_auc"]["majority_vote"] == pytest.approx(expected, abs=1e-9)
    assert result["roc_auc"]["weak_head"] > result["roc_auc"]["rule"]
    truth = result["against_truth"]  # the same scores against the truth table, which the flipped gold disagrees with
    assert truth["roc_auc"]["majority_vote"] == pytest.approx(roc_auc_score(lake.truth[:-ERRORS], majority), abs=1e-9)
    assert truth["roc_auc"]["majority_vote"] != pytest.approx(expected, abs=1e-3)
    assert truth["gold_agrees"] == pytest.approx(1 - len([c for c in wrong if c in scored]) / len(scored))
    assert set(truth["roc_auc"]) == set(result["roc_auc"])
    assert truth["weak_head_margin"]["majority_vote"]["difference"] == pytest.approx(
        truth["roc_auc"]["weak_head"] - truth["roc_auc"]["majority_vote"], abs=1e-9)
    margin = result["weak_head_margin"]["rule"]  # the difference the target turns on, with its interval
    assert margin["difference"] == pytest.approx(result["roc_auc"]["weak_head"] - result["roc_auc"]["rule"], abs=1e-9)
    assert margin["ci95_low"] <= margin["difference"] <= margin["ci95_high"]


def test_a_scorer_whose_items_hold_one_class_against_the_truth_has_no_roc_auc_there_and_says_why(tmp_path, empty_registry_db) -> None:
    """The rule scored only items the truth calls positive: its ROC-AUC against the truth is not
    defined (None and the reason, as scorer_figures leaves it None), not sklearn's ValueError; the
    other scorers' are computed, and the margins on the items all of them scored (one class) are None."""
    lake = training_lakehouse(tmp_path, empty_registry_db)
    gold = lake.gold.set_index("content_id")["label"]
    frame = pd.DataFrame({"content_id": lake.ids, "label": gold[lake.ids].to_numpy(), "weak_head": lake.rule,
                          "majority_vote": lake.majority["p_positive"].to_numpy(), "rule": np.where(lake.truth == 1, lake.rule, np.nan)})
    truth = heads_evaluation.against_truth(lake.settings, "low_quality", frame, ["weak_head", "majority_vote", "rule"])

    positives = int(lake.truth.sum())
    assert truth["roc_auc"]["rule"] is None
    assert truth["roc_auc_not_defined"] == {"rule": f"the truth holds one class on its {positives} scored items"}
    assert truth["roc_auc"]["weak_head"] == pytest.approx(roc_auc_score(lake.truth, lake.rule), abs=1e-9)
    assert truth["weak_head_margin"] == {"majority_vote": None, "rule": None}


def test_cross_fitting_keeps_a_fold_the_rule_never_scored_and_compares_the_scorers_on_the_items_all_of_them_scored(
        tmp_path, empty_registry_db) -> None:
    lake = training_lakehouse(tmp_path, empty_registry_db, overrides=("training.learning_rate=0.05",))
    unruled = [c for c in lake.ids if fold_of(c, 3) == 0]  # the rule abstained on every item of the first fold
    DeltaTable(f"{tmp_path}/labels").delete(" OR ".join(f"content_id = '{c}'" for c in unruled))
    result = heads_evaluation.cross_fitted(lake.settings, "low_quality", lake.gold, lambda held: (lake.weak, lake.majority),
                                           "image_embedding", "1", folds=3)

    scored = lake.ids[:-ERRORS]
    ruled = [c for c in scored if c not in unruled]
    gold = lake.gold.set_index("content_id")["label"]
    majority = lake.majority.set_index("content_id")["p_positive"]
    assert result["items"] == len(scored)  # before, the first fold's items were dropped for every scorer
    assert result["scored_items"] == {"weak_head": len(scored), "gold_head": len(scored), "label_model": len(scored),
                                      "majority_vote": len(scored), "rule": len(ruled)}
    assert result["roc_auc"]["majority_vote"] == pytest.approx(roc_auc_score(gold[scored], majority[scored]), abs=1e-9)
    rule = pd.Series(lake.rule, index=lake.ids)  # each scorer on the items it scored
    assert result["roc_auc"]["rule"] == pytest.approx(roc_auc_score(gold[ruled], rule[ruled]), abs=1e-9)
    compared = result["compared"]  # the scorers against each other: on the items every one of them scored
    assert (compared["items"], compared["positives"]) == (len(ruled), int(gold[ruled].sum()))
    assert compared["roc_auc"]["majority_vote"] == pytest.approx(roc_auc_score(gold[ruled], majority[ruled]), abs=1e-9)
    for baseline, margin in result["weak_head_margin"].items():
        assert margin["difference"] == pytest.approx(compared["roc_auc"]["weak_head"] - compared["roc_auc"][baseline], abs=1e-9)
        assert result["weak_head_beats"][baseline] == (margin["difference"] > 0)
    truth = result["against_truth"]
    assert truth["roc_auc"]["rule"] == pytest.approx(roc_auc_score(lake.truth[[lake.ids.index(c) for c in ruled]], rule[ruled]), abs=1e-9)


def test_the_heads_section_says_the_gold_without_an_ok_row_and_why_a_roc_auc_against_the_truth_is_missing(
        tmp_path, empty_registry_db, capsys) -> None:
    """What `make eval` prints of the heads section: the held-out gold without an ok embedding row
    (test split and cross-fitted), in train's words, and the reason a scorer has no ROC-AUC against
    the truth. Before, both were in reports/eval/latest.json only; the console printed "-"."""
    from jobs.show import print_heads

    lake = training_lakehouse(tmp_path, empty_registry_db, overrides=("training.learning_rate=0.05",))
    DeltaTable(f"{tmp_path}/labels").delete(" OR ".join(f"content_id = '{c}'" for c, t in zip(lake.ids, lake.truth) if not t))  # the rule scores truth's positives only
    wrong = lake.ids[::20]  # gold the annotators got wrong, so the rule's gold holds both classes
    gold = lake.gold.assign(label=lake.gold["label"].where(~lake.gold["content_id"].isin(wrong), 1 - lake.gold["label"]))
    task = compare_heads(lake.settings, "low_quality", lake.weak, gold, lake.majority, "image_embedding", "1")
    cross = heads_evaluation.cross_fitted(lake.settings, "low_quality", gold, lambda held: (lake.weak, lake.majority), "image_embedding", "1", folds=3)
    ruled = int(lake.truth[:-ERRORS].sum())  # the rule's items against the truth: positives with an ok row
    assert cross["against_truth"]["roc_auc_not_defined"] == {"rule": f"the truth holds one class on its {ruled} scored items"}
    print_heads({"tasks": {"low_quality": {**task, "cross_fitted": cross}}, "weak_head_beats_baselines_on": [], "target_met": False,
                 "cross_fitted": {"weak_head_beats_baselines_on": [], "target_met": False, "beyond_noise_on": [], "beyond_noise_against_truth_on": []},
                 "loader": {"scales": {}}})
    said = " ".join(capsys.readouterr().out.split())
    test_split = len([c for c in lake.ids[-ERRORS:] if split_of(c) == "test"])
    assert (f"low_quality: {test_split} held-out gold items have no ok image_embedding@1 row (an error row, or none yet): "
            "no head can score them, so no scorer is judged on them") in said
    assert (f"low_quality, cross-fitted: {ERRORS} held-out gold items have no ok image_embedding@1 row (an error row, or none yet): "
            "no head can score them, so no scorer is judged on them") in said
    assert f"rule - (the truth holds one class on its {ruled} scored items)" in said
    rule = cross["scored_items"]["rule"]  # of the gold items, the rule scored the truth's positives: its ROC-AUC is on those
    assert rule == ruled < cross["items"] and f"rule {cross['roc_auc']['rule']:.3f} (on its {rule} scored items)" in said
    assert f"weak_head {cross['roc_auc']['weak_head']:.3f}," in said  # a scorer of every item: no count


def _rule_of_gold_positives_only(tmp_path, empty_registry_db):
    """A training lakehouse whose rule scored only gold's positives, with its test-split and cross-fitted figures."""
    lake = training_lakehouse(tmp_path, empty_registry_db, overrides=("training.learning_rate=0.05",))
    gold = lake.gold.set_index("content_id")["label"]
    DeltaTable(f"{tmp_path}/labels").delete(" OR ".join(f"content_id = '{c}'" for c in lake.ids if not gold[c]))
    task = compare_heads(lake.settings, "low_quality", lake.weak, lake.gold, lake.majority, "image_embedding", "1")
    cross = heads_evaluation.cross_fitted(lake.settings, "low_quality", lake.gold, lambda held: (lake.weak, lake.majority),
                                          "image_embedding", "1", folds=3)
    return lake, gold, task, cross


def test_a_scorer_whose_held_out_gold_holds_one_class_has_no_roc_auc_and_the_report_and_console_say_why(
        tmp_path, empty_registry_db, capsys) -> None:
    """Found in review: a scorer whose items of the held-out gold hold one class (the rule scored only
    gold positives) has no ROC-AUC on the test split (None, as cross-fitted), but no reason was kept
    (only against_truth kept one), so reports/eval/latest.json and the console said "-" alone."""
    from jobs.show import print_heads

    lake, gold, task, cross = _rule_of_gold_positives_only(tmp_path, empty_registry_db)

    ruled = len([c for c in lake.ids[:-ERRORS] if split_of(c) == "test" and gold[c]])  # held-out positives with an ok row
    assert task["roc_auc"]["rule"] is None and task["scored_items"]["rule"] == ruled
    assert task["roc_auc_not_defined"] == {"rule": f"the gold holds one class on its {ruled} scored items"}
    crossed = int(gold[lake.ids[:-ERRORS]].sum())
    assert cross["roc_auc"]["rule"] is None
    assert cross["roc_auc_not_defined"] == {"rule": f"the gold holds one class on its {crossed} scored items"}
    assert json.loads(json.dumps(task))["roc_auc_not_defined"] == task["roc_auc_not_defined"]  # as reports/eval/latest.json keeps it
    print_heads({"tasks": {"low_quality": {**task, "cross_fitted": cross}}, "weak_head_beats_baselines_on": [], "target_met": False,
                 "cross_fitted": {"weak_head_beats_baselines_on": [], "target_met": False, "beyond_noise_on": [], "beyond_noise_against_truth_on": []},
                 "loader": {"scales": {}}})
    said = " ".join(capsys.readouterr().out.split())
    assert f"low_quality: rule has no ROC-AUC on held-out gold (the gold holds one class on its {ruled} scored items)" in said, said
    assert f"rule - (on its {crossed} scored items) (the gold holds one class on its {crossed} scored items)" in said, said


def test_the_heads_figure_draws_no_bar_for_a_roc_auc_not_defined_and_says_why_there_and_on_the_page(tmp_path, monkeypatch) -> None:
    """Found in review: heads_figure drew a scorer without a ROC-AUC (None: its held-out gold holds
    one class) as a bar of 0, below the axis's 0.4, so the figure showed nothing where the other
    scorers' bars stood, and nothing said why; the page's table said "–" alone."""
    from rollout import html_report
    from training.heads_evaluation import SCORERS

    why = "the gold holds one class on its 14 scored items"

    def task(auc: dict, undefined: dict) -> dict:
        return {"held_out_items": 80, "held_out_without_row": 0, "roc_auc": auc, "roc_auc_not_defined": undefined,
                "crossover": {"curve": [{"gold_labels": 25, "roc_auc": 0.8}, {"gold_labels": 50, "roc_auc": 0.9}]},
                "weak_head_margin": {"majority_vote": None, "rule": None}}
    defined = {s: 0.6 + 0.05 * i for i, s in enumerate(SCORERS)}
    section = {"tasks": {"low_quality": task({**defined, "rule": None}, {"rule": why}), "text_heavy": task(defined, {})}}
    drawn = []
    figure_png = html_report.figure_png
    monkeypatch.setattr(html_report, "figure_png", lambda figure: drawn.append(figure) or figure_png(figure))

    page = write_heads_report(section, tmp_path / "heads.html").read_text()

    bars = drawn[0].axes[0]
    heights = {c.get_label(): [(round(p.get_x() + p.get_width() / 2, 6), p.get_height()) for p in c.patches] for c in bars.containers}
    at = {s: [x for x, _ in heights[s]] for s in SCORERS}
    assert [h for _, h in heights["rule"]] == [defined["rule"]]  # text_heavy's alone: before, low_quality's was a bar of 0.0
    assert all([h for _, h in heights[s]] == [defined[s]] * 2 for s in SCORERS if s != "rule")
    rule_low_quality = at["weak_head"][0] + (at["rule"][0] - at["weak_head"][1])  # where low_quality's rule bar would stand
    said = [t for t in bars.texts if why in t.get_text()]
    assert len(said) == 1 and said[0].get_position()[0] == pytest.approx(rule_low_quality)
    assert bars.get_ylim()[0] <= said[0].get_position()[1]  # within the axis, not below it
    assert "low_quality: rule has no ROC-AUC on held-out gold (the gold holds one class on its 14 scored items)" in page


def test_the_roc_aucs_on_the_items_every_scorer_scored_and_the_crossover_points_without_one_say_why(
        tmp_path, empty_registry_db, capsys) -> None:
    """Found in review: where the items every scorer scored hold one class of gold (the rule scored only gold
    positives), `compared` kept its ROC-AUCs as None with no reason and the console printed none of them; where
    the held-out gold holds one class, the crossover's points were None with no reason of their own (the
    console said "-", and "not within" n gold labels of a weak-label head that had no ROC-AUC to match)."""
    from jobs.show import print_heads

    lake, gold, task, cross = _rule_of_gold_positives_only(tmp_path, empty_registry_db)
    positive_held_out = lake.gold.assign(label=lake.gold["label"].where(lake.gold["content_id"].map(split_of) != "test", 1))
    one_class = compare_heads(lake.settings, "low_quality", lake.weak, positive_held_out, lake.majority, "image_embedding", "1")

    ruled = len([c for c in lake.ids[:-ERRORS] if split_of(c) == "test" and gold[c]])  # held-out positives with an ok row
    crossed = int(gold[lake.ids[:-ERRORS]].sum())
    for figures, items in ((task, ruled), (cross, crossed)):
        compared = json.loads(json.dumps(figures))["compared"]  # as reports/eval/latest.json keeps it
        assert compared["items"] == compared["positives"] == items and set(compared["roc_auc"].values()) == {None}
        assert compared["roc_auc_not_defined"] == {s: f"the gold holds one class on its {items} scored items" for s in compared["roc_auc"]}
    held_out = len([c for c in lake.ids[:-ERRORS] if split_of(c) == "test"])
    why = f"the gold holds one class on its {held_out} scored items"
    curve = one_class["crossover"]["curve"]
    assert [p["roc_auc"] for p in curve] == [None] * len(curve) and [p["roc_auc_not_defined"] for p in curve] == [why] * len(curve)
    assert all("roc_auc_not_defined" not in p for p in task["crossover"]["curve"])  # defined: no reason

    section = {"tasks": {"low_quality": {**task, "cross_fitted": cross}, "text_heavy": {**one_class, "cross_fitted": cross}},
               "weak_head_beats_baselines_on": [], "target_met": False, "loader": {"scales": {}},
               "cross_fitted": {"weak_head_beats_baselines_on": [], "target_met": False, "beyond_noise_on": [], "beyond_noise_against_truth_on": []}}
    print_heads(section)
    said = " ".join(capsys.readouterr().out.split())
    compared_note = (f"low_quality: no scorer has a ROC-AUC on the {ruled} held-out items every scorer scored, so no margin over a baseline "
                     f"(the gold holds one class on its {ruled} scored items)")
    sizes = ", ".join(str(p["gold_labels"]) for p in curve)
    crossover_note = f"text_heavy: the crossover's gold-only heads on {sizes} gold labels have no ROC-AUC on held-out gold ({why})"
    assert compared_note in said and crossover_note in said, said
    assert (f"cross-fitted on the {crossed} items every scorer scored (no ROC-AUC (the gold holds one class on its {crossed} "
            "scored items))") in said, said
    assert "gold_25 has no ROC-AUC" not in said and "not within" not in said  # the curve's heads are said by their points
    page = " ".join(write_heads_report(section, tmp_path / "heads.html").read_text().split())
    assert compared_note in page and crossover_note.replace("'", "&#x27;") in page
