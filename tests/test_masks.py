"""Mask files in: a corpus of bad and odd files made here; and the mask edits."""

import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from explorer import masks
from explorer.masks import MaskError

DISK = masks.shape_mask("circle", 32, radius=0.3)


def png(array, mode=None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode=mode).save(out, format="PNG")
    return out.getvalue()


def npy(array, **kwargs) -> bytes:
    out = io.BytesIO()
    np.save(out, array, **kwargs)
    return out.getvalue()


def png_declaring(width, height) -> bytes:
    """A tiny PNG whose header claims width x height pixels (CRC fixed up)."""
    data = bytearray(png(np.zeros((4, 4), np.uint8)))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:ihdr + 13]))
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


class Exploding:
    """Unpickling this would write a marker file: it must never happen."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


BAD = {
    "empty file": (b"", "empty"),
    "random bytes": (bytes(range(256)) * 4, "not an image"),
    "text": (b"hello, I am a mask", "not an image"),
    "truncated png": (png(DISK.astype(np.uint8) * 255)[:60], "truncated or damaged"),
    "truncated npy": (npy(DISK)[:-100], "truncated or damaged"),
    "corrupt npy header": (b"\x93NUMPY\x01\x00\x10\x00{'descr': nonsense", "header"),
    "object npy": (npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "objects"),
    "nan": (npy(np.array([[0.0, np.nan], [1.0, 0.0]])), "NaN"),
    "infinity": (npy(np.array([[0.0, np.inf], [1.0, 0.0]])), "infinite"),
    "3-D": (npy(np.zeros((2, 3, 4), np.int32)), "2-D"),
    "1-D": (npy(np.zeros(5, np.int32)), "2-D"),
    "negative labels": (npy(np.array([[0, -1], [1, 0]])), "negative"),
    "label 7": (npy(np.array([[0, 7], [1, 0]])), "more classes than allowed"),
    "fractions": (npy(np.array([[0.0, 0.5], [1.0, 0.0]])), "fractions"),
    "decompression bomb": (png_declaring(40_000, 40_000), "limit"),
    "above the pixel cap": (png_declaring(masks.MAX_SIDE + 1, masks.MAX_SIDE), "limit"),
    "huge npy header": (b"\x93NUMPY\x01\x00v\x00" + (
        b"{'descr': '<i4', 'fortran_order': False, 'shape': (100000, 100000), }"
        .ljust(117) + b"\n"), "limit"),
}


@pytest.mark.parametrize("data, words", BAD.values(), ids=BAD.keys())
def test_bad_files_raise_a_mask_error_saying_what_is_wrong(data, words):
    with pytest.raises(MaskError, match=words) as caught:
        masks.load_mask(data)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).endswith(".")  # one plain sentence


def test_more_classes_than_asked_for():
    with pytest.raises(MaskError, match="labels must be 0 to 2"):
        masks.load_mask(npy(np.array([[0, 3]])), num_classes=3)


def test_a_pickled_npy_is_never_unpickled(tmp_path):
    Exploding.marker = tmp_path / "unpickled"
    data = npy(np.array([Exploding()], dtype=object), allow_pickle=True)
    with pytest.raises(MaskError):
        masks.load_mask(data)
    assert not Exploding.marker.exists()


def test_grey_0_255_png_is_binary():
    assert np.array_equal(masks.load_mask(png(DISK.astype(np.uint8) * 255)), DISK)


def test_16_bit_png_binary_and_labels():
    binary = (DISK * 65535).astype(np.uint16)
    assert np.array_equal(masks.load_mask(png(binary)), DISK)
    labels = (np.arange(32 * 32).reshape(32, 32) % 4).astype(np.uint16)
    assert np.array_equal(masks.load_mask(png(labels)), labels)


def test_jpeg_noise_is_thresholded_halfway():
    out = io.BytesIO()
    Image.fromarray(DISK.astype(np.uint8) * 255).save(out, format="JPEG", quality=70)
    loaded = masks.load_mask(out.getvalue())
    assert (loaded != DISK).sum() <= 8


def test_rgba_strokes_are_class_by_colour_and_black_erases():
    rgba = np.zeros((16, 16, 4), np.uint8)
    for label, rows in ((1, slice(0, 4)), (2, slice(4, 8)), (3, slice(8, 12))):
        color = masks.CLASS_COLORS[label]
        rgba[rows, :4] = [int(color[i:i + 2], 16) for i in (1, 3, 5)] + [255]
    rgba[12:, :4] = (0, 0, 0, 255)  # eraser strokes
    labels = masks.load_mask(png(rgba), num_classes=4)
    assert [labels[r, 0] for r in (0, 4, 8, 12)] == [1, 2, 3, 0]
    assert labels[:, 4:].max() == 0  # transparent
    assert set(np.unique(masks.load_mask(png(rgba)))) == {0, 1}  # binary: any colour is 1


def test_palette_png_index_is_the_class():
    labels = (np.arange(64).reshape(8, 8) % 5).astype(np.int32)
    assert np.array_equal(masks.load_mask(masks.save_mask_png(labels)), labels)


@pytest.mark.parametrize("fmt", ["TIFF", "PNG"])
def test_other_formats_and_sources(fmt, tmp_path):
    out = io.BytesIO()
    Image.fromarray(DISK.astype(np.uint8) * 255).save(out, format=fmt)
    path = tmp_path / f"mask.{fmt.lower()}"
    path.write_bytes(out.getvalue())
    for source in (path, str(path), out.getvalue(), io.BytesIO(out.getvalue())):
        assert np.array_equal(masks.load_mask(source), DISK)


def test_integer_bool_and_single_channel_npy():
    assert np.array_equal(masks.load_mask(npy(DISK)), DISK)
    assert np.array_equal(masks.load_mask(npy(DISK.astype(bool))), DISK)
    assert np.array_equal(masks.load_mask(npy(DISK[..., None])), DISK)


def test_missing_path_is_a_mask_error(tmp_path):
    with pytest.raises(MaskError, match="no file"):
        masks.load_mask(tmp_path / "nope.png")


def test_probability_maps():
    prob = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert np.array_equal(masks.load_probability(npy(prob)), prob)
    with pytest.raises(MaskError, match=r"\[0, 1\]"):
        masks.load_probability(npy(prob * 2))
    grey = (prob * 255).round().astype(np.uint8)
    assert np.allclose(masks.load_probability(png(grey)), grey / 255)


# ------------------------------------------------------------------------------ edits


def test_circle_area_and_blobs_are_deterministic():
    circle = masks.shape_mask("circle", 200, radius=0.2)
    assert circle.sum() == pytest.approx(np.pi * 40**2, rel=0.02)
    square = masks.shape_mask("square", 100, radius=0.1)
    assert square.sum() == 20 * 20
    a, b = (masks.shape_mask("blobs", 64, radius=0.1, seed=3) for _ in range(2))
    assert np.array_equal(a, b) and a.sum() > 0
    with pytest.raises(ValueError, match="kind"):
        masks.shape_mask("star")


def test_class_shapes_give_every_foreground_class_its_own_object():
    side = 256
    for classes in range(2, 7):
        labels = masks.class_shapes("circle", side, num_classes=classes)
        assert set(np.unique(labels)) == set(range(classes)), classes
    labels = masks.class_shapes("circle", side, num_classes=6, radius=0.2)
    area = np.bincount(labels.ravel(), minlength=6)
    r = 0.2 * side  # class 1: the circle the sliders make, untouched by the others
    assert area[1] == pytest.approx(np.pi * r**2, rel=0.01)
    # classes 2-5: a square of half-side 0.5 r, circles of 0.4 r and 0.25 r, a square of 0.3 r
    assert area[2] == pytest.approx((2 * 0.5 * r) ** 2, rel=0.03)
    assert area[3] == pytest.approx(np.pi * (0.4 * r) ** 2, rel=0.03)
    assert area[4] == pytest.approx((2 * 0.3 * r) ** 2, rel=0.05)
    assert area[5] == pytest.approx(np.pi * (0.25 * r) ** 2, rel=0.05)
    assert list(area[1:]) == sorted(area[1:], reverse=True)  # sizes differ, as classes do
    # binary: the one object of shape_mask; moving the centre moves every class with it
    np.testing.assert_array_equal(masks.class_shapes("square", 64, radius=0.1),
                                  masks.shape_mask("square", 64, radius=0.1))
    moved = masks.class_shapes("circle", side, num_classes=4, center=(0.5, 0.5625))
    np.testing.assert_array_equal(moved, masks.shift(masks.class_shapes(
        "circle", side, num_classes=4), 0, 16))  # 0.0625 of 256 px
    with pytest.raises(ValueError, match="num_classes must be 2 to 6"):
        masks.class_shapes("circle", num_classes=7)


def test_shift_moves_the_centroid_and_fills_with_background():
    moved = masks.shift(DISK, 3, -2)
    before, after = np.argwhere(DISK).mean(0), np.argwhere(moved).mean(0)
    assert np.allclose(after - before, (3, -2))
    assert masks.shift(DISK, 0, 40).sum() == 0


def test_grow_shrink_invert_resize():
    assert masks.dilate(DISK, 2).sum() > DISK.sum() > masks.erode(DISK, 2).sum()
    assert np.array_equal(masks.invert(masks.invert(DISK)), DISK)
    labels = masks.shape_mask("circle", 40, radius=0.3, label=3)
    assert set(np.unique(masks.resize_labels(labels, (17, 23)))) == {0, 3}
    prob = masks.resize_probability(np.random.default_rng(0).random((10, 10)), (33, 7))
    assert prob.shape == (33, 7) and prob.min() >= 0 and prob.max() <= 1


def test_fit_classes_views_a_multiclass_mask_as_binary_on_a_binary_page():
    labels = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(masks.fit_classes(labels, 2), [[0, 1], [1, 1]])
    assert masks.fit_classes(labels, 4) is labels


def test_soften():
    p = masks.soften(DISK, 2, confidence=0.9)
    assert p.shape == (32, 32, 1)
    assert np.allclose(p[DISK == 1], 0.9) and np.allclose(p[DISK == 0], 0.1)
    exact = masks.soften(DISK, 2, confidence=1.0)
    assert set(np.unique(exact)) == {0.0, 1.0}  # confidence 1 is exactly the hard mask
    multi = masks.soften(DISK * 2, 3, confidence=0.8, blur_sigma=1.0, noise=0.5)
    assert multi.shape == (32, 32, 3) and np.allclose(multi.sum(-1), 1, atol=1e-5)
    hot = masks.soften(DISK, 2, confidence=0.9, temperature=3.0)
    assert 0.5 < hot[DISK == 1].min() < 0.9  # temperature > 1 moves p toward 0.5


def test_every_gallery_entry_loads_with_its_classes():
    index = json.loads((masks.SAMPLE_DIR / "gallery" / "index.json").read_text())
    entries = masks.load_gallery()
    assert len(entries) == len(index) >= 8
    kinds = {e["kind"] for e in entries}
    assert kinds == {"real", "synthetic"}
    for entry in entries:
        assert entry["labels"].max() < entry["num_classes"], entry["name"]
        assert entry["provenance"] and entry["description"]
    assert any(e["labels"].max() == 0 for e in entries)  # an empty mask is in the gallery
    assert any(e["num_classes"] > 2 for e in entries)


# ------------------------------------------------- cases found by an adversarial read


def test_grey_label_png_with_too_many_classes_is_refused_not_thresholded():
    labels = np.zeros((8, 8), np.uint8)
    labels[2:4, 2:4] = 3
    with pytest.raises(MaskError, match="label 3"):
        masks.load_mask(png(labels), num_classes=3)
    labels[2:4, 2:4] = 7
    with pytest.raises(MaskError, match="label 7"):
        masks.load_mask(png(labels))


def test_an_already_read_upload_is_read_again_from_the_start():
    stream = io.BytesIO(npy(DISK))
    stream.read()
    assert np.array_equal(masks.load_probability(stream), DISK.astype(np.float32))
    assert np.array_equal(masks.load_mask(stream), DISK)


def test_probability_of_a_palette_mask_is_one_on_every_class():
    prob = masks.load_probability(masks.save_mask_png(DISK * 2))
    assert np.array_equal(prob, DISK.astype(np.float32))


def test_probability_of_a_float_tiff_keeps_its_values():
    prob = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    out = io.BytesIO()
    Image.fromarray(prob, mode="F").save(out, format="TIFF")
    assert np.allclose(masks.load_probability(out.getvalue()), prob)


def test_rgb_strokes_in_class_colours_without_alpha_are_foreground():
    rgb = np.zeros((8, 8, 3), np.uint8)
    for label in range(1, 5):
        color = masks.CLASS_COLORS[label]
        rgb[label - 1, :] = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    assert masks.load_mask(png(rgb))[:4].all()
    assert [masks.load_mask(png(rgb), num_classes=5)[r, 0] for r in range(4)] == [1, 2, 3, 4]


def test_complex_and_timedelta_arrays_are_refused():
    for array in (np.zeros((4, 4), complex), np.zeros((4, 4), "m8[s]")):
        with pytest.raises(MaskError, match="real numbers"):
            masks.load_mask(npy(array))


def test_huge_unsigned_labels_are_too_many_classes_not_negative():
    with pytest.raises(MaskError, match="more classes"):
        masks.load_mask(npy(np.array([[0, 2**63 + 5]], np.uint64)))


def test_text_mode_file_is_a_mask_error(tmp_path):
    path = tmp_path / "mask.png"
    path.write_bytes(png(DISK.astype(np.uint8) * 255))
    with open(path) as text, pytest.raises(MaskError, match="binary mode"):
        masks.load_mask(text)
