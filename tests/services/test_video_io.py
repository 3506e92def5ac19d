"""services.video_read / video_write: probing, decoding (rotation, errors), atomic writing with audio, image sniffing."""

from __future__ import annotations

import struct
import zlib

import av
import numpy as np
import pytest
from PIL import Image

from services.image_read import ImageError, VideoError, read_image
from services.video_read import iter_frames, iter_frames_timed, probe_video, read_frames, strip_frames
from services.video_write import VideoWriter, write_video


def test_probe_real_video(shared_data):
    info = probe_video(shared_data / "face_talk_b.mp4")
    assert (info.width, info.height, info.num_frames, info.has_audio, info.rotation) == (480, 480, 216, True, 0)
    assert info.fps == pytest.approx(30.0)
    assert info.duration == pytest.approx(216 / 30, abs=0.05)
    cuts = probe_video(shared_data / "multi_scene_cuts.mp4")
    assert cuts.fps == pytest.approx(29.97) and cuts.num_frames == 275


def test_read_frames_first_n_and_window(shared_data):
    path = shared_data / "face_talk_d.mp4"
    frames = read_frames(path, max_frames=6)  # T×H×W×3
    assert frames.shape == (6, 412, 410, 3) and frames.dtype == np.uint8
    window = np.stack(list(iter_frames(path, start=2, stop=5)))
    np.testing.assert_array_equal(window, frames[2:5])


def test_a_folder_of_frames_reads_as_a_video_of_its_frames_in_name_order(tmp_path):
    """The original FOMM's png datasets keep a clip as a folder of frames (0000000.png, …): read at 25 fps."""
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 12, 16, 3), dtype=np.uint8)  # T×H×W×3
    clip = tmp_path / "id1#a#1.mp4"
    clip.mkdir()
    for i in (3, 0, 4, 1, 2):  # written out of order: read in name order
        Image.fromarray(frames[i]).save(clip / f"{i:07d}.png")
    (clip / ".DS_Store").write_bytes(b"x")
    info = probe_video(clip)
    assert (info.width, info.height, info.num_frames, info.fps, info.has_audio) == (16, 12, 5, 25.0, False)
    np.testing.assert_array_equal(read_frames(clip), frames)
    np.testing.assert_array_equal(np.stack(list(iter_frames(clip, start=1, stop=3))), frames[1:3])
    Image.fromarray(frames[0][:6]).save(clip / "0000005.png")  # a frame of another size
    with pytest.raises(VideoError, match=r"frame 0000005.png is 16×6, the first 16×12$"):
        read_frames(clip)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match=r"empty: a folder without .png or .jpg frames"):
        probe_video(tmp_path / "empty")


