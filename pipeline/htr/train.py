"""Train the CRNN-CTC recogniser from the packed cache; resumable, time- or sample-budgeted, early stopping.

The run reads `<source>_{train,val}.npz` from the cache (see `pipeline.htr.cache`), mixes the sources
by the config's weights, augments on the device, and validates every `validate_every_s` seconds with
greedy decoding. The checkpoint with the best validation score (a weighted mean of per-source CER,
poilus' unseen hands weighted most) is kept as `best.pt` (with `ema_decay`, the moving average of the
weights is what is validated and kept); `last.pt` lets an interrupted run resume.
Training stops at the time or sample budget, or after `patience` validations without improvement.
Only torch, numpy and yaml are needed, so the same module runs on a bare GPU machine.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.htr.cache import unpack
from pipeline.htr.model import WIDTH_STRIDE, ModelConfig, build_model, greedy_decode

# Characters the census registers use beyond what the real training data shows (Catalan/Spanish).
BASE_CHARSET = (" !\"#%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                "ªº°·ÀÁÇÈÉÍÏÑÒÓÚÜàáâçèéêëíîïñòóôöùúûüœ〃")


@dataclass
class TrainConfig:
    cache_dir: str = "data-cache/htr"
    data_dir: str = "../shared/data"
    external_dir: str = "data-external"  # the external training corpora (`make data`, pipeline.htr.sources)
    out_dir: str = "runs/train-crnn"
    model: ModelConfig = field(default_factory=ModelConfig)
    weights: dict[str, float] = field(default_factory=lambda: {
        "lectaurep-dufour-1": 0.3, "lectaurep-riant-4": 0.1, "poilus": 0.3, "synthetic": 0.3})
    val_weights: dict[str, float] = field(default_factory=lambda: {
        "lectaurep-dufour-1": 0.2, "lectaurep-riant-4": 0.2, "poilus": 0.4, "synthetic": 0.2})
    batch_size: int = 48
    max_width: int = 1600  # longer lines are squeezed (rare: a handful of poilus lines)
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.03
    time_budget_s: float = 7000.0
    max_samples: int = 10_000_000
    validate_every_s: float = 60.0
    patience: int = 8
    synthetic_train: int = 25000
    synthetic_val: int = 1000
    synthetic_seed: int = 1  # a later stage with its own cache_dir can render fresh cells
    extra_fonts: list[str] = field(default_factory=list)  # font files added to the training hands (cache build)
    # written cells cut from synthetic register pages (source `pages`: `pipeline.htr.synthetic.page_cells`)
    page_cells_train: int = 0
    page_cells_val: int = 0
    seed: int = 0
    threads: int = 2
    init: str | None = None  # start from this checkpoint's weights (a second, fine-tuning stage)
    width_jitter: float = 0.0  # each training crop's width times a random factor in [e^-j, e^j]
    # the input stretch the exported model reads at (default: model.width_scale, as trained); a model trained
    # with width jitter can read best a little wider than its training centre (chosen on validation lines)
    read_width_scale: float | None = None
    # the share of each crop's lean the exported model straightens (default: model.deslant, as trained)
    read_deslant: float | None = None
    cache_height: int = 48
    # > 0: validate and keep an exponential moving average of the weights (decay per step) rather than the
    # last step's weights, which a small batch on the CPU leaves noisy
    ema_decay: float = 0.0
    # the training forward pass in bfloat16 where the device computes it natively (CPUs with AMX or
    # AVX512-BF16, GPUs that have it; elsewhere float32 as before): 1.6x the batches a second on 2 cores
    bf16: bool = False

    @classmethod
    def from_yaml(cls, path: Path, **overrides: object) -> "TrainConfig":
        """The recipe at `path`; UsageError when it is missing, not YAML or has keys no recipe has."""
        import yaml

        from pipeline.errors import UsageError

        if not path.is_file():
            raise UsageError(f"training recipe not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
            raw.update({key: value for key, value in overrides.items() if value is not None})
            model = ModelConfig(**raw.pop("model", {}))
            return cls(model=model, **raw)
        except (yaml.YAMLError, AttributeError, TypeError) as error:  # bad syntax, not a mapping, unknown keys
            raise UsageError(f"invalid training recipe {path}: {error}") from error


@dataclass
class Source:
    crops: list[np.ndarray]
    texts: list[str]


def resize_to_height(crop: np.ndarray, height: int, max_width: int, width_scale: float = 1.0) -> np.ndarray:
    import cv2

    width = min(max(int(round(crop.shape[1] * height * width_scale / crop.shape[0])), 8), max_width)
    return crop if crop.shape == (height, width) else cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)


def model_input(crop: np.ndarray, model: ModelConfig, max_width: int) -> np.ndarray:
    """A normalised crop (any height) as the model reads it: its input height and width stretch, and
    straightened by the model's `deslant` share (as `normalize_crop` does at inference)."""
    from pipeline.htr.preprocess import upright

    return upright(resize_to_height(crop, model.height, max_width, model.width_scale), model.deslant)


