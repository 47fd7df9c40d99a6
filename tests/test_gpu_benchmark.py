"""The GPU benchmark's code path, on a CPU: the real architectures built from configs in code
(counted on the meta device, nothing allocated) and the measured runs on a tiny model."""

import json

import pytest
import torch

from helpers import tmp_copy


@pytest.mark.slow
@pytest.mark.parametrize("name,params,rope", [("cogvideox-5b", 5.570e9, True), ("cogvideox-2b", 1.694e9, False)])
def test_architecture_model_is_the_real_size(name, params, rope):
    from motionlib.models.architecture import architecture_model

    m = architecture_model(name, "meta")
    n = sum(p.numel() for p in m.transformer.parameters())
    assert abs(n - params) / params < 1e-3  # CogVideoX-5B: 5.57 B, 2B: 1.69 B transformer parameters
    assert m.transformer.config.use_rotary_positional_embeddings is rope
    assert m.transformer.config.sample_frames == 49 and m.spec.grid == (13, 30, 45)
    assert sum(p.numel() for p in m.vae.parameters()) > 2e8  # the real VAE config (~216 M)


@pytest.mark.slow
def test_model_bench_pairs_on_a_tiny_model(tiny5b):
    from benchmarks.gpu import ModelBench

    bench = ModelBench(tiny5b, steps=2)
    for _ in range(2):
        bench.pair()
    assert set(bench.times) == {"generate", "apply", "learn", "official-style learn"}
    for times in bench.times.values():
        assert len(times) == 2 and min(times) > 0
    assert bench.peaks == {}  # peak memory is measured on CUDA only
    assert bench.ratio("apply", "generate").n == 2 and bench.ratio("learn", "official-style learn").n == 2
    assert not bench.failed


@pytest.mark.slow
def test_measure_records_every_step_and_round_trips(tmp_path, tiny5b, tiny2b):
    """The device run's loop on a CPU: tiny models for the two architectures, a small AMF grid;
    the record written after each step loads back as the section `python -m benchmarks` shows."""
    from benchmarks import gpu

    record = tmp_path / "gpu_last.json"
    seen = []

    def progress(sec):
        seen.append(sec.headline)
        gpu.save_record(sec, record, measured="2026-01-01 00:00 UTC", torch="t", diffusers="d")

    models = {"cogvideox-5b": tiny5b, "cogvideox-2b": tiny2b}
    sec = gpu.measure(1, max_pairs=2, budget_s=None, progress=progress, models=list(models),
                      build=models.__getitem__, amf_grid=(2, 4, 6), device="cpu")
    assert len(seen) == 1 + 2 + 2 + 1  # AMF, first pair of each model, second pair of each, the end
    assert "(incomplete run)" in seen[0] and "(incomplete run)" not in seen[-1]
    ratios = dict(((m, what), v) for m, what, v in sec.tables[0][1])
    assert set(ratios) == {(m, f"{a} / {b}") for m in models for a, b in gpu.GOALS}
    assert all("n=2" in v for v in ratios.values())
    amf_rows = sec.tables[1][1]
    assert [r[1] for r in amf_rows[:2]] == ["n/a (CUDA only)"] * 2 and all(r[2].endswith("s") for r in amf_rows[:2])

    loaded = gpu.load_record(record, phases=tmp_path / "no-phases.json")
    assert loaded.rows == sec.rows and loaded.tables == sec.tables and loaded.status == sec.status
    assert loaded.headline.startswith("recorded 2026-01-01 00:00 UTC on cpu")


@pytest.mark.slow
def test_a_budget_stops_further_pairs(tiny5b):
    from benchmarks import gpu

    sec = gpu.measure(1, max_pairs=5, budget_s=0.0, models=["cogvideox-5b"], build=lambda _: tiny5b,
                      amf_grid=(2, 4, 6), device="cpu")
    assert all("n=1" in v for _, _, v in sec.tables[0][1])  # the first pair always runs, no more


