"""Ingest on real files made here: every accepted format and every bad input the batch must survive."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badfiles import minimal_pdf, png_bomb
from pipeline.errors import PageError, UsageError
from pipeline.stages.ingest import find_inputs, load_page, probe

RNG = np.random.default_rng(7)


def _page(height: int = 400, width: int = 300) -> np.ndarray:
    page = np.full((height, width), 230, np.uint8)
    page[50:60, :] = 20  # a rule, so content is not uniform
    return page


def _reason(path: Path, page_index: int = 0) -> str:
    with pytest.raises(PageError) as caught:
        probe(path)
        load_page(path, page_index)
    return caught.value.reason


def test_find_inputs_expands_folders_sorted_lists_other_formats_and_leaves_out_hidden(tmp_path: Path) -> None:
    (tmp_path / "b" / ".hidden").mkdir(parents=True)
    for name in ["b/2.TIF", "b/1.jpg", "a.pdf", "c.GIF", "d.bmp", "e.webp", "notes.txt", "b/scan.heic",
                 ".secret.png", "b/.hidden/x.png"]:
        (tmp_path / name).write_bytes(b"x")
    single = tmp_path / "notes.txt"
    found = find_inputs([tmp_path, single])
    assert found.files == [tmp_path / name for name in ["a.pdf", "b/1.jpg", "b/2.TIF", "c.GIF", "d.bmp", "e.webp"]
                           ] + [single]  # a file named on its own is read whatever its extension
    assert found.unsupported == [tmp_path / "b/scan.heic", tmp_path / "notes.txt"]
    with pytest.raises(UsageError):
        find_inputs([tmp_path / "missing"])


@pytest.mark.parametrize("suffix", ["jpg", "png", "tif", "bmp", "gif", "webp"])
def test_single_page_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"page.{suffix}"
    Image.fromarray(_page()).save(path, dpi=(300, 300))
    source = probe(path)
    assert (source.kind, source.n_pages, len(source.sha256)) == ("image", 1, 16)
    info, grey = load_page(path, 0)
    assert grey.dtype == np.uint8 and grey.shape == (400, 300)
    assert (info.width, info.height, info.page_id) == (300, 400, f"{source.sha256}-p0")
    if suffix not in ("gif", "webp"):  # formats without a resolution field
        assert info.dpi == pytest.approx(300, abs=1)
    assert abs(int(grey[55, 100]) - 20) < 8 and abs(int(grey[200, 100]) - 230) < 8


def test_one_bit_bmp(tmp_path: Path) -> None:
    path = tmp_path / "bilevel.bmp"
    Image.fromarray(_page() > 128).save(path)  # mode "1": ink is False
    grey = load_page(path, 0)[1]
    assert (int(grey[55, 10]), int(grey[200, 10])) == (0, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_frames_are_pages_like_multipage_tiff(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"book.{fmt.lower()}"
    frames = [Image.fromarray(np.full((300, 250), 40 * i + 50, np.uint8)) for i in range(3)]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], lossless=True)
    assert probe(path).n_pages == 3
    for index in range(3):
        info, grey = load_page(path, index)
        assert grey.shape == (300, 250) and int(grey[5, 5]) == 40 * index + 50
        assert info.page_id.endswith(f"-p{index}")


def test_multipage_tiff(tmp_path: Path) -> None:
    path = tmp_path / "book.tiff"
    frames = [Image.fromarray(np.full((300 + 10 * i, 250), 40 * i + 50, np.uint8)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_deflate")
    assert probe(path).n_pages == 3
    for index in range(3):
        info, grey = load_page(path, index)
        assert grey.shape == (300 + 10 * index, 250) and int(grey[5, 5]) == 40 * index + 50
        assert info.page_id.endswith(f"-p{index}")


def test_multipage_pdf_rasterised_at_200_dpi(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    pages = [Image.fromarray(_page()), Image.fromarray(_page(500, 300))]
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=100.0)
    source = probe(path)
    assert (source.kind, source.n_pages) == ("pdf", 2)
    info, grey = load_page(path, 1)
    # 300x500 px at 100 dpi is 3x5 inches: 600x1000 px at 200 dpi.
    assert info.dpi == 200 and abs(grey.shape[0] - 1000) <= 2 and abs(grey.shape[1] - 600) <= 2
    assert grey[111, 300] < 60 and grey[400, 300] > 200


def test_format_detected_by_content_not_extension(tmp_path: Path) -> None:
    png_named_jpg = tmp_path / "really-a-png.jpg"
    Image.fromarray(_page()).save(png_named_jpg, format="PNG")
    assert load_page(png_named_jpg, 0)[1].shape == (400, 300)
    text_named_png = tmp_path / "readme.png"
    text_named_png.write_text("just some words\n")
    assert _reason(text_named_png) == "not-an-image"
    text_starting_like_a_bmp = tmp_path / "list.bmp"
    text_starting_like_a_bmp.write_text("BMW, BMX and other words\n")
    assert _reason(text_starting_like_a_bmp) == "not-an-image"


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.touch()
    assert _reason(path) == "empty-file"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "GIF", "BMP"])
@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_images(tmp_path: Path, fmt: str, keep: float) -> None:
    buffer = io.BytesIO()
    Image.fromarray((RNG.random((400, 300)) * 255).astype(np.uint8)).save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: max(12, int(len(data) * keep))])
    assert _reason(path) == "truncated"


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    huge = tmp_path / "bomb.png"
    huge.write_bytes(png_bomb(100_000, 100_000))
    assert _reason(huge) == "decompression-bomb"
    over_our_limit = tmp_path / "big.png"  # 132 Mpx: under Pillow's own limit, over ours
    over_our_limit.write_bytes(png_bomb(12_000, 11_000))
    assert _reason(over_our_limit) == "decompression-bomb"
    with pytest.raises(PageError) as caught:
        load_page(over_our_limit, 0, max_pixels=1_000_000)
    assert caught.value.reason == "decompression-bomb"


def test_encrypted_pdf(tmp_path: Path) -> None:
    key = "ab" * 32
    path = tmp_path / "locked.pdf"
    path.write_bytes(minimal_pdf(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                           "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
                           f"<< /Filter /Standard /V 1 /R 2 /O <{key}> /U <{key}> /P -4 >>"],
                          f"/Encrypt 4 0 R /ID [<{key[:32]}><{key[:32]}>] "))
    assert _reason(path) == "pdf-encrypted"


def test_pdf_without_pages(tmp_path: Path) -> None:
    path = tmp_path / "blank.pdf"
    path.write_bytes(minimal_pdf(["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [] /Count 0 >>"]))
    assert _reason(path) == "pdf-no-pages"


def test_cmyk_converted_to_grey(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.tif"
    cmyk = np.zeros((300, 300, 4), np.uint8)
    cmyk[:100, :, 3] = 255  # full black ink in the top third, bare paper below
    Image.fromarray(cmyk, mode="CMYK").save(path)
    grey = load_page(path, 0)[1]
    assert grey[50, 50] < 10 and grey[200, 50] > 245


def test_sixteen_bit_scaled_to_eight(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    deep = np.full((300, 300), 65535, np.uint16)
    deep[:100] = 32896  # mid grey in 16 bits = 128 in 8 bits
    deep[100:150] = 0
    Image.fromarray(deep).save(path)
    grey = load_page(path, 0)[1]
    assert (int(grey[50, 0]), int(grey[120, 0]), int(grey[250, 0])) == (128, 0, 255)


def test_palette_and_alpha(tmp_path: Path) -> None:
    palette = Image.fromarray(_page()).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    palette_path = tmp_path / "palette.png"
    palette.save(palette_path)
    grey = load_page(palette_path, 0)[1]
    assert grey[55, 10] < 60 and grey[200, 10] > 200
    rgba = np.zeros((300, 300, 4), np.uint8)  # black everywhere, transparent in the lower half
    rgba[:150, :, 3] = 255
    alpha_path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(alpha_path)
    grey = load_page(alpha_path, 0)[1]
    assert grey[50, 50] == 0 and grey[250, 50] == 255


def test_exif_orientation_applied(tmp_path: Path) -> None:
    pixels = np.full((400, 300), 255, np.uint8)
    pixels[:50, :50] = 0  # mark the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    info, grey = load_page(path, 0)
    assert (info.width, info.height) == (400, 300)
    assert grey[10, 390] < 40 and grey[10, 10] > 200  # the mark is now top-right


def test_tiny_image(tmp_path: Path) -> None:
    path = tmp_path / "thumb.png"
    Image.fromarray(np.full((120, 90), 200, np.uint8)).save(path)
    assert _reason(path) == "too-small"