def load_sources(cache_dir: Path, split: str, names: list[str], model: ModelConfig, max_width: int) -> dict[str, Source]:
    """The cache's sources for `split`, made once into the model's input (`model_input`)."""
    sources = {}
    for name in names:
        path = cache_dir / f"{name}_{split}.npz"
        if path.exists():
            crops, texts = unpack(path)
            sources[name] = Source([model_input(crop, model, max_width) for crop in crops], texts)
    return sources


def make_charset(sources: dict[str, Source]) -> list[str]:
    seen = {char for source in sources.values() for text in source.texts for char in text}
    return sorted(seen | set(BASE_CHARSET))


def encode(text: str, index: dict[str, int]) -> list[int]:
    return [index[char] for char in text if char in index]


def collate(crops: list[np.ndarray], height: int, max_width: int,
            width_factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ink-high float batch `N x 1 x height x W` (W a multiple of the width stride) and each width,
    each crop's width first multiplied by its factor in `width_factors` when given."""
    factors = np.ones(len(crops)) if width_factors is None else width_factors
    resized = [resize_to_height(crop, height, max_width, factor) for crop, factor in zip(crops, factors)]
    widths = np.array([image.shape[1] for image in resized], np.int64)
    total = int(math.ceil(widths.max() / WIDTH_STRIDE) * WIDTH_STRIDE)
    batch = np.zeros((len(resized), 1, height, total), np.float32)
    for i, image in enumerate(resized):
        batch[i, 0, :, : image.shape[1]] = 1.0 - image.astype(np.float32) / 255.0
    return batch, widths


class BatchSampler:
    """Mixed batches: each sample's source drawn by weight, then a random item of that source."""

    def __init__(self, sources: dict[str, Source], weights: dict[str, float], seed: int) -> None:
        self.names = [name for name in sources if weights.get(name, 0) > 0]
        total = sum(weights[name] for name in self.names)
        self.probs = np.array([weights[name] / total for name in self.names])
        self.sources = sources
        self.rng = np.random.default_rng(seed)

    def sample(self, size: int) -> tuple[list[np.ndarray], list[str]]:
        picks = self.rng.choice(len(self.names), size=size, p=self.probs)
        crops, texts = [], []
        for pick in picks:
            source = self.sources[self.names[pick]]
            item = int(self.rng.integers(len(source.texts)))
            crops.append(source.crops[item])
            texts.append(source.texts[item])
        return crops, texts

    def batches(self, size: int, pool: int = 8):
        """Endless batches of similar widths (less padding): draw `pool` batches' worth, sort, split."""
        while True:
            crops, texts = self.sample(size * pool)
            order = np.argsort([crop.shape[1] for crop in crops])
            chunks = [order[i:i + size] for i in range(0, len(order), size)]
            for chunk in self.rng.permutation(len(chunks)):
                yield [crops[i] for i in chunks[chunk]], [texts[i] for i in chunks[chunk]]


def prefetch(batches, height: int, max_width: int, width_jitter: float = 0.0, seed: int = 0, depth: int = 6):
    """Collate batches in a background thread so the device never waits for numpy work.

    `width_jitter` stretches or squeezes each crop's width at random: hands differ in how wide they
    write a letter (a narrow hand's letters get too few CTC frames), which the augmentation's
    aspect-keeping scale does not vary."""
    import queue
    import threading

    ready: queue.Queue = queue.Queue(maxsize=depth)
    rng = np.random.default_rng(seed)

    def produce() -> None:
        for crops, texts in batches:
            factors = np.exp(rng.uniform(-width_jitter, width_jitter, len(crops))) if width_jitter else None
            ready.put((*collate(crops, height, max_width, factors), texts))

    threading.Thread(target=produce, daemon=True).start()
    while True:
        yield ready.get()


def character_error_rate(predictions: list[str], references: list[str]) -> float:
    from rapidfuzz.distance import Levenshtein

    errors = sum(Levenshtein.distance(p, r) for p, r in zip(predictions, references))
    return errors / max(1, sum(len(r) for r in references))


def decode_texts(log_probs: np.ndarray, lengths: np.ndarray, charset: list[str]) -> list[str]:
    return ["".join(charset[label - 1] for label in labels) for labels, _ in greedy_decode(log_probs, lengths)]


def validate(model, sources: dict[str, Source], config: TrainConfig, charset: list[str], device) -> dict[str, float]:
    import torch

    model.eval()
    scores = {}
    with torch.no_grad():
        for name, source in sources.items():
            order = np.argsort([crop.shape[1] for crop in source.crops])
            predictions, references = [], []
            for start in range(0, len(order), 64):
                items = order[start:start + 64]
                batch, widths = collate([source.crops[i] for i in items], config.model.height, config.max_width)
                log_probs = model(torch.from_numpy(batch).to(device)).float().cpu().numpy()
                predictions += decode_texts(log_probs, widths // WIDTH_STRIDE, charset)
                references += [source.texts[i] for i in items]
            scores[name] = character_error_rate(predictions, references)
    model.train()
    return scores


def score_of(cers: dict[str, float], weights: dict[str, float]) -> float:
    used = {name: weight for name, weight in weights.items() if name in cers}
    return sum(cers[name] * weight for name, weight in used.items()) / max(1e-9, sum(used.values()))


def learning_rate(config: TrainConfig, progress: float) -> float:
    """Linear warm-up then cosine decay over the run's progress (fraction of its budget)."""
    if progress < config.warmup_fraction:
        return config.lr * progress / config.warmup_fraction
    remaining = (progress - config.warmup_fraction) / (1 - config.warmup_fraction)
    return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, remaining))))


