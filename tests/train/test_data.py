"""The emoji builder's output format, the shapes set, and load_dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.train import artsets, data


def test_clean_name_and_captions() -> None:
    assert data.clean_name(":man’s_shoe:") == "mans shoe"
    assert data.clean_name(":Côte_d’Ivoire:") == "cote divoire"
    caps = data.expand_captions(["apple", "red heart"])
    assert caps[0] == "apple" and "an emoji of an apple" in caps and "a picture of a red heart" in caps
    assert len(caps) == len(set(caps))


def test_skin_tone_variant_gets_base_keyword() -> None:
    names = data.emoji_names({"en": ":waving_hand_medium-dark_skin_tone:", "alias": []})
    assert names == ["waving hand medium dark skin tone", "waving hand"]


def test_shapes_dataset() -> None:
    images, captions, ids = data.load_dataset("shapes:12")
    assert images.shape == (12, 64, 64, 3) and images.dtype == np.uint8
    assert len(captions) == len(ids) == 12
    assert captions[0][0].startswith("a ") and " background" in captions[0][0]


def test_heldout_rule_is_fixed_and_keeps_skin_tones_together() -> None:
    names = ["waving hand medium dark skin tone", "waving hand"]
    assert data.concept_group(names) == "waving hand"
    assert data.is_heldout(names) == data.is_heldout(["waving hand"])
    groups = [f"thing {i}" for i in range(2000)]
    share = sum(data.is_heldout([g]) for g in groups) / len(groups)
    assert 0.03 < share < 0.07


def test_style_captions_and_fluent_and_twemoji_names() -> None:
    assert data.style_captions(["red heart"], "flat") == ["red heart, flat", "red heart in flat style"]
    assert artsets.fluent_candidates("waving hand medium light skin tone") == ["waving-hand-medium-light"]
    assert artsets.fluent_candidates("1st place medal") == ["1st-place-medal", "1st-place-medal-default"]
    assert artsets.twemoji_candidates("2764-fe0f") == ["2764-fe0f", "2764"]


def test_compositional_prompts_use_known_words_and_name_no_emoji() -> None:
    known = {"blue", "cat", "face", "with", "sunglasses", "red", "heart"}
    prompts = data.compositional_prompts(known, {"red heart"})
    texts = {p["prompt"] for p in prompts}
    assert "blue cat face" in texts and "cat face with sunglasses" in texts
    assert "red heart" not in texts
    assert all(set(t.split()) <= known for t in texts)


def test_records_select_and_split_filter(tmp_path) -> None:
    images, captions, ids = data.shapes_dataset(6)
    rec = data.Records(images, captions, ids, ["a", "b"] * 3, ["train", "heldout", "train", "train", "heldout", "train"])
    data.save_npz(tmp_path / data.NPZ_NAME, rec)
    back = data.load_records(tmp_path)
    assert back.styles == rec.styles and back.split == rec.split and np.array_equal(back.images, images)
    train_images, _, train_ids = data.load_dataset(tmp_path)
    assert len(train_ids) == 4 and train_ids == [ids[i] for i in (0, 2, 3, 5)]
    assert len(data.load_dataset(tmp_path, split="all")[2]) == 6


def test_missing_npm_names_the_package(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(artsets.shutil, "which", lambda name: None)
    with pytest.raises(artsets.MissingArtSet, match="@twemoji/svg"):
        artsets.npm_package("@twemoji/svg@15.0.0", tmp_path)


@pytest.mark.skipif(not data.FONT_PATH.exists(), reason="fonts-noto-color-emoji is not installed")
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_build_emoji_subset(tmp_path) -> None:
    pytest.importorskip("emoji")
    pytest.importorskip("resvg_py")
    cache = Path(__file__).resolve().parents[2] / "data" / "sources"  # shared with real builds: fetched once
    assert data.main(["build", "--out", str(tmp_path), "--limit", "4", "--cache", str(cache)]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["sha256"] == data.sha256_file(tmp_path / data.NPZ_NAME)
    assert "OFL-1.1" in manifest["licences"]["noto"] and "CC-BY-4.0" in manifest["licences"]["twemoji"]
    assert "BSD" in manifest["licences"]["captions"]
    rec = data.load_records(tmp_path)
    assert manifest["count"] == len(rec.ids) == len(manifest["images"])
    assert rec.images.shape[1:] == (64, 64, 3) and rec.images.dtype == np.uint8
    assert len(set(rec.ids)) == 4 and set(rec.styles) >= {"noto", "twemoji"}
    assert rec.images[:, 0, 0].min() > 200, "corners are white background"
    for row, caps, style in zip(manifest["images"], rec.captions, rec.styles):
        assert len(row["source_sha256"]) == 64 and row["style"] == style
        assert caps[0] == rec.captions[rec.ids.index(row["id"])][0]  # every style shares the plain name
        assert caps[-1].endswith(f"in {manifest['styles'][style]} style")
    # one concept in two styles: two different pictures under one plain caption
    first = [i for i, c in enumerate(rec.ids) if c == rec.ids[0]]
    assert len(first) >= 2 and not np.array_equal(rec.images[first[0]], rec.images[first[1]])