def test_an_image_of_square_frames_side_by_side_reads_as_a_video_of_them_and_other_pictures_as_none(tmp_path,
                                                                                                 monkeypatch):
    """The original FOMM's one-image clips (its BAIR set): a .png/.jpg k·H wide is k H×H frames at 25 fps; a square
    or 3:2 picture is no such video; a strip its EXIF orientation turns is refused, naming the file."""
    frames = np.random.default_rng(2).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate(list(frames), axis=1)).save(tmp_path / "clip.png")
    info = probe_video(tmp_path / "clip.png")
    assert (info.num_frames, info.width, info.height, info.fps, info.has_audio) == (5, 16, 16, 25.0, False)
    assert np.array_equal(read_frames(tmp_path / "clip.png"), frames)
    assert [round(t * 25) for t, _ in iter_frames_timed(tmp_path / "clip.png", 1, 3)] == [1, 2]
    assert np.array_equal(np.stack(list(iter_frames(tmp_path / "clip.png", 1, 3))), frames[1:3])
    head = (tmp_path / "clip.png").read_bytes()[:100]  # the header alone, as a listing on S3 reads it
    assert strip_frames("s3://b/clip.png", head) == (5, 16) and strip_frames(tmp_path / "clip.png") == (5, 16)
    for name, size in (("photo.png", (16, 16)), ("wide.jpg", (48, 32)), ("clip.mp4", (80, 16))):
        Image.new("RGB", size).save(tmp_path / name, format="PNG")
        assert strip_frames(tmp_path / name) is None
    bomb, ihdr = tmp_path / "bomb.png", b"IHDR" + struct.pack(">IIBBBBB", 5_000_000, 100_000, 8, 2, 0, 0, 0)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) +
                     struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))  # no pixels at all
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 178_956_970)  # Pillow's own default, as a fresh process has it
    assert strip_frames(bomb) == (50, 100_000)  # 50 frames of 100,000²: Pillow's bomb check raised, naming no file
    with pytest.raises(VideoError, match=r"bomb.png: .*(decompression bomb|damaged)"):
        read_frames(bomb)
    turned = Image.fromarray(np.concatenate(list(frames), axis=1))
    exif = turned.getexif()
    exif[0x0112] = 6  # shown turned 90°: 16×80
    turned.save(tmp_path / "turned.jpg", exif=exif)
    with pytest.raises(VideoError, match=r"turned.jpg: 16×80 as shown, not 5 square frames side by side"):
        read_frames(tmp_path / "turned.jpg")


def test_round_trip_keeps_content_and_fps(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (5, 4, 4, 3), dtype=np.uint8), 8, axis=1).repeat(8, axis=2)  # 5×32×32×3
    out = write_video(tmp_path / "clip 12:00:01.mp4", frames, fps=12.5)  # a colon: FFmpeg read "clip" as a protocol
    info = probe_video(out)
    assert (info.num_frames, info.width, info.height, info.has_audio) == (5, 32, 32, False)
    assert info.fps == pytest.approx(12.5)
    back = read_frames(out)
    assert np.abs(back.astype(int) - frames).mean() < 6  # lossy, but close (crf 18)


def test_odd_sizes_are_padded_to_even(tmp_path):
    out = write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 35, 3), np.uint8), fps=10)
    assert (probe_video(out).height, probe_video(out).width) == (34, 36)


def test_expected_frame_count_catches_a_short_video(tmp_path):
    """iter_frames(expected=N): one frame of slack below N (a trailing empty packet), then a clear error."""
    out = write_video(tmp_path / "six.mp4", np.zeros((6, 16, 16, 3), np.uint8), fps=10)
    assert len(list(iter_frames(out, expected=7))) == 6
    with pytest.raises(VideoError, match=r"six.mp4: truncated or corrupt: decoded 6 of 8 frames"):
        list(iter_frames(out, expected=8))


def test_rotation_metadata_is_applied(tmp_path):
    path = tmp_path / "rotated.mp4"
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :16] = 255  # a white band on the left of the stored frame
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
    stream.set_display_rotation(90)  # display: turn 90° counter-clockwise
    for _ in range(3):
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    info = probe_video(path)
    assert (info.rotation, info.width, info.height) == (90, 32, 64)
    shown = read_frames(path, 1)[0]  # 64×32: the left band is now at the bottom
    assert shown.shape == (64, 32, 3)
    assert shown[-16:].mean() > 200 and shown[:40].mean() < 30


def test_audio_is_copied_and_trimmed(tmp_path, shared_data):
    src = shared_data / "face_talk_a.mp4"
    frames = read_frames(src, 25)
    out = write_video(tmp_path / "with_audio.mp4", frames, fps=25, audio_from=src)
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac"
        seconds = float(audio.duration * audio.time_base)
    assert probe_video(out).has_audio
    assert seconds == pytest.approx(1.0, abs=0.06)  # 25 frames at 25 fps


def test_audio_from_a_silent_video_gives_no_audio(tmp_path, shared_data):
    out = write_video(tmp_path / "silent.mp4", np.zeros((3, 16, 16, 3), np.uint8), fps=25,
                      audio_from=shared_data / "face_desk_portrait.mp4")
    assert not probe_video(out).has_audio