def pick_device(name: str):
    import torch

    from pipeline.errors import UsageError

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"--device {name!r}: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name!r}: no CUDA GPU is available here")
    return device


def save_checkpoint(path: Path, model, optimizer, config: TrainConfig, charset: list[str], state: dict,
                    average=None) -> None:
    import torch

    payload = {"model_config": config.model.to_dict(), "read_width_scale": config.read_width_scale,
               "read_deslant": config.read_deslant,
               "charset": charset, "state_dict": model.state_dict(),
               "optimizer": optimizer.state_dict() if optimizer is not None else None, "state": state,
               "average": average.state_dict() if average is not None else None}
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    temporary.replace(path)  # atomic: a killed run never leaves a half-written checkpoint


def with_checkpoint_input(config: TrainConfig, path: Path) -> TrainConfig:
    """`config` with the architecture, input geometry and reading width of the checkpoint at `path`."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=False)
    return replace(config, model=ModelConfig(**payload["model_config"]), read_width_scale=payload.get("read_width_scale"),
                   read_deslant=payload.get("read_deslant"))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(config: TrainConfig, device_name: str = "auto", extra: dict[str, Source] | None = None,
          init_checkpoint: Path | None = None, extra_val: dict[str, Source] | None = None) -> Path:
    """Run training as configured; returns the path of the best checkpoint (`<out_dir>/best.pt`). `extra`
    and `extra_val` add sources to the cache's (training weight 0.3 unless `weights` names them; a
    validation source counts in the score as `val_weights` says)."""
    import torch

    torch.manual_seed(config.seed)
    device = pick_device(device_name)
    if device.type == "cpu":
        torch.set_num_threads(config.threads)
    else:  # fp32 weights with TF32 matmuls: fast enough for this small model, no mixed-precision LSTM/CTC risks
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(config.weights)
    train_sources = load_sources(Path(config.cache_dir), "train", names, config.model, config.max_width) | (extra or {})
    val_sources = load_sources(Path(config.cache_dir), "val", names, config.model, config.max_width) | (extra_val or {})
    if not train_sources:
        from pipeline.errors import UsageError

        raise UsageError(f"no training data in {config.cache_dir}")
    weights = dict(config.weights) | {name: config.weights.get(name, 0.3) for name in (extra or {})}

    last = out_dir / "last.pt"
    resume = torch.load(last, map_location="cpu", weights_only=False) if last.exists() else None
    start = torch.load(init_checkpoint, map_location="cpu", weights_only=False) if init_checkpoint and not resume else None
    charset = (resume or start or {}).get("charset") or make_charset(train_sources)
    index = {char: i + 1 for i, char in enumerate(charset)}
    model = build_model(config.model, len(charset) + 1).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    state = {"samples": 0, "elapsed": 0.0, "best": float("inf"), "bad": 0, "history": []}
    if resume:
        model.load_state_dict(resume["state_dict"])
        optimizer.load_state_dict(resume["optimizer"])
        state = resume["state"]
        log(f"resumed from {last} at {state['samples']} samples")
    elif start:
        model.load_state_dict(start["state_dict"])
    average = moving_average(model, config.ema_decay)
    if average is not None and resume and resume.get("average"):
        average.load_state_dict(resume["average"])
    (out_dir / "config.json").write_text(json.dumps({"model": config.model.to_dict(), "charset": charset}, ensure_ascii=False))
    _loop(model, average, optimizer, config, charset, index, train_sources, val_sources, weights, state, device, out_dir)
    return out_dir / "best.pt"


def moving_average(model, decay: float):
    """An exponential moving average of `model`'s weights and BatchNorm statistics, or None when `decay` is 0."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _loop(model, average, optimizer, config, charset, index, train_sources, val_sources, weights, state, device,
          out_dir) -> None:
    import torch

    from pipeline.htr.augment import augment_batch

    seed = config.seed + state["samples"]
    # the jitter's own stream: drawn from the sampler's seed, its factors would replay the sampler's draws
    batches = prefetch(BatchSampler(train_sources, weights, seed).batches(config.batch_size),
                       config.model.height, config.max_width, config.width_jitter, seed + 1)
    bf16 = config.bf16 and native_bf16(device)
    if bf16:
        log("training in bfloat16 (the forward pass; the loss, the weights and validation in float32)")
    began = time.monotonic() - state["elapsed"]
    last_validation = time.monotonic()
    losses: list[float] = []
    model.train()
    while True:
        elapsed = time.monotonic() - began
        progress = max(elapsed / config.time_budget_s, state["samples"] / config.max_samples)
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, progress)
        batch, widths, texts = next(batches)
        images = augment_batch(torch.from_numpy(batch).to(device, non_blocking=True), torch.from_numpy(widths).to(device))
        loss = _train_step(model, average, optimizer, images, widths, [encode(text, index) for text in texts], bf16)
        if loss is None:
            state["skipped"] = state.get("skipped", 0) + 1
            log(f"skipped a batch with a non-finite loss or gradient ({state['skipped']} so far): "
                f"widths {widths.tolist()}, texts {texts}")
        else:
            losses.append(loss)
        state["samples"] += len(texts)
        if time.monotonic() - last_validation >= config.validate_every_s:
            last_validation = time.monotonic()
            state["elapsed"] = time.monotonic() - began
            stop = _validate_and_keep(model, average, optimizer, config, charset, val_sources, state, losses, device, out_dir)
            losses = []
            if stop:
                return
    if losses:  # what was trained since the last validation
        state["elapsed"] = time.monotonic() - began
        _validate_and_keep(model, average, optimizer, config, charset, val_sources, state, losses, device, out_dir)


