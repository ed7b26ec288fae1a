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
