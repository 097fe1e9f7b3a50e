"""The emoji builder's output format, the shapes set, and load_dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.train import data


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


@pytest.mark.skipif(not data.FONT_PATH.exists(), reason="fonts-noto-color-emoji is not installed")
def test_build_emoji_subset(tmp_path) -> None:
    pytest.importorskip("emoji")
    assert data.main(["build", "--out", str(tmp_path), "--limit", "6"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["count"] == 6 and manifest["sha256"] == data.sha256_file(tmp_path / data.NPZ_NAME)
    assert "OFL-1.1" in manifest["licences"]["images"] and "BSD" in manifest["licences"]["captions"]
    images, captions, ids = data.load_dataset(tmp_path)
    assert images.shape == (6, 64, 64, 3) and images.dtype == np.uint8
    assert all(len(c) >= len(data.TEMPLATES) for c in captions)
    assert images[:, 0, 0].min() > 200, "corners are white background"
    assert len(set(ids)) == 6