def native_bf16(device) -> bool:
    """Whether `device` computes bfloat16 natively (else autocasting to it is slower than float32)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _train_step(model, average, optimizer, images, widths: np.ndarray, targets: list[list[int]],
                bf16: bool = False) -> float | None:
    """One CTC optimisation step on a batch; its loss, or None when the loss or gradient is not finite and
    the step was skipped: one step on a NaN gradient would turn every weight, and the average, into NaN."""
    import torch
    import torch.nn.functional as F

    device = images.device
    statistics = [buffer.clone() for buffer in model.buffers()]  # BatchNorm's, updated by the forward pass
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        log_probs = model(images).float()
    frames = torch.from_numpy(widths // WIDTH_STRIDE).to(device)
    flat = torch.tensor([t for ts in targets for t in ts], dtype=torch.long, device=device)
    loss = F.ctc_loss(log_probs.permute(1, 0, 2), flat, frames,
                      torch.tensor([len(t) for t in targets], dtype=torch.long, device=device), zero_infinity=True)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if not torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)):
        for buffer, kept in zip(model.buffers(), statistics):
            buffer.copy_(kept)
        return None
    optimizer.step()
    if average is not None:
        average.update_parameters(model)
    return float(loss.detach())


def _validate_and_keep(model, average, optimizer, config, charset, val_sources, state, losses, device, out_dir) -> bool:
    """Validate (the moving average when there is one), keep the best checkpoint, save `last.pt`; True when
    early stopping says stop."""
    kept = model if average is None else average.module
    cers = validate(kept, val_sources, config, charset, device)
    score = score_of(cers, config.val_weights)
    entry = {"samples": state["samples"], "elapsed": round(state["elapsed"], 1),
             "loss": round(float(np.mean(losses)) if losses else float("nan"), 4),
             "score": round(score, 4), "skipped": state.get("skipped", 0), **{k: round(v, 4) for k, v in cers.items()}}
    state["history"].append(entry)
    log(json.dumps(entry))
    if score < state["best"]:
        state["best"], state["bad"] = score, 0
        save_checkpoint(out_dir / "best.pt", kept, None, config, charset, state)
    else:
        state["bad"] += 1
    save_checkpoint(out_dir / "last.pt", model, optimizer, config, charset, state, average)
    (out_dir / "history.json").write_text(json.dumps(state["history"], indent=1))
    return state["bad"] >= config.patience


def main(argv: list[str] | None = None) -> None:
    """`python -m pipeline.htr.train --config C [--cache-dir D] [--out-dir O] [--time-budget S] [--device D]`."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--cache-dir")
    parser.add_argument("--out-dir")
    parser.add_argument("--time-budget", type=float, dest="time_budget_s")
    parser.add_argument("--max-samples", type=int, dest="max_samples")
    parser.add_argument("--validate-every", type=float, dest="validate_every_s")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--init", type=Path, help="start from this checkpoint's weights (fine-tuning)")
    args = parser.parse_args(argv)
    config = TrainConfig.from_yaml(args.config, cache_dir=args.cache_dir, out_dir=args.out_dir,
                                   time_budget_s=args.time_budget_s, max_samples=args.max_samples,
                                   validate_every_s=args.validate_every_s)
    print(train(config, args.device, init_checkpoint=args.init or (Path(config.init) if config.init else None)))


