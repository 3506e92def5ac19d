"""Auto-crop and paste-back on the real media: full-size output, untouched outside the box, no seam, the crop
follows the subject, the right subject, clear errors. Random-init tiny models (the pipeline, not the quality)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from animate.backends import subject_detector, subject_kind
from animate.batch import AnimatePairs
from animate.cli import main
from animate.crop_plan import crop_subpixel, pick_subject, plan_crops
from animate.files import AutoCropOptions, animate_file
from animate.paste import MAX_SIDE, even_frame, feather_mask, fit_frame, paste_back
from animate.render import render
from fomm.animator import Animator, AnimatorError
from fomm.config.schema import load_config
from services.image_read import read_image
from services.video_read import iter_frames, probe_video, read_frames
from services.video_write import write_video


def tiny_config(tmp_path_factory, tiny_config_path, root_dir: str) -> Path:
    """tiny-64 with a data set name that makes it a face (vox) or body (taichi) config."""
    cfg = yaml.safe_load(Path(tiny_config_path).read_text())
    cfg["dataset_params"]["root_dir"] = root_dir
    path = tmp_path_factory.mktemp("cfg") / f"{Path(root_dir).name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def face_animator(tmp_path_factory, tiny_config_path) -> Animator:
    torch.set_num_threads(1)
    return Animator.from_config(tiny_config(tmp_path_factory, tiny_config_path, "data/vox-tiny"), random_init=True,
                                crop="none", batch_size=4, smooth=3.0)


def outside(mask_shape: tuple[int, int], box) -> np.ndarray:  # noqa: ANN001
    keep = np.ones(mask_shape, dtype=bool)
    x0, y0, x1, y1 = box
    keep[y0:y1, x0:x1] = False
    return keep


def test_config_kind_from_its_data_set(tiny_config_path):
    assert subject_kind(load_config("configs/vox-256.yaml")) == "face"
    assert subject_kind(load_config("configs/taichi-256.yaml")) == "person"
    assert subject_kind(load_config("configs/mgif-256.yaml")) == "none"
    assert subject_kind(load_config(tiny_config_path)) == "none"


def test_a_config_or_the_flag_says_what_it_animates(tiny_config_path, shared_data, tmp_path, capsys):
    from animate.cli import main

    text = Path(tiny_config_path).read_text()
    assert "subject_kind" not in text
    own = tmp_path / "own.yaml"  # a user's own config saying what its frames show
    own.write_text(text.replace("dataset_params:\n", "dataset_params:\n  subject_kind: person\n", 1))
    assert subject_kind(load_config(own)) == "person"
    assert subject_kind(load_config(own), "face") == "face"  # --subject-kind overrides the config
    out = tmp_path / "out.mp4"
    code = main(["animate", "--config", str(tiny_config_path), "--random-init", "--crop", "auto", "--source",
                 str(shared_data / "face_source_a.jpg"), "--driving", str(shared_data / "face_talk_a.mp4"), "--out",
                 str(out)])
    assert code == 2 and "--crop auto: no subject detector for a 'none' config" in capsys.readouterr().err
    assert not out.exists()


def test_paste_back_keeps_the_outside_and_leaves_no_seam(shared_data):
    source = even_frame(read_image(shared_data / "face_source_e.jpg"))  # 577 wide: padded to 578
    assert source.shape == (880, 578, 3)
    box = (150, 140, 450, 440)
    crop = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    out = paste_back(source, crop, box)
    keep = outside(source.shape[:2], box)
    assert np.array_equal(out[keep], source[keep])  # bit for bit
    # the difference image fades to 0 at the box edge: its step across the edge is no larger than the
    # mask's own step there times the largest difference, plus rounding (a hard paste steps by up to 255)
    diff = out.astype(np.int32) - source.astype(np.int32)
    mask = feather_mask(box, source.shape[1], source.shape[0])
    edge_weight = float(mask[0, mask.shape[1] // 2])  # outermost row's weight, 0.5/feather smoothstepped
    x0, y0, x1, y1 = box
    steps = np.abs(np.concatenate([diff[y0, x0:x1] - diff[y0 - 1, x0:x1], diff[y1 - 1, x0:x1] - diff[y1, x0:x1],
                                   diff[y0:y1, x0] - diff[y0:y1, x0 - 1], diff[y0:y1, x1 - 1] - diff[y0:y1, x1]]))
    assert steps.max() <= edge_weight * 255 + 1 and edge_weight < 0.01
    grad = np.abs(np.diff(mask, axis=1)).max()  # the blend's own largest step inside the box
    inner = np.abs(np.diff(diff[y0:y1, x0:x1], axis=1)).max()
    assert steps.max() <= inner and grad < 0.1


def test_subpixel_crop_is_exact_on_whole_pixels_and_interpolates_between():
    frame = np.random.default_rng(0).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    assert np.array_equal(crop_subpixel(frame, np.array([10, 5, 30, 25]), (20, 20)), frame[5:25, 10:30])
    ramp = np.repeat(np.repeat(np.arange(0, 200, 4, dtype=np.uint8)[None, :, None], 40, 0), 3, 2)  # 4 per column
    half = crop_subpixel(ramp, np.array([10.5, 5, 30.5, 25]), (20, 20)).astype(int)
    assert np.array_equal(half[:, :, 0], np.tile(np.arange(42, 122, 4), (20, 1)))  # half a pixel on: +2
    shrunk = crop_subpixel(ramp, np.array([10, 5, 30, 25]), (10, 10)).astype(int)  # pixel u samples x = 10.5 + 2u
    assert np.abs(shrunk[2:-2, 2:-2, 0] - (42 + 8 * np.arange(2, 8))).max() <= 1


def test_mask_ramps_only_on_sides_inside_the_frame():
    mask = feather_mask((0, 10, 100, 110), 100, 200)  # touches the left and right frame borders
    assert mask.shape == (100, 100)
    assert np.all(mask[50, :] == 1) and mask[0, 50] < 0.01 and mask[-1, 50] < 0.01
    assert np.all(np.diff(mask[:10, 50]) > 0) and np.all(mask[10:90, 50] == 1)  # 10-pixel ramps


def test_two_faces_pick_the_subject_asked_for(shared_data):
    image = read_image(shared_data / "faces_two.jpg")
    boxes = subject_detector("face").detect(image)
    assert len(boxes) == 2
    left, right = sorted(boxes[:, :4].tolist())
    assert pick_subject(boxes, 0, "f").tolist() == left and pick_subject(boxes, 1, "f").tolist() == right
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (left, right)]
    assert pick_subject(boxes, None, "f").tolist() == [left, right][int(np.argmax(areas))]
    with pytest.raises(AnimatorError, match=r"f: --subject 2: 2 found"):
        pick_subject(boxes, 2, "f")


def test_crop_box_follows_the_subject_on_every_frame(shared_data):
    """A face moving in a tall 720×1280 frame: the smoothed crop's centre stays within 10% of each detection."""
    driving = read_frames(shared_data / "face_desk_portrait.mp4", 90)
    detector = subject_detector("face")
    plan = plan_crops(read_image(shared_data / "face_source_d.jpg"), driving, detector, "face", smooth=3.0)
    assert plan.driving_found.sum() >= 25 and len(plan.driving_boxes) == 90
    for t in np.flatnonzero(plan.driving_found):
        det, crop = plan.driving_subject[t], plan.driving_boxes[t]
        side = det[2] - det[0]
        centre_error = np.abs((det[:2] + det[2:]) / 2 - (crop[:2] + crop[2:]) / 2)
        assert np.all(centre_error <= 0.1 * side), (t, det, crop)  # (a crop pinned at a frame edge may not be)
        assert np.isclose(crop[2] - crop[0], crop[3] - crop[1])  # square, as the training clips