@pytest.mark.slow
def test_section_without_a_gpu_reports_the_record_or_says_not_measured(monkeypatch, tmp_path):
    from benchmarks import gpu
    from benchmarks.common import Config, Section

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu, "RECORD", tmp_path / "none.json")
    monkeypatch.setattr(gpu.load_record, "__defaults__", (tmp_path / "none.json", tmp_path / "none.json"))
    sec = gpu.run(Config(quick=True))
    assert sec.status == "not measured" and "no GPU" in sec.headline

    path = tmp_path / "rec.json"
    gpu.save_record(Section("gpu", "t", "g", status="missed", headline="h"), path,
                    measured="2026-11-26 04:00 UTC", device="NVIDIA H200")
    monkeypatch.setattr(gpu.load_record, "__defaults__", (path, tmp_path / "none.json"))
    sec = gpu.run(Config(quick=True))
    assert sec.status == "missed" and sec.headline == "recorded 2026-11-26 04:00 UTC on NVIDIA H200 (no GPU in this run): h"


def test_composed_costs_scale_guided_and_cfg_steps():
    """learn(S) = fixed + n(S)·guided-step + (n(S)-1)·CFG-step; official(S) = fixed + n(S)·guided-step
    + S·CFG-step, with n(S) = 20% of S; checked against the formula written out at S = 50."""
    from benchmarks.gpu import composed

    res = {"generate": {"phases": {"denoising forwards (CFG)": 20.0, "VAE decode": 3.0}},
           "learn": {"phases": {"VAE encode": 1.0, "reference pass": 0.5, "guided steps (ρ optimisation)": 16.0,
                                "denoising forwards (CFG)": 2.0}},
           "official-style learn": {"phases": {"VAE encode": 1.0, "reference pass": 1.0, "VAE decode": 3.0,
                                               "guided steps (ρ optimisation)": 24.0, "denoising forwards (CFG)": 20.0}}}
    assert composed(res, 10, 10) == (1.0 + 0.5 + 16.0 + 2.0, 1.0 + 1.0 + 3.0 + 24.0 + 20.0)
    learn, official = composed(res, 50, 10)
    assert learn == 1.5 + 10 * 8.0 + 9 * 2.0 and official == 5.0 + 10 * 12.0 + 50 * 2.0


@pytest.mark.slow
def test_phases_profile_on_a_tiny_model(tiny5b):
    from benchmarks.phases import profile, table

    res = profile(tiny5b, steps=2)
    assert set(res) == {"generate", "learn", "official-style learn", "learn, no activation checkpointing",
                        "learn, gradient=local, reuse"}  # the last: RoPE models only
    for case, r in res.items():
        assert abs(sum(r["phases"].values()) - r["seconds"]) < 1e-6  # "other" closes the sum
        assert r["phases"]["guided steps (ρ optimisation)" if "learn" in case else "VAE decode"] > 0
    assert "VAE decode" not in res["learn"]["phases"] and res["official-style learn"]["phases"]["VAE decode"] > 0
    assert "official-style learn" in table(res)


def test_the_committed_gpu_records_load(tmp_path):
    """benchmarks/gpu_last.json and gpu_phases.json (from the last GPU lease) still load and render."""
    from benchmarks.gpu import PHASES, RECORD, load_record

    sec = load_record(tmp_copy(RECORD, tmp_path), phases=tmp_copy(PHASES, tmp_path))
    assert sec.status in ("met", "missed") and sec.extra["device"].startswith("NVIDIA")
    assert [h[1] for h, _ in sec.tables][-2:] == ["case (one run each)", "denoising steps"]


@pytest.mark.slow
def test_the_gpu_section_says_the_card_table_is_estimated_until_measured(monkeypatch, tmp_path):
    from benchmarks import gpu
    from benchmarks.common import Section

    sec = Section("gpu", "t", "g")
    gpu.memory_tables(sec, tmp_path / "no-table.json")
    headers, rows = sec.tables[-1]
    assert headers[2:] == ["12 GB card", "16 GB card", "24 GB card", "48 GB card", "80 GB card"]
    assert [r[:2] for r in rows] == [[m, j] for m in ("cogvideox-5b", "cogvideox-2b") for j in ("learn", "generate", "apply")]
    assert "ESTIMATED" in sec.notes[-1]