if __name__ == "__main__":
    main()


def run_training(config_path: Path | None = None, from_corrections: Path | None = None, device: str = "auto",
                 export_to: Path | None = None, tag: str | None = None) -> Path:
    """`census train`: build the data cache if missing, train, export ONNX (to `export_to` if given).

    With `from_corrections`, the run's reviewer-corrected cells join the training mix as a source of
    their own (a tenth of them, whole pages, validating instead) and training starts from the shipped model's
    weights (fine-tuning, by default with the `crnn-finetune.yaml` recipe), exported with the shipped
    model's language model and calibration (`tag` joins the fine-tuned model's version); without a recipe,
    stage 1 of the shipped model's."""
    from pipeline.htr.corrections import require_store
    from pipeline.htr.export import export_onnx
    from pipeline.recognize.crnn import MODELS_DIR

    default_recipe = "crnn-finetune.yaml" if from_corrections is not None else "crnn.yaml"
    config = TrainConfig.from_yaml(config_path or MODELS_DIR / default_recipe)
    pick_device(device)  # a bad device or run fails here, not after the data cache is built
    if from_corrections is not None:
        require_store(from_corrections)
    ensure_cache(config)
    init = Path(config.init) if config.init else None
    if from_corrections is None:
        return export_onnx(train(config, device, init_checkpoint=init), export_to or Path(config.out_dir) / "crnn.onnx")
    init = init or MODELS_DIR / "crnn.pt"
    config = with_checkpoint_input(config, init)  # fine-tune the model as it was trained and reads
    extra, extra_val = corrections_sources(from_corrections, config)
    # one folder per run and set of corrections: an interrupted fine-tuning resumes, a later one (another
    # run, or more cells reviewed since) starts afresh instead of finding the last one finished
    cells = len(extra["corrections"].texts) + sum(len(source.texts) for source in extra_val.values())
    config = replace(config, out_dir=str(Path(config.out_dir) / f"{Path(from_corrections).resolve().name}-{cells}-cells"))
    best = train(config, device, extra=extra, init_checkpoint=init, extra_val=extra_val)
    return export_fine_tuned(best, export_to or Path(config.out_dir) / "crnn.onnx", init, tag)


