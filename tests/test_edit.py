"""Motion editing (issue 28): mirror, reverse and blend of stored motions, against naive loop implementations;
the Python API, the CLI (edit, blend, show's lineage), provenance in the catalogue and the asset header,
the 0005 migration, and the three tiny presets."""

import json

import pytest
import torch
from safetensors.torch import save

from helpers import cli, cli_json

from motionlib.asset import MotionAsset
from motionlib.edit import blend, global_shift, mirror, mirror_latent, reverse
from motionlib.errors import MotionlibError, UneditableMotion
from motionlib.guidance import GuidanceParams
from motionlib.models import resolve_spec


# -- a stored motion without a model -----------------------------------------------------------------
def fake_asset(seed: int = 0, *, model: str = "shapes", parametrisation: str = "shift", timesteps=(999, 899),
               frames: bool = True) -> MotionAsset:
    """A shift motion with seeded random contents on `model`'s grid (values exact in float16)."""
    spec = resolve_spec(model)
    g = torch.Generator().manual_seed(seed)
    f, rows, cols = spec.grid
    n, s = f * rows * cols, rows * cols
    params = GuidanceParams.from_spec(spec, parametrisation=parametrisation).to_dict()
    from motionlib.rho import names_for, rho_width

    def shift():
        return (torch.randn(n, 3, generator=g) * 4).half().float()

    if parametrisation == "table":
        rho = {t: {k: torch.randn(n, rho_width(spec), generator=g).half().float()
                   for k in names_for(spec.embedding)} for t in timesteps}
    else:
        rho = {t: {k: shift() for k in names_for(spec.embedding, parametrisation)} for t in timesteps}
    channels = 12 if model == "shapes" else 16
    h, w = spec.height // spec.spatial_compression, spec.width // spec.spatial_compression
    latent = torch.randn(1, f, channels, h, w, generator=g).half().float()
    block = spec.guidance.blocks[0]
    amf = torch.randint(-(cols - 1), cols, (f, f, s, 2), generator=g).float()
    conf = torch.randint(0, 256, (f, f, s), generator=g).to(torch.uint8)
    previews = torch.randint(0, 256, (f, 16, 16, 3), generator=g).to(torch.uint8) if frames else None
    return MotionAsset(spec=spec, timesteps=list(timesteps), rho_delta=rho, ref_latent=latent, ref_amf={block: amf},
                       ref_confidence={block: conf}, params=params, steps=10, scheduler={"name": "x", "config": {}},
                       losses=[[1.0, 0.5]], source={"name": "clip.mp4"}, created_at="2026-01-01T00:00:00+00:00",
                       ref_frames=previews)


def tensor_bytes(asset: MotionAsset) -> bytes:
    """Every tensor of the asset as the file stores it (float16 shifts, int8 AMF, uint8 confidence)."""
    return save(asset.tensors())


def snapshot(asset: MotionAsset) -> tuple[bytes, str]:
    return tensor_bytes(asset), json.dumps(asset._metadata(), sort_keys=True)


# -- naive implementations (loops over tokens) -------------------------------------------------------
def naive_mirror_shift(shift, grid, axis):
    f, rows, cols = grid
    out = torch.empty_like(shift)
    for fi in range(f):
        for r in range(rows):
            for c in range(cols):
                src = fi * rows * cols + r * cols + c
                r2, c2 = (r, cols - 1 - c) if axis == "x" else (rows - 1 - r, c)
                t, y, x = shift[src].tolist()
                out[fi * rows * cols + r2 * cols + c2] = torch.tensor([t, y, -x] if axis == "x" else [t, -y, x])
    return out


def naive_reverse_shift(shift, grid):
    f, rows, cols = grid
    out = torch.empty_like(shift)
    for fi in range(f):
        for k in range(rows * cols):
            t, y, x = shift[fi * rows * cols + k].tolist()
            out[(f - 1 - fi) * rows * cols + k] = torch.tensor([-t, y, x])
    return out