def test_phases_on_a_cpu_will_not_overwrite_the_gpu_record(monkeypatch, tmp_path):
    from benchmarks import phases

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    record = tmp_copy(phases.PHASES, tmp_path)  # the guarded path, as a copy: a regression writes only this
    monkeypatch.setattr(phases, "PHASES", record)
    before = record.read_bytes()
    with pytest.raises(SystemExit) as e:
        phases.main(["--out", str(record)])
    assert e.value.code == 2 and record.read_bytes() == before


@pytest.mark.slow
def test_only_some_sections_prints_and_leaves_the_report_alone(monkeypatch, capsys, tmp_path):
    from benchmarks import __main__ as bench
    from benchmarks import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # the files a run may write, as copies: a regression writes only these
    report, record = tmp_copy(bench.REPORT, tmp_path), tmp_copy(gpu.RECORD, tmp_path)
    monkeypatch.setattr(bench, "REPORT", report)
    monkeypatch.setattr(bench, "PLOT", tmp_path / "amf_memory.png")
    monkeypatch.setattr(gpu, "RECORD", record)
    before, threads = (report.read_bytes(), record.read_bytes()), torch.get_num_threads()
    try:
        assert bench.main(["--quick", "--only", "gpu"]) == 0
    finally:
        torch.set_num_threads(threads)  # main() sets the benchmark's threads for the whole process
    assert "== 7. GPU" in capsys.readouterr().out
    assert (report.read_bytes(), record.read_bytes()) == before and not (tmp_path / "amf_memory.png").exists()


@pytest.mark.slow
def test_wan_architecture_is_the_real_size_and_its_bench_runs_on_tiny_wan(tmp_path):
    """Wan2.1-1.3B from its real config (1.42 B transformer parameters, 21x30x52 tokens at 81x480x832),
    counted on the meta device; the device run's loop (pairs, AMF probe, record) on tiny-wan."""
    from benchmarks import gpu
    from motionlib.models import load_model

    m = gpu.architecture_model("wan2.1-t2v-1.3b", "meta")
    n = sum(p.numel() for p in m.transformer.parameters())
    assert 1.40e9 < n < 1.44e9 and m.spec.grid == (21, 30, 52) and len(m.transformer.blocks) == 30
    assert m.transformer.rope.freqs_cos.dtype == torch.float32  # kept in fp32, as from_pretrained keeps it
    assert m.transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16

    tiny = load_model("tiny-wan", device="cpu")
    record = tmp_path / "gpu_last.json"
    sec = gpu.measure(1, max_pairs=1, models=["wan2.1-t2v-1.3b"], build=lambda _: tiny, amf_grid=(2, 4, 6),
                      device="cpu", progress=lambda s: gpu.save_record(s, record, measured="m", device="cpu"))
    assert any(r[1].startswith("learn peak incl. weights") and r[2] == "n/a (CUDA only)" for r in sec.tables[0][1])
    runs = {r[1] for r in sec.rows if r[0] == "wan2.1-t2v-1.3b"}
    assert runs == set(gpu.RUNS) and all(r[2].endswith("s") for r in sec.rows)
    assert "(incomplete run)" not in sec.headline
    amf_rows = sec.tables[1][1]  # the probe at Wan's heads (here on the small test grid)
    assert amf_rows[0][0] == "motion_flow soft+backward, 2x4x6, 12 heads, bf16" and amf_rows[0][2].endswith("s")
    assert gpu.load_record(record, phases=tmp_path / "none.json").rows[:4] == sec.rows[:4]


def test_a_record_without_wan_says_it_was_never_measured(tmp_path):
    from benchmarks.gpu import NEVER, PHASES, RECORD, load_record

    record = tmp_copy(RECORD, tmp_path)
    data = json.loads(record.read_text())
    data["rows"] = [r for r in data["rows"] if r[0] != "wan2.1-t2v-1.3b"]
    record.write_text(json.dumps(data))
    sec = load_record(record, phases=tmp_copy(PHASES, tmp_path))
    wan = [r for r in sec.rows if r[0] == "wan2.1-t2v-1.3b"]
    assert len(wan) == 4 and all(r[2] == r[3] == NEVER for r in wan)
    ratios = [r for r in sec.tables[0][1] if r[0] == "wan2.1-t2v-1.3b"]
    assert len(ratios) == 3 and all(r[2] == NEVER for r in ratios)  # two ratios and the 24 GB goal
    assert [r[1] for r in sec.tables[1][1] if "21x30x52" in r[0]] == [NEVER, NEVER]  # AMF at Wan's size
    assert "Wan2.1-1.3B" in sec.title


