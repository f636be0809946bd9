"""The TAU layout reader, the synthetic scene set and the feature cache."""

import hashlib

import numpy as np
import pytest

from mcuasc.audio import read_wav, write_wav
from mcuasc.data.cache import FeatureCache
from mcuasc.data.synth import synthesize_dataset
from mcuasc.data.tau import TauDataset, load_labels
from mcuasc.errors import InputError
from mcuasc.frontend import preset

PAPER_ORDER = ["airport", "shopping_mall", "metro_station", "street_pedestrian", "public_square", "street_traffic",
               "tram", "bus", "metro", "park"]


@pytest.fixture
def synthetic(synthetic_scenes):
    return synthetic_scenes(10, 3)


def test_labels_are_data_in_the_papers_order():
    assert load_labels() == PAPER_ORDER


def test_synthetic_set_is_in_the_tau_layout(synthetic):
    ds = TauDataset.open(synthetic)
    train, evaluate = ds.split("train"), ds.split("evaluate")
    assert len(train) == 70 and len(evaluate) == 30 and len(ds.split("test")) == 30
    assert ds.labels == PAPER_ORDER
    clip = train[0]
    assert clip.filename.startswith("audio/") and clip.filename.endswith(f"-{clip.device}.wav")
    audio = read_wav(clip.path, 44100)
    assert audio.source_format == "PCM 24-bit" and len(audio.samples) == 44100 and audio.source_rate == 44100
    # Devices s4–s6 exist only in the evaluation split: the device-mismatch problem in miniature.
    assert not {"s4", "s5", "s6"} & set(ds.device_breakdown("train"))
    assert {"s4", "s5", "s6"} & set(ds.device_breakdown("evaluate"))
    assert sum(ds.device_breakdown("train").values()) == 70


def test_synthesis_is_deterministic(synthetic, tmp_path):
    synthesize_dataset(tmp_path / "again", clips_per_class=10, seed=3)

    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert digest(synthetic) == digest(tmp_path / "again")
    synthesize_dataset(tmp_path / "other", clips_per_class=10, seed=4)
    assert digest(tmp_path / "other") != digest(synthetic)


def test_synthesis_never_writes_over_someone_elses_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not made by mcuasc synth-data"):
        synthesize_dataset(tmp_path, clips_per_class=2)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def write_tiny_tree(root, rows, split_rows):
    (root / "audio").mkdir(parents=True)
    (root / "evaluation_setup").mkdir()
    for filename, *_ in rows:
        write_wav(root / filename, np.zeros(100, dtype=np.int16), 44100, bits=24)
    (root / "meta.csv").write_text("filename\tscene_label\tidentifier\tsource_label\n" + "".join("\t".join(r) + "\n" for r in rows))
    (root / "evaluation_setup" / "fold1_train.csv").write_text("filename\tscene_label\n" + "".join(f"{f}\t{s}\n" for f, s in split_rows))
    (root / "evaluation_setup" / "fold1_evaluate.csv").write_text("filename\tscene_label\n")


def test_hand_written_tree_parses(tmp_path):
    rows = [["audio/tram-vienna-42-7-s2.wav", "tram", "vienna-42", "s2"], ["audio/park-lyon-1-0-a.wav", "park", "lyon-1", "a"]]
    write_tiny_tree(tmp_path, rows, [(r[0], r[1]) for r in rows])
    ds = TauDataset.open(tmp_path)
    clips = ds.split("train")
    assert [(c.label, c.label_index, c.device, c.city) for c in clips] == [("tram", 6, "s2", "vienna"), ("park", 9, "a", "lyon")]
    assert ds.device_breakdown("train") == {"a": 1, "s2": 1}


@pytest.mark.parametrize(
    "rows, split, fragment",
    [
        ([["audio/tram-vienna-42-7-s2.wav", "trolley", "x", "s2"]], [], "unknown scene"),
        ([["audio/tram-vienna-42-7-s2.wav", "tram", "x", "s2"]], [("audio/bus-x-1-1-a.wav", "bus")], "absent from meta.csv"),
    ],
)
def test_bad_trees_get_clear_errors(tmp_path, rows, split, fragment):
    write_tiny_tree(tmp_path, rows, split)
    with pytest.raises(InputError, match=fragment):
        TauDataset.open(tmp_path).split("train")


def test_missing_pieces(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        TauDataset.open(tmp_path / "nope")
    with pytest.raises(InputError, match="meta.csv is missing"):
        TauDataset.open(tmp_path)
    rows = [["audio/tram-vienna-42-7-s2.wav", "tram", "x", "s2"]]
    write_tiny_tree(tmp_path / "t", rows, [])
    (tmp_path / "t" / rows[0][0]).unlink()
    with pytest.raises(InputError, match="1 audio files listed in meta.csv are missing"):
        TauDataset.open(tmp_path / "t")


def test_feature_cache_computes_once_and_invalidates(synthetic, tmp_path):
    clips = TauDataset.open(synthetic).split("evaluate")
    cache = FeatureCache(tmp_path / "cache")
    first = cache.load_or_compute(clips, preset("bcresnet"))
    assert first.shape == (30, 1, 256, 44) and first.dtype == np.float32 and cache.computed == 30
    again = cache.load_or_compute(clips, preset("bcresnet"))
    assert np.array_equal(first, again) and cache.computed == 30
    other = cache.load_or_compute(clips, preset("mobilenetv2"))
    assert other.shape == (30, 3, 128, 36) and cache.computed == 60
    raw = cache.load_or_compute(clips[:3], preset("bcresnet"), impl="integer")
    assert raw.dtype == np.int8


def test_classes_are_separable_but_not_trivially(synthetic):
    """A nearest-centroid classifier on mean log-mel spectra: well above chance (10 %), far from perfect."""
    ds = TauDataset.open(synthetic)
    cache = FeatureCache(synthetic / ".cache")
    features = {s: cache.load_or_compute(ds.split(s), preset("bcresnet")).mean(axis=3).reshape(-1, 256) for s in ("train", "evaluate")}
    labels = {s: np.array([c.label_index for c in ds.split(s)]) for s in ("train", "evaluate")}
    mu, sd = features["train"].mean(0), features["train"].std(0) + 1e-6
    train, evaluate = (features["train"] - mu) / sd, (features["evaluate"] - mu) / sd
    centroids = np.stack([train[labels["train"] == k].mean(0) for k in range(10)])
    predicted = np.argmin(((evaluate[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (predicted == labels["evaluate"]).mean()
    assert 0.2 <= accuracy <= 0.9, accuracy