def naive_mirror_amf(amf, conf, grid, axis):
    f, rows, cols = grid
    out, oc = torch.empty_like(amf), torch.empty_like(conf)
    for i in range(f):
        for j in range(f):
            for r in range(rows):
                for c in range(cols):
                    r2, c2 = (r, cols - 1 - c) if axis == "x" else (rows - 1 - r, c)
                    dx, dy = amf[i, j, r * cols + c].tolist()
                    out[i, j, r2 * cols + c2] = torch.tensor([-dx, dy] if axis == "x" else [dx, -dy])
                    oc[i, j, r2 * cols + c2] = conf[i, j, r * cols + c]
    return out, oc


def naive_reverse_amf(amf, conf):
    f = amf.shape[0]
    out, oc = torch.empty_like(amf), torch.empty_like(conf)
    for i in range(f):
        for j in range(f):
            out[f - 1 - i, f - 1 - j] = amf[i, j]
            oc[f - 1 - i, f - 1 - j] = conf[i, j]
    return out, oc


# -- the maths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", ["x", "y"])
def test_mirror_matches_naive(axis):
    a = fake_asset(1)
    m = mirror(a, axis)
    grid = a.spec.grid
    for t in a.timesteps:
        for n, v in a.rho_delta[t].items():
            assert torch.equal(m.rho_delta[t][n], naive_mirror_shift(v, grid, axis))
    b = a.blocks[0]
    amf, conf = naive_mirror_amf(a.ref_amf[b], a.ref_confidence[b], grid, axis)
    assert torch.equal(m.ref_amf[b], amf) and torch.equal(m.ref_confidence[b], conf)
    assert torch.equal(m.ref_frames, a.ref_frames.flip(2 if axis == "x" else 1))
    # the shapes codec: decoding the mirrored latent gives the mirrored pixels, exactly
    from motionlib.demo.codec import PixelShuffleCodec

    codec = PixelShuffleCodec()
    pixels = codec.decode(a.ref_latent.permute(0, 2, 1, 3, 4)).sample
    mirrored = codec.decode(m.ref_latent.permute(0, 2, 1, 3, 4)).sample
    assert torch.equal(mirrored, pixels.flip(-1 if axis == "x" else -2))


def test_reverse_matches_naive():
    a = fake_asset(2)
    r = reverse(a)
    for t in a.timesteps:
        for n, v in a.rho_delta[t].items():
            assert torch.equal(r.rho_delta[t][n], naive_reverse_shift(v, a.spec.grid))
    b = a.blocks[0]
    amf, conf = naive_reverse_amf(a.ref_amf[b], a.ref_confidence[b])
    assert torch.equal(r.ref_amf[b], amf) and torch.equal(r.ref_confidence[b], conf)
    assert torch.equal(r.ref_latent, torch.stack([a.ref_latent[0, i] for i in reversed(range(a.spec.grid[0]))])[None])
    assert torch.equal(r.ref_frames, a.ref_frames.flip(0))
    assert r.timesteps == a.timesteps  # the denoising-step axis is not touched


def test_vae_latent_mirror_is_a_plain_flip():
    """A latent that is no pixel-unshuffle one (tiny-5b's VAE) is flipped as it is (approximate, documented)."""
    a = fake_asset(3, model="tiny-5b")
    assert torch.equal(mirror_latent(a.ref_latent, a.spec, "x"), a.ref_latent.flip(4))
    assert torch.equal(mirror_latent(a.ref_latent, a.spec, "y"), a.ref_latent.flip(3))


@pytest.mark.parametrize("model", ["shapes", "tiny-5b", "tiny-2b", "tiny-wan"])
def test_twice_is_the_original_bit_for_bit(model):
    a = fake_asset(4, model=model, parametrisation="shared-shift" if model == "tiny-5b" else "shift")
    before = snapshot(a)
    for once in (lambda x: mirror(x, "x"), lambda x: mirror(x, "y"), reverse, lambda x: x.mirror("x"),
                 lambda x: x.reversed()):
        twice = once(once(a))
        assert tensor_bytes(twice) == before[0]
        assert tensor_bytes(once(a)) != before[0]
    assert snapshot(a) == before  # the input is untouched