def test_local_gradient_composition_from_recorded_phases():
    """One 'local' pass = unchecked pass - 2 x (checkpointed - unchecked pass); the guided steps of the
    50-step learn shrink by opt_steps x the saving; additive-ρ models get no what-if."""
    from benchmarks.gpu import composed, local_pass, local_rows

    phases = lambda guided: {"VAE encode": 1.0, "guided steps (ρ optimisation)": guided,  # noqa: E731
                             "denoising forwards (CFG)": 2.0}
    res = {"generate": {"phases": {"denoising forwards (CFG)": 20.0}},
           "learn": {"phases": phases(20.0)}, "learn, no activation checkpointing": {"phases": phases(16.0)},
           "official-style learn": {"phases": {"VAE encode": 1.0, "guided steps (ρ optimisation)": 30.0,
                                               "denoising forwards (CFG)": 20.0}}}
    # 10 steps -> 2 guided x 5 Adam = 10 passes: full 2.0 s, unchecked 1.6 s, prefix forward 0.4 s
    p = local_pass(res, 5, 10)
    assert p["full"] == pytest.approx(2.0) and p["prefix forward"] == pytest.approx(0.4)
    assert p["local"] == pytest.approx(1.6 - 0.8)
    assert p["reuse"] == pytest.approx(0.8 - 0.4)
    row, reuse = local_rows("cogvideox-5b", res, 10)
    per_guided_step = 20.0 / 2 - 5 * (2.0 - 0.8)
    learn, official = 1.0 + 10 * per_guided_step + 9 * 2.0, composed(res, 50, 10)[1]
    assert row[2] == f"{learn:.2f} s" and row[4] == f"{learn / official:.3f}"
    # reuse: the prefix forward once per guided step, then 5 passes of the guidance block alone
    per_guided_step = 0.4 + 5 * 0.4
    learn = 1.0 + 10 * per_guided_step + 9 * 2.0
    assert "reuse" in reuse[1] and reuse[2] == f"{learn:.2f} s" and reuse[4] == f"{learn / official:.3f}"
    assert local_rows("cogvideox-2b", res, 10)[0][2].startswith("n/a")


def test_update_splices_the_remeasured_sections_into_the_report():
    """`--only X --update`: X's summary row and section are replaced, every other line is kept."""
    from benchmarks import __main__ as bench
    from benchmarks.common import Config, Section

    report = bench.REPORT.read_text()
    sec = Section("team", "Team scale", "a goal", status="met", headline="re-measured headline")
    sec.headers, sec.rows, sec.notes = ["a", "b"], [["1", "2"]], ["a note"]
    env = {"command": "python -m benchmarks --only team --update", "date": "2026-12-01 00:00 UTC",
           "load average at start (1/5/15 min)": "0.10, 0.20, 0.30"}
    out = bench.splice(report, env, [sec], Config(quick=False), 60.0)
    n = bench.number("team")
    rows = [x for x in out.splitlines() if x.startswith(f"| {n} | ")]
    assert rows == [f"| {n} | Team scale | a goal | re-measured headline | met |"]
    start, end = bench._span(out.splitlines(), n)
    block = out.splitlines()[start:end]
    assert block[0] == f"## {n}. Team scale" and "| 1 | 2 |" in block and "- a note" in block
    assert "Section 12 re-measured by `python -m benchmarks --only team --update` on 2026-12-01" in out
    old, new = report.splitlines(), out.splitlines()
    for other in (1, 4, 13):  # untouched sections are byte for byte the same
        s0, e0 = bench._span(old, other)
        s1, e1 = bench._span(new, other)
        assert old[s0:e0] == new[s1:e1]
    with pytest.raises(SystemExit):
        bench.main(["--only", "team", "--update", "--quick"])