@pytest.mark.parametrize("source_name", ["face_source_e.jpg", "face_desk_portrait.mp4"])
def test_auto_crop_render_full_size_and_untouched_outside(source_name, face_animator, shared_data):
    """A large portrait, and a small face in a tall frame: output = source size, outside the box bit-exact."""
    path = shared_data / source_name
    source = read_image(path) if path.suffix == ".jpg" else next(iter_frames(path, 0, 1))
    driving = read_frames(shared_data / "face_talk_a.mp4", 6)
    plan = plan_crops(source, driving, subject_detector("face"), "face", smooth=3.0)
    frames = list(render(face_animator, source, driving, plan=plan))
    full = even_frame(source)
    keep = outside(full.shape[:2], plan.source_box)
    assert len(frames) == 6 and keep.mean() > 0.3
    for frame in frames:
        assert frame.shape == full.shape and frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0
        assert np.array_equal(frame[keep], full[keep])
    x0, y0, x1, y1 = plan.source_box
    assert not np.array_equal(frames[0][y0:y1, x0:x1], full[y0:y1, x0:x1])  # the subject was replaced
    # --output-size bounds the pasted-back frame, keeping the source's aspect (it was ignored: the source's size)
    bounded = list(render(face_animator, source, driving[:2], plan=plan, output_size=(200, 200)))
    h, w = full.shape[:2]
    expected = (200, int(w * 200 / h) // 2 * 2) if h >= w else (int(h * 200 / w) // 2 * 2, 200)
    assert [f.shape for f in bounded] == [(*expected, 3)] * 2


def test_a_pasted_back_frame_fits_its_bound_with_the_box_scaled():
    """fit_frame: a 48 MP photo's frame shrinks to MAX_SIDE on its longer side by default (it was a 8000×6000 video);
    a bound fits the frame inside it, even sizes; the box follows, still touching the borders it touched."""
    photo = np.zeros((6000, 8000, 3), np.uint8)
    frame, box = fit_frame(photo, (2000, 0, 5000, 3000))
    assert frame.shape == (MAX_SIDE * 3 // 4, MAX_SIDE, 3) and box.tolist() == [960, 0, 2400, 1440]
    frame, box = fit_frame(np.zeros((501, 377, 3), np.uint8), (0, 101, 377, 478), (100, 300))
    assert frame.shape == (100, 74, 3) and box.tolist() == [0, 20, 74, 95]
    small = np.zeros((500, 376, 3), np.uint8)
    frame, box = fit_frame(small, (10, 20, 110, 120))  # within MAX_SIDE: the frame itself
    assert frame is small and box.tolist() == [10, 20, 110, 120]


def test_cli_auto_crop_encoded_output_and_side_by_side(tmp_path_factory, tiny_config_path, shared_data, tmp_path,
                                                       capsys):
    config = tiny_config(tmp_path_factory, tiny_config_path, "data/vox-tiny")
    clip = write_video(tmp_path / "talk.mp4", read_frames(shared_data / "face_talk_b.mp4", 8), 30)
    out = tmp_path / "pasted.mp4"
    code = main(["animate", "--config", str(config), "--random-init", "--source", str(shared_data / "face_source_d.jpg"),
                 "--driving", str(clip), "--out", str(out), "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert "auto-crop: face detector" in stdout and "WARNING: --random-init" in stdout
    source = even_frame(read_image(shared_data / "face_source_d.jpg"))  # 375×500 → 376×500
    frames = read_frames(out)
    assert frames.shape == (8, 500, 376, 3)
    box = plan_crops(source, read_frames(clip), subject_detector("face"), "face", smooth=3.0).source_box
    keep = outside(source.shape[:2], box)
    keep[:, -8:] = False  # the padded column and x264's last macroblock column
    err_px = np.abs(frames[:, keep].astype(int) - source[keep].astype(int))
    assert err_px.mean() < 2.0 and np.percentile(err_px, 99) <= 12  # x264 rounding, not the subject's motion
    code = main(["animate", "--config", str(config), "--random-init", "--source", str(shared_data / "faces_two.jpg"),
                 "--driving", str(clip), "--out", str(tmp_path / "sbs.mp4"), "--quiet", "--layout", "side-by-side",
                 "--subject", "1"])
    assert code == 0, capsys.readouterr().err
    info = probe_video(tmp_path / "sbs.mp4")
    assert info.height == 512 or info.height == 660  # source height, at most 512, even
    assert info.width > 2 * info.height


def test_no_face_is_one_clear_line_naming_the_file(tmp_path_factory, tiny_config_path, shared_data, tmp_path,
                                                   capsys):
    from PIL import Image

    config = tiny_config(tmp_path_factory, tiny_config_path, "data/vox-tiny")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(blank)
    clip = write_video(tmp_path / "talk.mp4", read_frames(shared_data / "face_talk_b.mp4", 4), 30)
    out = tmp_path / "none.mp4"
    code = main(["animate", "--config", str(config), "--random-init", "--source", str(blank), "--driving",
                 str(clip), "--out", str(out), "--quiet", "--crop", "auto"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == f"fomm animate: error: {blank}: no subject found (use --crop center to " \
                                    "animate the whole frame)"
    assert not out.exists() and list(tmp_path.glob("*.mp4")) == [clip]


def test_body_clip_person_detector(tmp_path_factory, tiny_config_path, shared_data, tmp_path):
    config = tiny_config(tmp_path_factory, tiny_config_path, "data/taichi-tiny")
    animator = Animator.from_config(config, random_init=True, crop="none", batch_size=4)
    source = shared_data / "body_standing.mp4"
    clip = write_video(tmp_path / "body.mp4", read_frames(source, 6), 25)
    options = AutoCropOptions(kind=subject_kind(load_config(config)), smooth=3.0)
    assert options.kind == "person"
    result = animate_file(animator, source, clip, tmp_path / "body_out.mp4", auto_crop=options, progress=False)
    assert (result.height, result.width) == (1080, 720) and result.num_frames == 6
    assert "person detector hog" in result.notes[0]


def test_batch_job_actor_takes_the_same_options(tmp_path_factory, tiny_config_path, shared_data, tmp_path):
    config = tiny_config(tmp_path_factory, tiny_config_path, "data/vox-tiny")
    clip = write_video(tmp_path / "talk.mp4", read_frames(shared_data / "face_talk_b.mp4", 4), 30)
    actor = AnimatePairs({"config": str(config), "random_init": True, "crop": "auto", "subject": 0, "smooth": 3.0,
                          "batch_size": 4})
    assert actor.animator.smooth == 3.0 and actor.options["auto_crop"].subject == 0
    rows = {"source": np.array([str(shared_data / "faces_two.jpg")], dtype=object),
            "driving": np.array([str(clip)], dtype=object), "output": np.array([str(tmp_path / "o.mp4")], dtype=object)}
    out = actor(rows)
    assert out["status"].tolist() == ["done"], out["error"]
    info = probe_video(tmp_path / "o.mp4")
    assert (info.height, info.width, info.num_frames) == (662, 1126, 4)  # faces_two.jpg is 1126×661: padded to even


@pytest.mark.parametrize(("extra", "problem"), [
    (["--smooth", "-1"], "argument --smooth: must be ≥ 0, got -1"),
    (["--smooth", "nan"], "argument --smooth: must be a finite number, got nan"),
    (["--crop", "auto"], "--crop auto: no subject detector for a 'none' config (use --crop center|pad|none, or say "
                         "what it shows: --subject-kind face|person, or dataset_params.subject_kind)"),
    (["--subject", "1"], "--subject needs --crop auto (got --crop center)"),
])
def test_bad_real_world_options_are_one_line(extra, problem, tiny_config_path, shared_data, tmp_path, capsys):
    out = tmp_path / "o.mp4"
    code = main(["animate", "--config", str(tiny_config_path), "--random-init", "--source",
                 str(shared_data / "face_source_d.jpg"), "--driving", str(shared_data / "face_talk_b.mp4"),
                 "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"fomm animate: error: {problem}"] and not out.exists()