def test_blend_matches_naive_and_one_zero_is_the_first():
    a, b = fake_asset(5), fake_asset(6)
    before = snapshot(a), snapshot(b)
    w = (0.25, -1.5)
    m = blend([a, b], w, part="full")
    for t in a.timesteps:
        for n in a.rho_delta[t]:
            x, y, got = a.rho_delta[t][n], b.rho_delta[t][n], m.rho_delta[t][n]
            for i in range(0, x.shape[0], 37):
                for c in range(3):
                    assert got[i, c].item() == pytest.approx(w[0] * x[i, c].item() + w[1] * y[i, c].item(), abs=1e-5)
    k = a.blocks[0]
    reach = max(a.spec.grid[1:]) - 1
    for idx in [(0, 1, 5, 0), (3, 2, 40, 1), (7, 7, 63, 0)]:
        want = round(w[0] * a.ref_amf[k][idx].item() + w[1] * b.ref_amf[k][idx].item())
        assert m.ref_amf[k][idx].item() == max(-reach, min(reach, want))
        c = (0.25 * a.ref_confidence[k][idx[:3]].item() + 1.5 * b.ref_confidence[k][idx[:3]].item()) / 1.75
        assert m.ref_confidence[k][idx[:3]].item() == pytest.approx(c, abs=1 / 255)
    assert m.params["inject"] is False and torch.equal(m.ref_latent, a.ref_latent)
    assert m.lineage["operations"] == [{"op": "blend", "weights": [0.25, -1.5], "part": "full"}]
    assert (snapshot(a), snapshot(b)) == before
    first = blend([a, b], [1, 0], part="full")
    assert tensor_bytes(first) == before[0][0] and first.params == a.params
    assert tensor_bytes(blend([a, b], [0, 1], part="full")) == before[1][0]


def naive_frame_means(shift, grid):
    """Per frame, the mean of each component over the frame's tokens, by loops."""
    frames, rows, cols = grid
    means = []
    for f in range(frames):
        tokens = [shift[(f * rows + r) * cols + c] for r in range(rows) for c in range(cols)]
        means.append([sum(t[k].item() for t in tokens) / len(tokens) for k in range(3)])
    return means


@pytest.mark.parametrize("model", ["shapes", "tiny-wan"])
def test_default_blend_sums_the_global_parts(model):
    a, b = fake_asset(11, model=model), fake_asset(12, model=model)
    grid = a.spec.grid
    w = (0.5, 0.75)
    m = blend([a, b], w)
    assert m.lineage["operations"] == [{"op": "blend", "weights": [0.5, 0.75], "part": "global"}]
    rows, cols = grid[1:]
    for t in a.timesteps:
        for n in a.rho_delta[t]:
            ma, mb = naive_frame_means(a.rho_delta[t][n], grid), naive_frame_means(b.rho_delta[t][n], grid)
            got = m.rho_delta[t][n]
            for f in range(grid[0]):
                for i in (f * rows * cols, (f + 1) * rows * cols - 1, f * rows * cols + 7):  # every token of f alike
                    for k in range(3):
                        assert got[i, k].item() == pytest.approx(w[0] * ma[f][k] + w[1] * mb[f][k], abs=1e-4)
    g = global_shift(next(iter(a.rho_delta[a.timesteps[0]].values())), grid)
    assert torch.allclose(global_shift(g, grid), g, atol=1e-6)  # the global part of a global part is itself
    with pytest.raises(UneditableMotion, match="'global' or 'full'"):
        blend([a, b], part="local")