def ensure_cache(config: TrainConfig) -> None:
    """Build the recipe's data cache when it is missing (and its synthetic page cells when it names them)."""
    from pipeline.htr.cache import build_page_cells_cache, build_real_cache, build_synthetic_cache

    cache = Path(config.cache_dir)
    if not (cache / "split.json").exists():
        log(f"building the data cache in {cache} from {config.data_dir}")
        if not Path(config.data_dir).is_dir():  # a project cloned alone: the real lines are not there
            log(f"{config.data_dir} not found: no real handwritten lines, the cache holds synthetic cells only "
                "(fine-tuning on them and the corrections alone may forget the hands the model was trained on)")
        build_real_cache(Path(config.data_dir), cache, config.cache_height, external_dir=Path(config.external_dir))
        build_synthetic_cache(cache, config.cache_height, config.synthetic_train, config.synthetic_val,
                              config.synthetic_seed, config.extra_fonts)
    if config.page_cells_train and not (cache / "pages_train.npz").exists():
        log(f"cutting {config.page_cells_train} cells from synthetic register pages into {cache}")
        build_page_cells_cache(cache, config.cache_height, config.page_cells_train, config.page_cells_val,
                               config.synthetic_seed)


def write_recipe(config: Path | None, out_dir: Path, **overrides: object) -> Path:
    """The fine-tuning recipe (default `crnn-finetune.yaml`) training into `out_dir` (a recipe's own out_dir
    would resume an earlier run), with the `overrides` that are not None, written beside `out_dir`; returns
    its path."""
    import yaml

    from pipeline.recognize.crnn import MODELS_DIR

    settings = yaml.safe_load((config or MODELS_DIR / "crnn-finetune.yaml").read_text())
    settings |= {"out_dir": str(out_dir)} | {key: value for key, value in overrides.items() if value is not None}
    path = out_dir.with_suffix(".yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings))
    return path


def corrections_sources(run_dir: Path, config: TrainConfig) -> tuple[dict[str, Source], dict[str, Source]]:
    """The run's corrected cells as a training source, less the pages that validate the fine-tuning (the
    recipe's `val_weights` give them their weight in the score that picks the kept weights)."""
    from pipeline.htr.corrections import corrected_cells

    crops, texts, pages = corrected_cells(run_dir, config.model.height)
    if not texts:
        from pipeline.errors import UsageError

        raise UsageError(f"no corrected cells in {run_dir}: nothing to learn (review some with `census review`, "
                         "then `census review pull`)")
    return reviewed_sources(crops, texts, pages, config, f"corrected cells from {run_dir}")


def reviewed_sources(crops: list[np.ndarray], texts: list[str], pages: list[str], config: TrainConfig,
                     what: str) -> tuple[dict[str, Source], dict[str, Source]]:
    """Normalised crops with their true texts as the `corrections` source, less the whole pages that validate
    the fine-tuning (`validation_pages`)."""
    from pipeline.htr.corrections import validation_pages

    held = validation_pages(pages)
    resized = [model_input(crop, config.model, config.max_width) for crop in crops]

    def source(validation: bool) -> Source:
        chosen = [i for i, page in enumerate(pages) if (page in held) == validation]
        return Source([resized[i] for i in chosen], [texts[i] for i in chosen])

    training, validation = source(False), source(True)
    log(f"{len(texts)} {what}: {len(training.texts)} to train on, "
        f"{len(validation.texts)} of {len(held)} page(s) to validate on")
    return {"corrections": training}, ({"corrections": validation} if validation.texts else {})


def export_fine_tuned(best: Path, onnx_path: Path, init: Path, tag: str | None = None) -> Path:
    """Export a fine-tuned model under its own version (the base model's, `-ft`, the date and `tag`: every
    value it reads says so) with the base model's language model and calibration beside it, so that
    `--engine crnn:ONNX` decodes and accepts as the base model does (`census calibrate --model ONNX` refits
    the calibration on ground truth)."""
    import shutil
    from datetime import date

    from pipeline.htr.export import export_onnx

    base_meta = init.with_suffix(".charset.json")
    base = json.loads(base_meta.read_text(encoding="utf-8"))["version"] if base_meta.exists() else init.stem
    export_onnx(best, onnx_path, version=f"{base}-ft{date.today():%Y%m%d}" + (f"-{tag}" if tag else ""))
    for suffix in (".lm.tsv.gz", ".calibration.json"):
        if init.with_suffix(suffix).exists():
            shutil.copyfile(init.with_suffix(suffix), onnx_path.with_suffix(suffix))
    return onnx_path