def test_a_gif_keeps_every_frame_its_colours_size_and_timing_and_takes_no_audio(tmp_path, shared_data):
    """An animated GIF: each frame's own palette holds a frame of ≤ 256 colours exactly, odd sizes stay as they are,
    30 fps (3⅓ centiseconds a frame) keeps its times, 120 fps keeps every 3rd frame, and a driving video's audio
    is left out, not a failure."""
    rng = np.random.default_rng(1)
    frames = np.repeat(rng.integers(0, 255, (31, 3, 5, 3), dtype=np.uint8), 11, axis=1).repeat(7, axis=2)[:, :, :-2]
    with VideoWriter(tmp_path / "clip.gif", fps=30, audio_from=shared_data / "face_talk_a.mp4") as writer:
        for frame in frames:  # 33×33, 15 colours each, new colours every frame
            writer.write(frame)
    assert not writer.keeps_audio
    info = probe_video(tmp_path / "clip.gif")
    assert (info.num_frames, info.width, info.height, info.has_audio) == (31, 33, 33, False)
    timed = list(iter_frames_timed(tmp_path / "clip.gif"))
    assert np.array_equal(np.stack([f for _, f in timed]), frames)
    assert [t for t, _ in timed][-1] == pytest.approx(30 / 30, abs=0.005)
    with VideoWriter(tmp_path / "fast.gif", fps=120) as fast:  # a phone's slow-motion driving video
        for frame in frames[:12]:
            fast.write(frame)
    with Image.open(tmp_path / "fast.gif") as shown:  # every frame ≥ 2 hundredths (a browser shows 1 as 10)
        durations = [shown.seek(i) or shown.info["duration"] for i in range(shown.n_frames)]
    assert fast.num_frames == 12 and fast.keep_every == 3 and min(durations) >= 20
    assert abs(sum(durations[:-1]) - 75) <= 5  # 40 fps, in whole hundredths
    assert np.array_equal(read_frames(tmp_path / "fast.gif"), frames[:12:3])  # 40 fps: FFmpeg refused 120
    photo = read_frames(shared_data / "face_talk_a.mp4", 3)  # tens of thousands of colours: 256 chosen per frame
    back = read_frames(write_video(tmp_path / "talk.gif", photo, fps=25))
    assert back.shape == photo.shape and np.abs(back.astype(int) - photo).mean() < 2  # 1.2 measured


def test_webm_is_vp9_with_its_opus_audio_trimmed(tmp_path, shared_data):
    src = shared_data / "face_talk_a.mp4"
    frames = read_frames(src, 25)
    out = write_video(tmp_path / "clip.webm", frames, fps=25, audio_from=src)
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name) == ("vp9", "opus")
        rate = c.streams.audio[0].rate
        samples = sum(f.samples for f in c.decode(c.streams.audio[0]))
    assert samples / rate == pytest.approx(1.0, abs=0.03)  # 25 frames at 25 fps, resampled to Opus's 48 kHz
    back = read_frames(out)
    assert len(back) == 25 and np.abs(back.astype(int) - frames).mean() < 6