def test_refusals_name_the_reason():
    table = fake_asset(7, parametrisation="table")
    for edit in (lambda: mirror(table, "x"), lambda: reverse(table), lambda: blend([fake_asset(8), table], [1, 1])):
        with pytest.raises(UneditableMotion, match="--parametrisation shift"):
            edit()
    with pytest.raises(UneditableMotion, match="'x' or 'y'"):
        mirror(fake_asset(8), "z")
    a = fake_asset(9)
    with pytest.raises(UneditableMotion, match="cannot blend 'b' with 'a'.*tiny-5b"):
        blend([a, fake_asset(10, model="tiny-5b")], names=["a", "b"])
    with pytest.raises(UneditableMotion, match="cannot blend 'b' with 'a'.*shared-shift"):
        blend([a, fake_asset(10, parametrisation="shared-shift")], names=["a", "b"])
    with pytest.raises(UneditableMotion, match="guided timesteps"):
        blend([a, fake_asset(10, timesteps=(999, 899, 799))], names=["a", "b"])
    for bad in ([1], [0, 0], [float("nan"), 1], [1, 11], [True, 1]):
        with pytest.raises(UneditableMotion):
            blend([a, fake_asset(10)], bad)
    assert issubclass(UneditableMotion, MotionlibError)


def test_lineage_in_the_header_round_trips(tmp_path):
    a = fake_asset(11)
    plain = a.save(tmp_path / "plain.safetensors")
    from motionlib.asset import inspect

    assert "lineage" not in inspect(plain)  # a learnt motion's header is as before
    again = MotionAsset.load(plain)
    assert again.lineage is None
    assert again.save(tmp_path / "again.safetensors").read_bytes() == plain.read_bytes()
    m = a.mirror("y")
    path = m.save(tmp_path / "m.safetensors")
    back = MotionAsset.load(path)
    assert back.lineage == m.lineage == {"operations": [{"op": "mirror", "axis": "y"}],
                                         "parents": [{"created_at": a.created_at, "source": "clip.mp4"}]}
    assert tensor_bytes(back) == tensor_bytes(m)


def test_a_hostile_lineage_is_refused(tmp_path):
    from motionlib.asset import AssetError

    m = fake_asset(12).mirror("x")
    for bad in ({"operations": [], "parents": [{}]}, {"operations": [{"op": "x" * 300}], "parents": [{}]},
                {"operations": [{"op": "a"}], "parents": [{"name": {"nested": 1}}]}, ["not", "a", "table"]):
        m.lineage = bad  # type: ignore[assignment]
        path = m.save(tmp_path / "bad.safetensors")
        with pytest.raises(AssetError, match="lineage"):
            MotionAsset.load(path)


# -- the model: does the shapes model read a mirrored clip as the mirrored motion? --------------------
@pytest.mark.slow
def test_shapes_amf_of_the_mirrored_clip_agrees_with_the_mirrored_amf():
    """A loose sanity check; the measurement (≥ 0.9 is the goal) is `python -m benchmarks --only edit`."""
    from benchmarks.edit import mirrored_amf_agreement
    from motionlib.models import load_model

    score = mirrored_amf_agreement(load_model("shapes"))
    for axis in ("x", "y"):
        assert score[axis]["moved pairs"] > 0.5 and score[axis]["every pair"] > 0.5 and score[axis]["AMF vs truth"] > 0.5


# -- the three tiny presets ----------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny-5b", "tiny-2b", "tiny-wan"])
def test_edited_motions_render_on_the_tiny_presets(preset):
    from helpers import noise_clip

    from motionlib.apply import apply
    from motionlib.learn import learn
    from motionlib.models import load_model

    model = load_model(preset)
    asset = learn(model, noise_clip(model), steps=4, opt_steps=1, parametrisation="shift").asset
    for edited in (asset.mirror("x"), asset.mirror("y"), asset.reversed(), blend([asset, asset.mirror("x")])):
        video = apply(model, edited, "a cat", seed=1, steps=4)
        assert video.shape == apply(model, asset, "a cat", seed=1, steps=4).shape
        assert bool(torch.isfinite(video).all())


# -- the command line, the catalogue and provenance ------------------------------------------------------
@pytest.fixture(scope="module")
def shift_motion(tmp_path_factory):
    """A tiny-5b motion learnt with --parametrisation shift, exported once for every test's library."""
    from helpers import learn_exported

    return learn_exported(tmp_path_factory.mktemp("shift"), "--parametrisation", "shift")


