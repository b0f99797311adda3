"""The project's own handwriting recogniser: data, synthetic cells, CRNN-CTC model, training, export, calibration.

Modules:
- `text`: Unicode normalisation of transcriptions and the charset.
- `data`: ground-truth lines from ALTO v4 / PAGE XML polygons, line crops, the page/will split.
- `preprocess`: crop normalisation shared by training and the engine (grey, contrast, fixed height).
- `model`: the CRNN (conv stack + BiLSTM + CTC head) and greedy CTC decoding.
- `augment`: batched, device-side augmentation (slant, warp, stroke width, blur, noise, ruling lines).
- `synthetic`: census cells rendered from the register vocabulary with handwriting fonts.
- `cache`: pre-normalised line crops packed into compressed arrays for fast (GPU) training.
- `train`: the training loop (resumable, early stopping on validation CER), `census train`.
- `export`: checkpoint -> ONNX (int8 LSTM) + charset, the files the `crnn` engine loads.
- `corrections`: reviewer-corrected cells of a run as fine-tuning samples.
- `confidence`: a reading's sequence features and the fitted `Calibration` the engine applies at run time.
- `calibrate`: fitting that calibration, reliability diagram, accept threshold (`census calibrate`).
- `bench`: recognition throughput and model load time.
"""