def test_writer_is_atomic(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, fps=10) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary is left
    with VideoWriter(target, fps=10) as writer:
        writer.write(np.zeros((16, 16, 3), np.uint8))
        assert not target.exists()  # only the temporary exists while writing
    assert target.exists() and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_a_file_given_the_outputs_name_while_it_is_written_is_never_replaced(tmp_path):
    """An animation's output (`replace=False`): a file that took its name meanwhile (the user's, another run's)
    stays as it is, the error says so in one line, and no temporary is left; replaced before."""
    from services.atomic import MadeMeanwhileError

    target = tmp_path / "out.mp4"
    with pytest.raises(MadeMeanwhileError, match=rf"^{target}: made by something else while this was written; it is "
                                                 r"left as it is, and this output was not kept$"):
        with VideoWriter(target, fps=10, replace=False) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            target.write_bytes(b"the user's own video")
    assert target.read_bytes() == b"the user's own video" and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    target.unlink()
    with VideoWriter(target, fps=10, replace=False) as writer:  # nothing there: written as any output
        writer.write(np.zeros((16, 16, 3), np.uint8))
    assert probe_video(target).num_frames == 1 and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_a_writer_that_cannot_open_leaves_the_existing_file_as_it_was(tmp_path):
    """PyAV refuses the file (no format for its suffix): a VideoError naming it, the user's file untouched."""
    target = tmp_path / "clip.xyz"
    target.write_bytes(b"the user's own file")
    with pytest.raises(VideoError, match=r"clip\.xyz: cannot open for writing"):
        with VideoWriter(target, fps=10) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
    assert target.read_bytes() == b"the user's own file" and [p.name for p in tmp_path.iterdir()] == ["clip.xyz"]


def test_writer_rejects_bad_frames(tmp_path):
    with pytest.raises(VideoError, match="out.mp4: frames must be H×W×3 uint8"):
        with VideoWriter(tmp_path / "out.mp4", fps=10) as writer:
            writer.write(np.zeros((16, 16), np.uint8))
    with pytest.raises(VideoError, match=r"frame 1 is \(8, 8\), expected \(16, 16\)"):
        with VideoWriter(tmp_path / "out.mp4", fps=10) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            writer.write(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("case", ["missing", "empty", "text", "corrupt", "zero_frames"])
def test_bad_videos_raise_clear_errors(case, tmp_path, corrupt_video, zero_frame_video):
    path = {"missing": tmp_path / "nope.mp4", "empty": tmp_path / "empty.mp4", "text": tmp_path / "notes.mp4",
            "corrupt": corrupt_video, "zero_frames": zero_frame_video}[case]
    if case == "empty":
        path.write_bytes(b"")
    if case == "text":
        path.write_text("this is not a video")
    expected = {"missing": "no such file", "empty": "empty file", "text": "not a readable video",
                "corrupt": "truncated or corrupt: decoded 51 of 169 frames", "zero_frames": "zero-frame video"}[case]
    with pytest.raises(VideoError, match=expected) as err:
        list(iter_frames(path))
    assert str(path) in str(err.value)
    if case != "corrupt":  # probing reads the index and one frame only: a cut-off file still probes
        with pytest.raises(VideoError, match=expected):
            probe_video(path)


def test_read_image_sniffs_content_not_extension(shared_data):
    img = read_image(shared_data / "face_source_c.jpg")  # PNG bytes behind a .jpg name
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8


@pytest.mark.parametrize("mode", ["RGBA", "L", "I;16", "P", "LA"])
def test_read_image_modes(mode, tmp_path):
    path = tmp_path / "img.bin"  # no telling extension
    if mode == "I;16":
        Image.fromarray(np.full((4, 5), 65535, np.uint16)).save(path, format="PNG")
    elif mode == "RGBA":
        a = np.zeros((4, 5, 4), np.uint8)
        a[..., 0], a[..., 3] = 255, 255
        a[0, 0, 3] = 0  # one transparent pixel: composited on white
        Image.fromarray(a, "RGBA").save(path, format="PNG")
    else:
        Image.new(mode, (5, 4), 128 if mode != "LA" else (128, 255)).save(path, format="PNG")
    img = read_image(path)
    assert img.shape == (4, 5, 3) and img.dtype == np.uint8
    if mode == "I;16":
        assert img.min() == 255  # 16-bit white stays white (scaled, not clipped)
    if mode == "RGBA":
        assert tuple(img[0, 0]) == (255, 255, 255) and tuple(img[1, 1]) == (255, 0, 0)


def test_a_float_image_reads_as_its_range_and_one_with_nan_or_inf_pixels_is_refused(tmp_path):
    from services.image_read import DamagedImageError

    ramp = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)  # a [0, 1] float image: 1.0 is white
    Image.fromarray(ramp, mode="F").save(tmp_path / "unit.tiff")
    assert np.array_equal(read_image(tmp_path / "unit.tiff")[..., 0], np.floor(ramp * 255 + 0.5).astype(np.uint8))
    Image.fromarray(ramp * 255, mode="F").save(tmp_path / "byte.tiff")  # [0, 255]: 255 is white
    assert read_image(tmp_path / "byte.tiff")[-1, -1, 0] == 255 and read_image(tmp_path / "byte.tiff")[0, 0, 0] == 0
    for bad in (np.nan, np.inf):
        ramp[0, :2] = bad
        Image.fromarray(ramp, mode="F").save(tmp_path / "bad.tiff")
        with pytest.raises(DamagedImageError, match=r"bad.tiff: 2 of its 20 pixels are NaN or inf"):
            read_image(tmp_path / "bad.tiff")