@pytest.mark.slow
def test_cli_edit_blend_show_and_removing_a_parent(home, capsys, shift_motion, learnt):
    cli_json(capsys, "import", str(shift_motion), "--name", "left")
    got = cli_json(capsys, "edit", "left", "--as", "right", "--mirror", "x")
    assert got["lineage"]["operations"] == [{"op": "mirror", "axis": "x"}]
    assert got["lineage"]["parents"][0]["name"] == "left" and got["searchable"]
    cli_json(capsys, "edit", "left", "--as", "back", "--reverse", "--mirror", "y", "--tag", "derived")
    cli_json(capsys, "blend", "left", "right", "--as", "still", "--weights", "0.5,0.5")
    shown = cli_json(capsys, "show", "back")
    assert shown["lineage"]["operations"] == [{"op": "mirror", "axis": "y"}, {"op": "reverse"}]
    assert shown["tags"] == ["derived"]
    code, text, _ = cli(capsys, "show", "still")
    assert code == 0 and "blend 0.5 × 'left' + 0.5 × 'right' (global parts)" in text
    whole = cli_json(capsys, "blend", "left", "right", "--as", "whole", "--weights", "1,0", "--part", "full")
    assert whole["lineage"]["operations"] == [{"op": "blend", "weights": [1.0, 0.0], "part": "full"}]
    code, text, _ = cli(capsys, "show", "whole")
    assert "blend 1.0 × 'left' + 0.0 × 'right'" in text and "global" not in text
    code, text, _ = cli(capsys, "show", "left")
    assert code == 0 and "derived" not in text  # a learnt motion has no lineage

    from motionlib.catalog import descriptor_of, load_motion
    from motionlib.store import Library

    with Library() as lib:  # search indexes the derived motion from its transformed reference AMF
        stored = load_motion(lib, "right")
        want = load_motion(lib, "left").mirror("x")
        assert tensor_bytes(stored) == tensor_bytes(want)
        assert (lib.get("right").descriptor_array() == descriptor_of(want)).all()
        hits = lib.search(lib.get("right").descriptor_array(), k=1)
        assert hits[0][0].name == "right"

    cli_json(capsys, "rename", "right", "mirrored")
    code, text, _ = cli(capsys, "show", "still")
    assert "(now 'mirrored')" in text
    cli_json(capsys, "rm", "left")
    shown = cli_json(capsys, "show", "back")
    assert shown["lineage"]["parents"][0]["removed"] is True
    code, text, _ = cli(capsys, "show", "back")
    assert "'left' (removed)" in text
    cli_json(capsys, "export", "back", "back.safetensors")  # the child keeps its own blob
    cli_json(capsys, "apply", "back", "a cat", "--steps", "2", "-o", "back.mp4")
    from motionlib.asset import inspect

    header = inspect("back.safetensors")["lineage"]
    assert header["parents"][0]["name"] == "left" and "id" not in header["parents"][0]
    # an imported edited motion keeps its lineage (its parent is not in the new catalogue)
    cli_json(capsys, "import", "back.safetensors", "--name", "back2")
    assert cli_json(capsys, "show", "back2")["lineage"]["parents"][0]["removed"] is True


@pytest.mark.slow
def test_cli_refusals(cli_home, capsys, shift_motion, learnt):
    cli_json(capsys, "import", str(shift_motion), "--name", "left")
    cli_json(capsys, "import", str(learnt), "--name", "table")  # learnt with tiny-5b's default: table
    cli_json(capsys, "edit", "left", "--as", "right", "--mirror", "x")
    cases = [
        (("edit", "ghost", "--as", "x", "--mirror", "x"), "no motion named 'ghost'"),
        (("edit", "left", "--as", "right", "--mirror", "x"), "right"),  # name exists
        (("edit", "left", "--as", "x"), "nothing to do"),
        (("edit", "left", "--as", "x", "--mirror", "z"), "'x' or 'y'"),
        (("edit", "table", "--as", "x", "--mirror", "x"), "--parametrisation shift"),
        (("edit", "left", "--as", "bad/name", "--reverse"), "name"),
        (("blend", "left", "--as", "x"), "two or more"),
        (("blend", "left", "left", "--as", "x"), "once"),
        (("blend", "left", "right", "--as", "x", "--weights", "1"), "one number per motion"),
        (("blend", "left", "right", "--as", "x", "--weights", "a,b"), "numbers"),
        (("blend", "left", "right", "--as", "x", "--weights", "nan,1"), "finite"),
        (("blend", "left", "right", "--as", "x", "--weights", "0,0"), "all zero"),
        (("blend", "left", "right", "--as", "x", "--part", "local"), "'global' or 'full'"),
        (("blend", "left", "table", "--as", "x"), "--parametrisation shift"),
        (("blend", "left", "ghost", "--as", "x"), "no motion named 'ghost'"),
    ]
    for args, message in cases:
        code, _, err = cli(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], (args, err)
    assert sorted(cli_json(capsys, "list")[i]["name"] for i in range(3)) == ["left", "right", "table"]


