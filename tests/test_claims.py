"""compresskit.claims: sentences tied to the run fail a strict run when contradicted and warn a learner otherwise."""

import numpy as np
import pytest

from compresskit import claims


def test_a_claim_that_holds_says_so(capsys):
    assert claims.check(True, "GPTQ beats RTN at 3 bits", measured="5.1 against 5.4") is True
    assert "checked against this run: GPTQ beats RTN at 3 bits (measured: 5.1 against 5.4)" in capsys.readouterr().out
    assert claims.check(np.bool_(True), "numpy's bool is a bool") is True


def test_a_contradicted_claim_fails_a_strict_run(monkeypatch):
    monkeypatch.setenv(claims.STRICT_ENV, "1")
    with pytest.raises(claims.ClaimError, match="does not hold in this run"):
        claims.check(False, "A beats B")


def test_a_contradicted_claim_warns_a_learner_without_a_traceback(monkeypatch, capsys):
    monkeypatch.delenv(claims.STRICT_ENV, raising=False)
    assert claims.check(False, "A beats B", measured="1 vs 2") is False
    out = capsys.readouterr().out
    assert "disagrees" in out and "A beats B" in out


def test_check_refuses_what_is_not_a_claim():
    with pytest.raises(TypeError, match="holds must be a bool"):
        claims.check(1, "one is not a bool")
    with pytest.raises(ValueError, match="claim must be"):
        claims.check(True, "  ")


def test_compare_words_the_sentence_by_the_numbers():
    assert claims.compare(5.0, 6.0, names=("GPTQ", "RTN")).startswith("GPTQ beats RTN")
    assert claims.compare(6.0, 5.0, names=("GPTQ", "RTN")).startswith("RTN beats GPTQ: 5.000 against 6.000")
    assert claims.compare(5.0, 5.05, names=("GPTQ", "RTN"), spread=0.1).startswith("no measurable difference")
    assert claims.compare(0.9, 0.8, names=("a", "b"), lower_is_better=False).startswith("a beats b")
    with pytest.raises(ValueError):
        claims.compare(float("nan"), 1.0, names=("a", "b"))


def test_within_is_the_relative_gap():
    holds, text = claims.within(1.03, 1.0, 0.05, name="int4", reference_name="float32")
    assert holds and "within 5% of float32" in text and "+3.0%" in text
    holds, text = claims.within(1.08, 1.0, 0.05, name="int4", reference_name="float32")
    assert not holds and "not within" in text


def test_margins_are_the_relative_slack_to_each_threshold():
    assert claims.above(53.4, 40) == pytest.approx(0.335)  # 53.4x against "over 40x"
    assert claims.below(0.93, 1.0) == pytest.approx(0.07)  # 0.93 points against "at most a point"
    assert claims.below(1.39, 1.0) == pytest.approx(-0.39)  # contradicted: negative
    assert claims.above(0.2, 0) == pytest.approx(0.2)  # a bound of 0: the plain difference
    with pytest.raises(ValueError, match="value"):
        claims.above(float("nan"), 1.0)


def test_every_check_is_logged_with_its_margins_when_asked(monkeypatch, tmp_path, capsys):
    import json

    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv(claims.LOG_ENV, str(log))
    monkeypatch.delenv(claims.STRICT_ENV, raising=False)
    claims.check(True, "over 40x", measured="53.4x", margins={"ratio": claims.above(53.4, 40)})
    claims.check(False, "within a point", margins={"loss": claims.below(1.39, 1)})
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["claim"], r["holds"]) for r in records] == [("over 40x", True), ("within a point", False)]
    assert records[0]["margins"]["ratio"] == pytest.approx(0.335) and records[0]["measured"] == "53.4x"
    assert records[1]["margins"]["loss"] == pytest.approx(-0.39)
    with pytest.raises(TypeError, match="margins must be a non-empty dict"):
        claims.check(True, "x", margins={})
    with pytest.raises(ValueError, match="margins\\['a'\\]"):
        claims.check(True, "x", margins={"a": float("inf")})
    monkeypatch.delenv(claims.LOG_ENV)
    claims.check(True, "not logged")
    assert len(log.read_text().splitlines()) == 2


def test_every_check_in_the_chapters_reports_its_margins():
    """benchmarks/claim_margins.py reads the margins of every check: a check without them would go unmeasured."""
    import ast
    import json
    from pathlib import Path

    missing = []
    for path in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            if cell["cell_type"] != "code":
                continue
            tree = ast.parse("".join(cell["source"]))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "check" \
                        and getattr(node.func.value, "id", "") == "claims" \
                        and "margins" not in {k.arg for k in node.keywords}:
                    missing.append(f"{path.name} cell {i}")
    assert not missing, f"claims.check without margins: {missing}"