def test_read_image_not_an_image(tmp_path, shared_data):
    with pytest.raises(ImageError, match="face_talk_a.mp4: not a readable image"):
        read_image(shared_data / "face_talk_a.mp4")
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width×height RGB pixels and holds almost none: a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_damaged_or_bomb_image_is_refused_naming_the_file_and_a_200_mp_photo_is_read(tmp_path, shared_data):
    import warnings

    from PIL import Image

    from services.image_read import DamagedImageError

    jpeg = (shared_data / "face_source_a.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(DamagedImageError, match=r"cut.jpg: damaged JPEG image \(image file is truncated"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "bomb.png").write_bytes(_png_header(60_000, 60_000))  # 74 bytes, 10 GB as RGB
    with pytest.raises(DamagedImageError, match=r"bomb.png: image refused: 60000×60000 is 3,600 MP, above the "
                                                r"1,074 MP .*\(a decompression bomb\?\)"):
        read_image(tmp_path / "bomb.png")
    # a 200 MP phone photo's size (16,320×12,240): PIL's own limit refused it, and warned from 89 MP
    Image.new("1", (16_320, 12_240), 1).save(tmp_path / "200mp.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "200mp.png")
    assert image.shape == (12_240, 16_320, 3) and image[::997, ::997].min() == 255


def test_an_image_above_max_pixels_is_read_shrunk_by_a_whole_factor_and_still_turned(tmp_path):
    """read_image(path, max_pixels): the source of an animation (animate.files.SOURCE_PIXELS). A 1,000 MP PNG of 3 MB
    took 24 GB read whole and made float; shrunk as it is read: a JPEG decoded at 1/2 … 1/8 of its size, others
    box-reduced; the EXIF orientation applied to the small image."""
    from PIL import Image

    photo = Image.new("RGB", (4000, 3000), (200, 100, 50))
    exif = photo.getexif()
    exif[0x0112] = 6  # shown turned 90° clockwise
    photo.save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    photo.save(tmp_path / "plain.png")
    turned = read_image(tmp_path / "turned.jpg", max_pixels=1_000_000)  # factor 4: JPEG's 1/4 scale
    assert turned.shape == (1000, 750, 3) and np.abs(turned.astype(int) - (200, 100, 50)).max() <= 3
    assert read_image(tmp_path / "plain.png", max_pixels=1_000_000).shape == (750, 1000, 3)
    assert read_image(tmp_path / "plain.png", max_pixels=12_000_000).shape == (3000, 4000, 3)  # within: whole


def test_an_image_above_max_pixels_in_a_mode_reduce_refuses_is_shrunk_to_its_colours(tmp_path):
    """A palette, 1-bit or 16-bit PNG above max_pixels was refused as "damaged" (Image.reduce: "image has wrong
    mode"); a palette's indices must not be averaged (blue 0 and green 2 would average to red 1)."""
    from PIL import Image

    palette = Image.new("P", (400, 300))
    palette.putpalette([0, 0, 255, 255, 0, 0, 0, 255, 0] + [0] * 759)  # 0 blue, 1 red, 2 green
    palette.putdata([(x + y) % 2 * 2 for y in range(300) for x in range(400)])  # blue and green, checkered
    palette.save(tmp_path / "p.png")
    Image.new("1", (400, 300), 1).save(tmp_path / "bits.png")
    Image.fromarray(np.full((300, 400), 65535 // 2, np.uint16)).save(tmp_path / "deep.png")
    mixed = read_image(tmp_path / "p.png", max_pixels=30_000)  # factor 2: each 2×2 box two blue, two green
    assert mixed.shape == (150, 200, 3) and np.abs(mixed.astype(int) - (0, 128, 128)).max() <= 1
    assert np.array_equal(read_image(tmp_path / "bits.png", max_pixels=30_000), np.full((150, 200, 3), 255))
    assert np.abs(read_image(tmp_path / "deep.png", max_pixels=30_000).astype(int) - 127).max() <= 1  # half of 16 bits


def test_the_video_read_is_the_files_main_stream_not_a_thumbnail_track_before_it(tmp_path):
    """A one-frame MJPEG track (a cover or thumbnail, as some MKVs carry) before the video: the file was refused as
    "one frame only"."""
    import av

    with av.open(str(tmp_path / "cover.mkv"), "w") as out:
        cover, video = out.add_stream("mjpeg", rate=25), out.add_stream("libx264", rate=25)
        cover.width = cover.height = video.width = video.height = 64
        cover.pix_fmt, video.pix_fmt = "yuvj420p", "yuv420p"
        out.mux(cover.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 255, np.uint8)).reformat(
            format="yuvj420p")))
        out.mux(cover.encode())
        for i in range(12):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8))))
        out.mux(video.encode())
    assert probe_video(tmp_path / "cover.mkv").num_frames == 12
    assert np.abs(read_frames(tmp_path / "cover.mkv")[:, 0, 0, 0].astype(int) - np.arange(12) * 20).max() <= 3