@pytest.mark.slow
def test_lineage_migration_down_and_up(tmp_path, catalogue_db, shift_motion):
    """0005 adds motions.lineage_json; going down to 0004 drops it with the rows intact, and up brings it back."""
    import sqlalchemy as sa
    from alembic import command

    from motionlib.catalog import edit_motion, import_motion
    from motionlib.store import Library
    from motionlib.store.db import alembic_config, schema_revision

    with Library(tmp_path / "lib") as lib:
        import_motion(lib, shift_motion, "left")
        edit_motion(lib, "left", "right", mirror="x")
        assert lib.lineage("right")["parents"][0]["current"] == "left"
        command.downgrade(alembic_config(lib.engine), "0004")
        assert schema_revision(lib.engine) == "0004"
        assert "lineage_json" not in {c["name"] for c in sa.inspect(lib.engine).get_columns("motions")}
    with Library(tmp_path / "lib") as lib:  # opening upgrades; the lineage written before is gone, rows stay
        assert schema_revision(lib.engine) == "0005"
        assert lib.names() == ["left", "right"] and lib.lineage("right") is None
        edit_motion(lib, "left", "up", mirror="y", force=False)
        assert lib.lineage("up")["operations"] == [{"op": "mirror", "axis": "y"}]


@pytest.mark.slow
def test_web_motion_page_shows_the_lineage(tmp_path, shift_motion):
    pytest.importorskip("httpx", reason="TestClient needs httpx (the test extra)")
    from fastapi.testclient import TestClient

    from motionlib.catalog import blend_motions, edit_motion, import_motion
    from motionlib.store import Library
    from motionlib.web import Settings, create_app

    with Library(tmp_path / "lib") as lib:
        import_motion(lib, shift_motion, "left")
        edit_motion(lib, "left", "up", mirror="y")
        blend_motions(lib, ["left", "up"], "mix", weights=[0.5, 0.5])
        lib.rename("up", "down")
        with TestClient(create_app(lib, Settings())) as c:
            page = c.get("/motions/mix").text
            assert "derived by <b>blend (global parts)</b>" in page and '<a href="/motions/down">down</a> (was up)' in page
            api = c.get("/api/motions/mix").json()
            assert [p["current"] for p in api["lineage"]["parents"]] == ["left", "down"]
            assert c.get("/api/motions/left").json()["lineage"] is None
            lib.remove("left")
            assert "left (removed)" in c.get("/motions/mix").text
            assert c.get("/motions/mix").status_code == 200


def test_same_edit_same_bytes(tmp_path, monkeypatch):
    """An edit made twice writes the same file when $SOURCE_DATE_EPOCH fixes the time (as a learn does)."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a, b = fake_asset(13), fake_asset(14)
    for i in range(2):
        a.mirror("x").reversed().save(tmp_path / f"e{i}.safetensors")
        blend([a, b], [0.3, 0.7]).save(tmp_path / f"b{i}.safetensors")
    assert (tmp_path / "e0.safetensors").read_bytes() == (tmp_path / "e1.safetensors").read_bytes()
    assert (tmp_path / "b0.safetensors").read_bytes() == (tmp_path / "b1.safetensors").read_bytes()
    assert MotionAsset.load(tmp_path / "e0.safetensors").created_at == "2023-11-14T22:13:20+00:00"
