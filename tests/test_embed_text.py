"""``ralif embed-text`` with a small deterministic stand-in for the sentence encoder."""

from __future__ import annotations

import numpy as np
import pytest

from ralif.cli import main
from ralif.models import text
from tests.conftest import char_device, regular_files


class FakeEncoder:
    """Deterministic 384-d vectors from each text's bytes; counts what it embeds."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.embedded: list[str] = []
        self.fail_after = fail_after

    def encode(self, texts, batch_size, show_progress_bar, normalize_embeddings):
        if self.fail_after is not None and len(self.embedded) >= self.fail_after:
            raise KeyboardInterrupt  # the run is stopped here
        self.embedded += texts
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, t in enumerate(texts):
            rng = np.random.default_rng(list(t.encode()) or [0])
            out[i] = rng.normal(size=384)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def encoder(monkeypatch):
    def use(fake: FakeEncoder) -> FakeEncoder:
        monkeypatch.setattr(text, "load_minilm", lambda device="auto": fake)
        return fake

    return use


def _csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-8")
    return str(path)


def _embed(csv, out, *more):
    return main(["embed-text", "--csv", csv, "--label-column", "label", "--out", str(out),
                 "--quiet", *more])  # fmt: skip


def test_string_labels_become_class_ids_with_names_saved_as_text(tmp_path, encoder):
    encoder(FakeEncoder())
    csv = _csv(tmp_path / "t.csv", [("a good film", "pos"), ("dull", "neg"), ("meh", ""),
                                    ("great", "pos")])  # fmt: skip
    assert _embed(csv, tmp_path / "e.npz") == 0
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert z["classes"].dtype.kind == "U"
        assert z["classes"].tolist() == ["neg", "pos"]
        assert z["y"].tolist() == [1, 0, -1, 1]
        assert z["X"].shape == (4, 384)


def test_integer_labels_stay_integers_without_class_names(tmp_path, encoder):
    encoder(FakeEncoder())
    csv = _csv(tmp_path / "t.csv", [("x", "2"), ("y", ""), ("z", "0")])
    assert _embed(csv, tmp_path / "e.npz") == 0
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert z["y"].tolist() == [2, -1, 0] and "classes" not in z.files


def test_bad_labels_are_refused_before_anything_is_embedded(tmp_path, encoder, capsys):
    fake = encoder(FakeEncoder())
    csv = _csv(tmp_path / "t.csv", [("x", "1"), ("y", "2.5")])
    assert _embed(csv, tmp_path / "e.npz") == 2
    assert "non-integer values in rows [1]" in capsys.readouterr().err
    assert fake.embedded == [] and not (tmp_path / "e.npz").exists()


def test_an_unwritable_out_is_refused_before_anything_is_embedded(tmp_path, encoder, capsys):
    fake = encoder(FakeEncoder())
    csv = _csv(tmp_path / "t.csv", [("x", "a"), ("y", "b")])
    (tmp_path / "e.npz").write_bytes(b"keep")
    (tmp_path / "e.npz").chmod(0o444)
    assert _embed(csv, tmp_path / "e.npz") == 2
    assert "read-only" in capsys.readouterr().err
    assert fake.embedded == []


def test_a_stopped_run_resumes_and_embeds_only_the_rest(tmp_path, encoder, monkeypatch):
    monkeypatch.setattr(text, "CHUNK_TEXTS", 4)
    rows = [(f"text number {i}", "ab"[i % 2]) for i in range(10)]
    csv = _csv(tmp_path / "t.csv", rows)
    encoder(FakeEncoder(fail_after=8))  # stopped after two chunks of four
    with pytest.raises(KeyboardInterrupt):
        _embed(csv, tmp_path / "e.npz")
    assert not (tmp_path / "e.npz").exists()
    second = encoder(FakeEncoder())
    assert _embed(csv, tmp_path / "e.npz") == 0
    assert second.embedded == ["text number 8", "text number 9"]
    encoder(FakeEncoder())
    assert _embed(csv, tmp_path / "whole.npz") == 0
    with np.load(tmp_path / "e.npz") as a, np.load(tmp_path / "whole.npz") as b:
        np.testing.assert_array_equal(a["X"], b["X"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npz", "t.csv", "whole.npz"]


def test_progress_of_other_texts_is_not_reused(tmp_path, encoder, monkeypatch):
    monkeypatch.setattr(text, "CHUNK_TEXTS", 2)
    encoder(FakeEncoder(fail_after=2))
    with pytest.raises(KeyboardInterrupt):
        _embed(_csv(tmp_path / "t.csv", [("a", "x"), ("b", "y"), ("c", "x")]), tmp_path / "e.npz")
    fake = encoder(FakeEncoder())
    assert _embed(_csv(tmp_path / "t.csv", [("A", "x"), ("B", "y"), ("C", "x")]),
                  tmp_path / "e.npz") == 0  # fmt: skip
    assert fake.embedded == ["A", "B", "C"]


def test_output_to_a_device_keeps_no_progress_beside_it(tmp_path, encoder):
    dev = char_device(tmp_path)
    texts = _csv(tmp_path / "t.csv", [("a", "x"), ("b", "y")])
    before = regular_files(dev.parent)
    encoder(FakeEncoder())
    assert _embed(texts, dev) == 0
    assert regular_files(dev.parent) == before
    assert regular_files(tmp_path) == {"t.csv"}