def test_a_tiled_heic_photo_is_read_whole_and_rotated_or_refused_without_its_plugin(tmp_path, shared_data, repo_root):
    """iPhones save HEIC photos as grids of tiles: FFmpeg (read_source's fallback) decoded the first tile alone, so a
    256×256 corner of the photo was animated without a word. pillow-heif reads it whole, EXIF orientation applied;
    without it the photo is refused in one line."""
    import os
    import subprocess
    import sys

    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    pillow_heif.register_heif_opener()
    photo = Image.open(shared_data / "face_source_a.jpg")  # 600×704
    exif = photo.getexif()
    exif[0x0112] = 6  # shown turned 90° clockwise, as a phone held upright records it
    photo.save(tmp_path / "IMG_0001.HEIC", quality=95, tile_size=256, exif=exif.tobytes())  # a 3×3 grid
    with av.open(f"file:{tmp_path / 'IMG_0001.HEIC'}") as container:
        assert len(container.streams.video) == 9  # what FFmpeg sees: nine tiles
    image = read_image(tmp_path / "IMG_0001.HEIC")
    expected = np.asarray(photo.transpose(Image.Transpose.ROTATE_270))  # 704×600 → 600×704
    assert image.shape == expected.shape == (600, 704, 3)
    assert np.abs(image.astype(int) - expected.astype(int)).mean() < 2.0  # HEVC at quality 95
    code = ("import sys; sys.modules['pillow_heif'] = None\n"  # as where it is not installed
            "from animate.files import read_source\n"
            f"read_source({str(tmp_path / 'IMG_0001.HEIC')!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(repo_root)})
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1] == (
        f"services.image_read.DamagedImageError: {tmp_path / 'IMG_0001.HEIC'}: a HEIC/HEIF photo in tiles (as phones "
        "save them), which only pillow-heif reads whole: `pip install pillow-heif`, or convert it to JPEG or PNG")
