"""The bundled "shapes" demo model: a small CogVideoX-architecture DiT trained on procedural clips.

- ``data``: seeded moving-disc clips with known centroid tracks and appearance-only prompts;
- ``codec``: a lossless pixel-(un)shuffle codec behind the AutoencoderKLCogVideoX interface;
- ``text``: a word-level tokenizer over the domain vocabulary and a learned word-embedding encoder;
- ``model``: ``SHAPES_SPEC`` and ``build_shapes()`` (loads ``weights/shapes.safetensors`` when present);
- ``train``: ``python -m motionlib.demo.train --minutes 110 --out DIR`` (resumable, CPU-friendly);
- ``preview``: render a few generations from trained weights to a PNG contact sheet.
"""
