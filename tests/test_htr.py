"""The handwriting recogniser's own parts: text normalisation, ground-truth lines, crops, split,
a tiny CRNN that overfits a handful of lines, the training loop (checkpoints, resume) and ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import UsageError
from pipeline.htr.data import crop_line, find_pages, line_crops, make_split, read_xml, unit_of
from pipeline.htr.text import is_unread, normalize_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FONT_CHARS = "abcdeilmnorstu"

ALTO = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Description><sourceImageInformation>
<fileName>some-other-name.jpg</fileName></sourceImageInformation></Description><Layout><Page WIDTH="{w}" HEIGHT="{h}">
<PrintSpace>{lines}</PrintSpace></Page></Layout></alto>"""
ALTO_LINE = """<TextBlock><TextLine ID="l{i}" HPOS="{x}" VPOS="{y}" WIDTH="{lw}" HEIGHT="{lh}">
<Shape><Polygon POINTS="{points}"/></Shape><String CONTENT="{text}"/></TextLine></TextBlock>"""
PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"><Page imageFilename="x.png"
imageWidth="{w}" imageHeight="{h}"><TextRegion id="r1">{lines}</TextRegion></Page></PcGts>"""
PAGE_LINE = """<TextLine id="l{i}"><Coords points="{points}"/><TextEquiv><Unicode>{text}</Unicode></TextEquiv></TextLine>"""


def shipped_model_copy(folder: Path) -> Path:
    """The shipped crnn model (ONNX and charset only: no calibration, no LM) copied into `folder`."""
    import shutil

    from pipeline.recognize.crnn import DEFAULT_MODEL

    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "crnn.onnx"
    for suffix in (".onnx", ".charset.json"):
        shutil.copy(DEFAULT_MODEL.with_suffix(suffix), model.with_suffix(suffix))
    return model


def write_gt_page(folder: Path, stem: str, texts: list[str], page_xml: bool = False, seed: int = 0) -> Path:
    """A page image with one rendered handwriting line per text and its ALTO (or PAGE) XML beside it."""
    import cv2

    from pipeline.htr.synthetic import font_split
    from pipeline.synth.fonts import render_text

    rng = np.random.default_rng(seed)
    font = font_split()["train"][0]
    rendered = [render_text(text, font, 40, rng) for text in texts]
    width = max(image.shape[1] for image in rendered) + 80
    height = sum(image.shape[0] + 30 for image in rendered) + 60
    page = np.full((height, width), 235, np.uint8)
    lines, y = [], 40
    for i, (text, image) in enumerate(zip(texts, rendered)):
        h, w = image.shape
        page[y:y + h, 40:40 + w] = np.minimum(page[y:y + h, 40:40 + w], image)
        x0, y0, x1, y1 = 36, y - 4, 44 + w, y + h + 4
        if page_xml:
            lines.append(PAGE_LINE.format(i=i, points=f"{x0},{y0} {x1},{y0} {x1},{y1} {x0},{y1}", text=text))
        else:
            lines.append(ALTO_LINE.format(i=i, x=x0, y=y0, lw=x1 - x0, lh=y1 - y0, text=text,
                                          points=f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1}"))
        y += h + 30
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{stem}.png"), page)
    template = PAGE if page_xml else ALTO
    (folder / f"{stem}.xml").write_text(template.format(w=width, h=height, lines="".join(lines)), encoding="utf-8")
    return folder / f"{stem}.png"


def test_normalize_text_conventions() -> None:
    assert normalize_text("co\u0301pia  de  l’ŀ") == "cópia de l'l·l"
    assert normalize_text("dud^t 1^er") == "dudt 1er"
    assert is_unread("Canal de XXX") and not is_unread("Canal de Suez")


def test_alto_and_page_lines_pair_by_stem(tmp_path: Path) -> None:
    write_gt_page(tmp_path, "alto-page", ["Maria Puig", "jornaler"])
    write_gt_page(tmp_path, "page-page", ["fill", "Barcelona"], page_xml=True)
    (tmp_path / "orphan.xml").write_text("<alto/>")
    pages = {page.stem: page for page in find_pages(tmp_path)}
    assert set(pages) == {"alto-page", "page-page"}  # paired by stem, not by the XML's fileName
    assert [line.text for line in pages["alto-page"].lines] == ["Maria Puig", "jornaler"]
    assert [line.text for line in read_xml(pages["page-page"].xml)[0]] == ["fill", "Barcelona"]
    assert len(pages["page-page"].lines[0].polygon) == 4


def test_pages_pair_whatever_the_case_of_their_suffixes(tmp_path: Path) -> None:
    image = write_gt_page(tmp_path, "SCAN_0001", ["Maria Puig"])
    image.rename(image.with_suffix(".PNG"))
    image.with_suffix(".xml").rename(image.with_suffix(".XML"))
    (page,) = find_pages(tmp_path)
    assert (page.image.name, page.xml.name) == ("SCAN_0001.PNG", "SCAN_0001.XML")
    assert [line.text for line, _ in line_crops(page)] == ["Maria Puig"]


def test_pages_pair_across_the_folders_exports_lay_them_out_in(tmp_path: Path) -> None:
    """eScriptorium: images beside `alto/` and `page/` (and a METS index); others: `jpg/` beside `alto/`."""
    import shutil

    escriptorium = tmp_path / "escriptorium"
    write_gt_page(escriptorium / "alto", "PH 1858-2 a", ["Maria Puig"])
    shutil.move(escriptorium / "alto" / "PH 1858-2 a.png", escriptorium / "PH 1858-2 a.png")
    (escriptorium / "page").mkdir()
    shutil.copy(escriptorium / "alto" / "PH 1858-2 a.xml", escriptorium / "page" / "PH 1858-2 a.xml")
    (escriptorium / "alto" / "METS.xml").write_text('<?xml version="1.0"?>\n<mets xmlns="http://www.loc.gov/METS/"/>')
    siblings = tmp_path / "siblings"
    write_gt_page(siblings / "alto", "imp_0051_1", ["jornaler"])
    (siblings / "jpg").mkdir()
    shutil.move(siblings / "alto" / "imp_0051_1.png", siblings / "jpg" / "imp_0051_1.png")
    (page,) = find_pages(escriptorium)  # one page, read once, from alto/; the METS index passed over
    assert (page.image.parent, page.xml.parent.name) == (escriptorium, "alto")
    assert [line.text for line, _ in line_crops(page)] == ["Maria Puig"]
    (page,) = find_pages(siblings)
    assert (page.image.parent.name, [line.text for line in page.lines]) == ("jpg", ["jornaler"])


def test_external_training_corpora_join_the_cache_and_test_archives_never_do(tmp_path: Path) -> None:
    from pipeline.htr.cache import corpus_folders
    from pipeline.htr.sources import CORPORA, clone_dir

    external = tmp_path / "external"
    for corpus in CORPORA:
        (clone_dir(external, corpus) / corpus.subdir).mkdir(parents=True, exist_ok=True)
    folders = corpus_folders(tmp_path / "no-shared-data", external)
    assert set(folders) == {corpus.name for corpus in CORPORA if corpus.role == "train"}
    assert {corpus.role for corpus in CORPORA} == {"train", "test"}
    assert unit_of("imp_wikitexte_0051_2", "copiste-d-un-jour") == unit_of("imp_wikitexte_0051_1", "copiste-d-un-jour")


def test_make_data_checks_out_only_the_corpora_folders_of_a_repository(tmp_path: Path, monkeypatch) -> None:
    """A collection of a large repository is held out (or trained on) alone: its siblings stay unchecked-out."""
    import subprocess

    from pipeline.htr import sources

    origin = tmp_path / "origin" / "archive"
    for folder in ("data/register", "data/other"):
        (origin / folder).mkdir(parents=True)
        (origin / folder / "page.xml").write_text("<alto/>")
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(origin)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "pages"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    corpus = sources.ExternalCorpus("register", "someone/archive", commit, "data/register", "CC-BY 4.0", "test", "")
    monkeypatch.setattr(sources, "CORPORA", (corpus,))
    sources.fetch(tmp_path / "external", str(tmp_path / "origin" / "{name}"))
    clone = sources.clone_dir(tmp_path / "external", corpus)
    assert (clone / "data/register/page.xml").exists() and not (clone / "data/other").exists()
    assert sources.present(tmp_path / "external", "test") == {"register": clone / "data/register"}


@pytest.mark.parametrize("page_xml", [False, True])
def test_lines_are_cut_from_a_reduced_copy_of_the_page_the_xml_describes(tmp_path: Path, page_xml: bool) -> None:
    """An export made on the full-size scan, beside a copy at half size: the crops come from the same places."""
    import cv2

    image = write_gt_page(tmp_path, "scan", ["Maria Puig", "jornaler"], page_xml=page_xml)
    (full,) = find_pages(tmp_path)
    expected = [cv2.resize(crop, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for _, crop in line_crops(full)]
    page_image = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(image), cv2.resize(page_image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    (reduced,) = find_pages(tmp_path)
    crops = [crop for _, crop in line_crops(reduced)]
    for crop, wanted in zip(crops, expected, strict=True):
        # the same place, with the 4 px padding in the reduced image's pixels
        assert abs(crop.shape[0] - wanted.shape[0]) <= 6 and abs(crop.shape[1] - wanted.shape[1]) <= 6
        top, left = (crop.shape[0] - wanted.shape[0]) // 2, (crop.shape[1] - wanted.shape[1]) // 2
        inner = crop[top:top + wanted.shape[0], left:left + wanted.shape[1]]
        assert np.abs(inner.astype(int) - wanted.astype(int)).mean() < 8


def test_an_image_of_another_shape_than_its_xml_page_or_a_broken_xml_is_refused(tmp_path: Path) -> None:
    import cv2

    image = write_gt_page(tmp_path, "scan", ["Maria Puig"])
    page_image = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(image), np.ascontiguousarray(page_image[: page_image.shape[0] // 2]))  # half the page only
    (page,) = find_pages(tmp_path)
    with pytest.raises(UsageError, match="not the same shape"):
        line_crops(page)
    xml = image.with_suffix(".xml")
    xml.write_text(xml.read_text().replace('<Page WIDTH=', '<Page W=').replace(
        "<Description>", "<Description><MeasurementUnit>mm10</MeasurementUnit>"))
    with pytest.raises(UsageError, match="mm10"):
        find_pages(tmp_path)
    xml.write_text(xml.read_text()[:200])  # cut short, as by an interrupted copy
    with pytest.raises(UsageError, match="not well-formed"):
        find_pages(tmp_path)


def test_crop_line_paints_outside_the_polygon_paper_white() -> None:
    page = np.zeros((100, 100), np.uint8)  # all "ink" (a neighbouring line's strokes)...
    page[38:62, 18:82] = 200  # ...except the line's own paper
    crop = crop_line(page, [(20, 40), (79, 40), (20, 59)], pad=2)  # a triangle: its bbox corner is outside
    assert crop.shape == (24, 64)
    assert crop[-1, -1] == 200  # outside the (dilated) polygon: painted with the paper's grey
    assert crop[0, 0] == 200 and crop[5, 5] == 200  # inside: the page's own pixels


@pytest.mark.parametrize("lean", [-0.3, 0.0, 0.3])
def test_upright_shears_the_writing_upright_whatever_its_slant(lean: float) -> None:
    from pipeline.htr.preprocess import normalize_crop, slant, upright
    from pipeline.htr.synthetic import font_split
    from pipeline.synth.fonts import render_text

    for font in font_split()["train"][:3]:
        def written(shear: float) -> np.ndarray:
            return render_text("Josep Martí i Puig", font, 40, np.random.default_rng(1), slant=shear, stroke=0)

        crop, leaning_more = normalize_crop(written(lean), 48), normalize_crop(written(lean + 0.2), 48)
        assert slant(leaning_more) > slant(crop)  # the measure follows the writing's lean
        straightened = upright(crop)
        assert abs(slant(straightened)) < 0.08, font.name
        assert straightened.shape[0] == 48 and straightened.shape[1] >= crop.shape[1]
        assert straightened[:, :3].min() > 200 and straightened[:, -3:].min() > 200  # padded with paper
        assert np.array_equal(normalize_crop(written(lean), 48, deslant=1.0), straightened)
        assert abs(slant(upright(crop, 0.5)) - slant(crop) / 2) < 0.08  # a share of the lean: half as steep


def test_a_model_that_reads_upright_is_trained_on_upright_crops() -> None:
    from pipeline.htr.model import ModelConfig
    from pipeline.htr.preprocess import upright
    from pipeline.htr.train import model_input, resize_to_height

    crop = _tiny_lines()[0][1]
    as_read = ModelConfig(height=16, width_scale=1.3, deslant=0.3)
    assert np.array_equal(model_input(crop, as_read, 400), upright(resize_to_height(crop, 16, 400, 1.3), 0.3))
    assert np.array_equal(model_input(crop, ModelConfig(height=16, width_scale=1.3), 400), resize_to_height(crop, 16, 400, 1.3))


def test_split_keeps_wills_together_and_is_deterministic() -> None:
    stems = {"poilus": [f"will_{w:03d}-{p}" for w in range(30) for p in range(3)], "reg": [f"p{i}" for i in range(40)]}
    split = make_split(stems, {"poilus": (5, 3), "reg": (6, 2)})
    assert split == make_split(stems, {"poilus": (5, 3), "reg": (6, 2)})
    assert len(split["test"]["poilus"]) == 5 and len(split["val"]["reg"]) == 2
    assert unit_of("will_007-2", "poilus") == "will_007" and unit_of("p-1", "reg") == "p-1"
    assert not set(split["test"]["poilus"]) & set(split["train"]["poilus"])


def _tiny_config():
    from pipeline.htr.model import ModelConfig

    return ModelConfig(height=16, channels=[8, 16, 16, 16], hidden=32, lstm_layers=1, dropout=0.0)


def _tiny_lines() -> tuple[list[np.ndarray], list[str]]:
    from pipeline.htr.preprocess import normalize_crop
    from pipeline.htr.synthetic import font_split
    from pipeline.synth.fonts import render_text

    texts = ["ma", "son", "toi", "rue"]
    font = font_split()["train"][0]
    rng = np.random.default_rng(3)
    return [normalize_crop(render_text(t, font, 32, rng, slant=0.0), 16) for t in texts], texts


def _tiny_training() -> tuple:
    """A tiny CRNN, its optimiser, and one batch of a handful of lines: (model, optimizer, batch, widths,
    texts, charset, index of each character's class)."""
    import torch

    from pipeline.htr.model import build_model
    from pipeline.htr.train import collate

    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    crops, texts = _tiny_lines()
    charset = sorted(set("".join(texts)))
    index = {c: i + 1 for i, c in enumerate(charset)}
    model = build_model(_tiny_config(), len(charset) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch, widths = collate(crops, 16, 400)
    return model, optimizer, batch, widths, texts, charset, index


def test_tiny_crnn_overfits_a_handful_of_lines() -> None:
    import torch
    import torch.nn.functional as F

    from pipeline.htr.model import WIDTH_STRIDE, greedy_decode
    from pipeline.htr.train import decode_texts, encode

    model, optimizer, batch, widths, texts, charset, index = _tiny_training()
    images = torch.from_numpy(batch)
    targets = torch.tensor([t for text in texts for t in encode(text, index)])
    target_lengths = torch.tensor([len(text) for text in texts])
    losses = []
    for _ in range(150):
        log_probs = model(images)
        loss = F.ctc_loss(log_probs.permute(1, 0, 2), targets, torch.from_numpy(widths // WIDTH_STRIDE), target_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    with torch.no_grad():
        decoded = decode_texts(model(images).numpy(), widths // WIDTH_STRIDE, charset)
    assert decoded == texts
    assert greedy_decode(np.log(np.array([[[0.1, 0.9], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]])))[0] == ([1, 1], [0, 3])


def test_a_bfloat16_training_step_learns_and_keeps_float32_weights() -> None:
    import torch

    from pipeline.htr.train import _train_step, encode, native_bf16

    if not native_bf16(torch.device("cpu")):
        pytest.skip("this CPU has no native bfloat16 (the recipe's bf16 then trains in float32)")
    model, optimizer, batch, widths, texts, _, index = _tiny_training()
    targets = [encode(text, index) for text in texts]
    losses = [_train_step(model, None, optimizer, torch.from_numpy(batch), widths, targets, bf16=True)
              for _ in range(150)]
    assert losses[-1] < 0.2 * losses[0]
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())


def test_width_jitter_stretches_each_training_crop_within_its_range() -> None:
    from pipeline.htr.train import prefetch

    crops = [np.full((16, 100), 128, np.uint8) for _ in range(64)]
    plain_batch, plain_widths, _ = next(prefetch(iter([(crops, ["x"] * 64)]), 16, 400))
    assert set(plain_widths) == {100} and plain_batch.shape[3] == 100
    _, widths, _ = next(prefetch(iter([(crops, ["x"] * 64)]), 16, 400, width_jitter=0.3, seed=1))
    assert widths.min() >= int(100 * np.exp(-0.3)) and widths.max() <= round(100 * np.exp(0.3))
    assert widths.min() < 90 and widths.max() > 110  # both squeezed and stretched


@pytest.fixture
def tiny_cache(tmp_path: Path) -> Path:
    from pipeline.htr.cache import pack, unpack

    crops, texts = _tiny_lines()
    cache = tmp_path / "cache"
    cache.mkdir()
    pack(crops * 2, texts * 2, cache / "synthetic_train.npz")
    pack(crops, texts, cache / "synthetic_val.npz")
    back, back_texts = unpack(cache / "synthetic_val.npz")
    assert back_texts == texts and [c.shape for c in back] == [c.shape for c in crops]
    return cache


def test_training_loop_checkpoints_resumes_and_exports_onnx(tiny_cache: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from pipeline.htr.export import export_onnx, load_checkpoint
    from pipeline.htr.train import TrainConfig, train

    config = TrainConfig(cache_dir=str(tiny_cache), out_dir=str(tmp_path / "run"), model=_tiny_config(),
                         weights={"synthetic": 1.0}, val_weights={"synthetic": 1.0}, batch_size=4,
                         time_budget_s=3.0, validate_every_s=1.0, threads=1, read_width_scale=1.25,
                         read_deslant=0.3)
    best = train(config, "cpu")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert best.exists() and history and history[-1]["synthetic"] >= 0
    first_samples = history[-1]["samples"]
    config.time_budget_s = 6.0  # a longer budget: the run resumes from last.pt and goes on
    train(config, "cpu")
    assert json.loads((tmp_path / "run" / "history.json").read_text())[-1]["samples"] > first_samples

    onnx_path = export_onnx(best, tmp_path / "model" / "tiny.onnx", version="tiny-test", quantize=False)
    meta = json.loads(onnx_path.with_suffix(".charset.json").read_text())
    assert meta["height"] == 16 and meta["version"] == "tiny-test"
    assert meta["width_scale"] == 1.25 and meta["model"]["width_scale"] == 1.0  # reads wider than it trained
    assert meta["deslant"] == 0.3 and meta["model"]["deslant"] == 0.0  # and straighter
    slim = torch.load(onnx_path.with_suffix(".pt"), weights_only=False)
    assert slim["read_width_scale"] == 1.25 and slim["read_deslant"] == 0.3  # for fine-tuning
    model, _, _, _ = load_checkpoint(best)
    images = np.random.default_rng(0).random((3, 1, 16, 92)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    (got,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": images})
    assert got.shape == expected.shape == (3, 23, len(meta["charset"]) + 1)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    quantized = export_onnx(best, tmp_path / "q" / "tiny.onnx")  # int8 throughout: close, not equal
    operators = {node.op_type for node in onnx.load(quantized).graph.node}
    assert {"QuantizeLinear", "DynamicQuantizeLSTM"} <= operators and "ConvInteger" not in operators
    (approx,) = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"]).run(None, {"images": images})
    # how far one frame's probabilities move depends on how far the time-budgeted run trained (0.005-0.16 seen);
    # on average they stay put and the best path hardly changes
    assert np.abs(np.exp(approx) - np.exp(expected)).mean() < 0.005
    assert (approx.argmax(-1) == expected.argmax(-1)).mean() > 0.9


def test_each_validation_follows_training(tiny_cache: Path, tmp_path: Path) -> None:
    from pipeline.htr.train import TrainConfig, train

    config = TrainConfig(cache_dir=str(tiny_cache), out_dir=str(tmp_path / "run"), model=_tiny_config(),
                         weights={"synthetic": 1.0}, val_weights={"synthetic": 1.0}, batch_size=4,
                         max_samples=8, validate_every_s=0.0, threads=1)
    train(config, "cpu")  # two batches, each validated; none left over for a final validation
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["samples"] for entry in history] == [4, 8]
    assert all(np.isfinite(entry["loss"]) for entry in history)


def test_a_batch_with_a_non_finite_loss_is_skipped_not_learnt(tiny_cache: Path, tmp_path: Path, monkeypatch) -> None:
    import torch

    from pipeline.htr import augment
    from pipeline.htr.train import TrainConfig, train

    real_augment, calls = augment.augment_batch, []

    def first_batch_poisoned(images, widths, generator=None):
        calls.append(len(images))
        augmented = real_augment(images, widths, generator)
        return augmented * float("nan") if len(calls) == 1 else augmented

    monkeypatch.setattr(augment, "augment_batch", first_batch_poisoned)
    config = TrainConfig(cache_dir=str(tiny_cache), out_dir=str(tmp_path / "run"), model=_tiny_config(),
                         weights={"synthetic": 1.0}, val_weights={"synthetic": 1.0}, batch_size=4,
                         max_samples=8, validate_every_s=0.0, threads=1, ema_decay=0.5)
    train(config, "cpu")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["skipped"] for entry in history] == [1, 1] and np.isfinite(history[1]["loss"])
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    for weights in (last["state_dict"], last["average"]):  # weights, BatchNorm statistics and their average
        assert all(torch.isfinite(value.float()).all() for value in weights.values())


def test_a_moving_average_of_the_weights_is_kept_and_resumed(tiny_cache: Path, tmp_path: Path) -> None:
    import torch

    from pipeline.htr.train import TrainConfig, train

    config = TrainConfig(cache_dir=str(tiny_cache), out_dir=str(tmp_path / "run"), model=_tiny_config(),
                         weights={"synthetic": 1.0}, val_weights={"synthetic": 1.0}, batch_size=4, lr=1e-2,
                         max_samples=8, validate_every_s=1e9, threads=1, ema_decay=0.5)
    best = train(config, "cpu")  # two steps, one validation at the end
    kept = torch.load(best, weights_only=False)["state_dict"]
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert int(last["average"]["n_averaged"]) == 2
    assert all(torch.equal(value, last["average"][f"module.{key}"]) for key, value in kept.items())
    assert not torch.equal(kept["head.1.weight"], last["state_dict"]["head.1.weight"])  # not the last step's weights
    config.max_samples = 12
    train(config, "cpu")  # resumed: the average goes on rather than restarting from the weights
    assert int(torch.load(tmp_path / "run" / "last.pt", weights_only=False)["average"]["n_averaged"]) == 3


@pytest.mark.skipif(not (DATA / "lectaurep").is_dir(), reason="real data not in ../shared/data")
def test_real_alto_pages_parse_with_unread_lines_flagged() -> None:
    pages = find_pages(DATA / "lectaurep" / "lectaurep-riant-4")
    assert len(pages) == 30 and all(page.image.suffix == ".jpg" for page in pages)
    lines = [line for page in pages for line in page.lines]
    assert len(lines) > 1000 and all("^" not in line.text for line in lines)


def test_synthetic_cells_use_only_fonts_that_draw_the_text() -> None:
    from pipeline.errors import UsageError
    from pipeline.htr.synthetic import font_split, synthetic_cells
    from pipeline.synth.fonts import font_draws

    fonts = font_split()["train"]
    crops, texts = synthetic_cells(60, fonts, seed=5)
    assert len(crops) == len(texts) == 60 and all(any(font_draws(f, text) for f in fonts) for text in texts)
    no_accents = [f for f in fonts if not font_draws(f, "ñóú")]  # Ecolier: a French school cursive
    assert no_accents and all(not set(text) & set("ñóúÑÓÚ") for text in synthetic_cells(60, no_accents, seed=5)[1])
    with pytest.raises(UsageError, match="fonts"):
        synthetic_cells(5, [], seed=5)


def test_a_recipe_adds_training_hands_but_never_a_held_out_one(tmp_path: Path, monkeypatch) -> None:
    import shutil

    from pipeline.errors import UsageError
    from pipeline.htr.cache import build_synthetic_cache, unpack
    from pipeline.htr.synthetic import TEST_FONTS, font_split
    from pipeline.synth import fonts

    build_synthetic_cache(tmp_path, 32, 20, 4, seed=6, extra_fonts=["Havana-Regular.otf"])  # fonts-havana
    crops, texts = unpack(tmp_path / "synthetic_train.npz")
    assert len(crops) == len(texts) == 20 and all(crop.shape[0] == 32 for crop in crops)
    with pytest.raises(UsageError, match="held out"):
        build_synthetic_cache(tmp_path, 32, 2, 2, extra_fonts=[TEST_FONTS[0]])
    with pytest.raises(UsageError, match="not installed"):
        build_synthetic_cache(tmp_path, 32, 2, 2, extra_fonts=["NoSuchHand.ttf"])
    hands = tmp_path / "fonts" / "hands"  # a folder of extra hands, named by a pattern
    hands.mkdir(parents=True)
    shutil.copy(fonts.installed_fonts(["Havana-Regular.otf"])[0], hands / "a.otf")
    monkeypatch.setattr(fonts, "FONT_DIRS", (*fonts.FONT_DIRS, tmp_path / "fonts"))
    assert fonts.installed_fonts(["hands/*.otf"]) == [hands / "a.otf"]
    held_out = {path.name: path for path in font_split()["test"]}
    shutil.copy(held_out["Kristi.ttf"], hands / "b.otf")  # a held-out hand under another name is still held out
    with pytest.raises(UsageError, match="b.otf: held out"):
        build_synthetic_cache(tmp_path, 32, 2, 2, extra_fonts=["hands/*.otf"])


def test_cells_cut_from_synthetic_pages_hold_their_texts(tmp_path: Path) -> None:
    from pipeline.htr.cache import build_page_cells_cache, unpack
    from pipeline.htr.synthetic import page_cells
    from pipeline.recognize import get_engine
    from pipeline.synth.fonts import handwriting_fonts

    font = next(font for font in handwriting_fonts() if font.name == "DancingScript-Regular.otf")
    crops, texts = page_cells(40, [font], seed=3)
    assert len(crops) == len(texts) == 40 and all(text.strip() and text == normalize_text(text) for text in texts)
    assert texts == page_cells(40, [font], seed=3)[1]  # reproducible from the seed
    read = [reading.text for reading in get_engine("crnn").recognize(crops)]
    assert np.mean([r == t for r, t in zip(read, texts)]) > 0.5  # each crop holds its text, not a neighbour's
    build_page_cells_cache(tmp_path, 32, 12, 4, seed=3)
    for which, count in (("train", 12), ("val", 4)):
        cached, cached_texts = unpack(tmp_path / f"pages_{which}.npz")
        assert len(cached) == len(cached_texts) == count and all(crop.shape[0] == 32 for crop in cached)


def test_synthetic_bar_is_reported_per_held_out_font() -> None:
    from pipeline.htr.synthetic import TEST_FONTS, evaluate_synthetic

    result = evaluate_synthetic("crnn-greedy", count=12, seed=3)
    assert result["cells"] == 12 and 0 <= result["cer"] and 0 <= result["exact"] <= 1
    assert sorted(result["per_font_cer"]) == sorted(TEST_FONTS)
    assert all(isinstance(cer, float) and cer >= 0 for cer in result["per_font_cer"].values())


def test_shipped_recipe_stages_parse_and_chain() -> None:
    """The recipe's seven stages (`make train` runs them all) each start from the previous best."""
    from pipeline.htr.train import TrainConfig

    models = Path(__file__).resolve().parents[1] / "models"
    stages = [TrainConfig.from_yaml(models / "crnn.yaml")]
    stages += [TrainConfig.from_yaml(models / f"crnn-stage{n}.yaml") for n in range(2, 8)]
    assert stages[0].init is None
    for previous, stage in zip(stages, stages[1:]):
        assert stage.init == f"{previous.out_dir}/best.pt"
        architecture = {**stage.model.to_dict(), "width_scale": previous.model.width_scale}
        assert architecture == previous.model.to_dict()  # same weights' shapes (stage 2 widens the input)
    assert stages[-1].width_jitter > 0 and 0 < stages[-1].read_deslant < 1  # read a little straighter than trained
    assert stages[-1].cache_dir != stages[0].cache_dir and stages[-1].extra_fonts  # its own fresh cells
    assert stages[-1].page_cells_train and "pages" in stages[-1].weights  # and cells cut from whole pages
    fine_tuning = TrainConfig.from_yaml(models / "crnn-finetune.yaml")  # --from-corrections: from the shipped weights
    # the new hand is most of what it reads, at a rate below training from scratch's
    assert fine_tuning.init is None and fine_tuning.lr < stages[0].lr
    assert fine_tuning.weights["corrections"] > 0.5