def test_update_adds_a_new_section_and_leaves_other_tables_rows_alone():
    """A section the report lacks gets its summary row after the last one and its block at the end; rows
    of a section's own table that start like a summary row ("| 2 | ...") are not summary rows."""
    from benchmarks import __main__ as bench
    from benchmarks.common import Config, Section

    lines = bench.REPORT.read_text().splitlines()
    n = bench.number("train")
    start, end = bench._span(lines, n)
    report = "\n".join(x for i, x in enumerate(lines) if not (start <= i < end or x.startswith(f"| {n} | ")))
    assert f"## {n}. " not in report
    env = {"command": "c", "date": "d", "load average at start (1/5/15 min)": "0, 0, 0"}
    team = Section("team", "Team scale", "g", status="met", headline="h")
    team.headers, team.rows = ["a"], [["1"]]
    new = Section("train", "Trainer", "g2", status="met", headline="h2")
    new.headers, new.rows = ["N", "x"], [["2", "y"]]
    out = bench.splice(report, env, [team, new], Config(quick=False), 1.0).splitlines()
    top, bottom = bench._span(out, "Summary")
    summary = [x for x in out[top:bottom] if x.startswith("| ")]
    assert summary[-1] == f"| {n} | Trainer | g2 | h2 | met |"
    s, e = bench._span(out, n)
    assert out[s] == f"## {n}. Trainer" and "| 2 | y |" in out[s:e] and e == len(out)
    s13, e13 = bench._span(out, 13)
    assert [x for x in out[s13:e13] if x.startswith("| 2 | ")] == \
        [x for x in lines[slice(*bench._span(lines, 13))] if x.startswith("| 2 | ")]  # section 13's own row kept


def test_update_drops_what_earlier_notes_said_of_the_sections_it_re_measures():
    from benchmarks import __main__ as bench

    lines = ["# Benchmarks", "", "Generated by x.", "", "Sections 4, 7 re-measured by `a` on d1.", "",
             "Section 2 re-measured by `b` on d2.", "", "Sections 9, 12 re-measured by `c` on d3.", ""]
    out = bench._drop_superseded(lines, {4, 12, 2})
    assert out == ["# Benchmarks", "", "Generated by x.", "", "Section 7 re-measured by `a` on d1.", "",
                   "Section 9 re-measured by `c` on d3.", ""]


@pytest.mark.slow
def test_phases_skip_local_gradient_for_additive_rho_and_compose_a_recorded_reuse_case(tiny2b):
    """The local/reuse case runs only where it applies; a record that has it gets measured-phase rows."""
    from benchmarks.gpu import phase_tables
    from benchmarks.common import Section
    from benchmarks.phases import profile

    assert "learn, gradient=local, reuse" not in profile(tiny2b, steps=2)
    ph = lambda g, cfg: {"VAE encode": 1.0, "guided steps (ρ optimisation)": g,  # noqa: E731
                         "denoising forwards (CFG)": cfg}
    res = {"generate": {"seconds": 22.0, "peak": None, "phases": {"denoising forwards (CFG)": 20.0}},
           "learn": {"seconds": 23.0, "peak": None, "phases": ph(20.0, 2.0)},
           "official-style learn": {"seconds": 51.0, "peak": None, "phases": ph(30.0, 20.0)},
           "learn, gradient=local, reuse": {"seconds": 8.0, "peak": None, "phases": ph(5.0, 2.0)}}
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phases.json"
        path.write_text(json.dumps({"results": {"cogvideox-5b": res}, "steps": 10, "command": "c", "device": "d",
                                    "measured": "m"}))
        sec = Section("gpu", "t", "g")
        phase_tables(sec, path)
    comp = sec.tables[1][1]
    reuse = [r for r in comp if "reuse (measured phases)" in r[1]]
    assert [r[1].split(",")[0] for r in reuse] == ["10", "50"]
    assert reuse[0][2] == "8.00 s"  # 1 + 5 + 2: the recorded case itself at its own step count
