import subprocess
from pathlib import Path

import av
import pytest

from pipeline.media.command import (
    Progress,
    ProgressParser,
    build_render_command,
    filter_graph,
    output_graphs,
    parse_progress,
    progress_total,
)
from pipeline.media.effects import EffectOptions, VariationParams, expected_duration, sample_variations
from pipeline.media.encoder import Encoder, filter_threads
from pipeline.media.ffmpeg import find_ffmpeg
from pipeline.media.probe import MediaInfo, probe
from tests.clips import make_clip

FF = "/opt/ffmpeg"


def info(*, w=1280, h=720, rotation=0, audio=True, duration=10.0):
    return MediaInfo(
        duration=duration, width=w, height=h, rotation=rotation, fps=30.0, has_audio=audio,
        video_codec="h264", audio_codec="aac" if audio else None, format_name="mp4", size=1,
    )


def variations(n, seed="t"):
    return sample_variations(seed, 0, n, EffectOptions())


def outputs(n, d=Path("/data/out")):
    return [d / f"clip_v{i + 1:02d}.mp4.part" for i in range(n)]


def _output_sections(args):
    """Split the argument list after the filter graph into one list per output file."""
    rest = args[args.index("-filter_complex") + 2:]
    sections, current = [], []
    for a in rest:
        current.append(a)
        if a.startswith("file:"):
            sections.append(current)
            current = []
    assert current == []
    return sections


# --- argument list -------------------------------------------------------------------------


def test_command_shape_with_audio():
    vs = variations(3)
    args = build_render_command(FF, Path("/data/up/in put.mov"), info(), vs, outputs(3))
    assert all(isinstance(a, str) for a in args)
    assert args[0] == FF
    assert args.count("-i") == 1
    assert args[args.index("-i") + 1] == "file:/data/up/in put.mov"
    for flag in ("-y", "-nostats"):
        assert flag in args
    assert "-nostdin" not in args  # the runner stops FFmpeg by writing `q` to stdin
    assert args[args.index("-loglevel") + 1] == "error"
    assert args[args.index("-progress") + 1] == "pipe:1"

    graph = args[args.index("-filter_complex") + 1]
    assert graph == filter_graph(info(), vs)
    assert graph.startswith("[0:V:0]scale=1280:720,split=3[vs0][vs1][vs2];")
    # Holes in the sound become silence once, before it is split (command.FILL_GAPS).
    assert "[0:a:0]aresample=async=1,asplit=3[as0][as1][as2]" in graph

    sections = _output_sections(args)
    assert len(sections) == 3
    for i, s in enumerate(sections):
        assert s[-1] == f"file:/data/out/clip_v{i + 1:02d}.mp4.part"
        assert s[s.index("-f") + 1] == "mp4"
        assert [s[j + 1] for j, a in enumerate(s) if a == "-map"] == [f"[v{i}]", f"[a{i}]"]
        assert s[s.index("-c:v") + 1] == "libx264"
        assert s[s.index("-preset") + 1] == "ultrafast"
        assert s[s.index("-pix_fmt") + 1] == "yuv420p"
        assert s[s.index("-c:a") + 1] == "aac"
        assert s[s.index("-b:a") + 1] == "128k"
        assert s[s.index("-map_metadata") + 1] == "-1"
        assert s[s.index("-movflags") + 1] == "+faststart"
        assert "-threads" not in s


def test_command_without_audio_maps_no_audio():
    vs = variations(2)
    args = build_render_command(FF, Path("in.mp4"), info(audio=False), vs, outputs(2))
    graph = args[args.index("-filter_complex") + 1]
    assert "asplit" not in graph and "[0:a" not in graph and "atempo" not in graph
    for i, s in enumerate(_output_sections(args)):
        assert [s[j + 1] for j, a in enumerate(s) if a == "-map"] == [f"[v{i}]"]
        assert "-c:a" not in s


def test_single_output_needs_no_split():
    vs = variations(1)
    args = build_render_command(FF, Path("in.mp4"), info(), vs, outputs(1),
                                encoder=Encoder(preset="veryfast", threads=2))
    graph = args[args.index("-filter_complex") + 1]
    assert "split" not in graph
    assert graph.startswith("[0:V:0]") and "[0:a:0]" in graph
    (s,) = _output_sections(args)
    assert s[s.index("-preset") + 1] == "veryfast"
    assert s[s.index("-threads") + 1] == "2"


def test_one_filter_thread_when_the_encoders_fill_the_cores():
    assert [filter_threads(n, cores=2) for n in (1, 2, 5, 20)] == [None, 1, 1, 1]
    assert [filter_threads(n, cores=4) for n in (2, 3, 4)] == [None, None, 1]
    args = build_render_command(FF, Path("in.mp4"), info(), variations(3), outputs(3),
                                encoder=Encoder(threads=1, filter_threads=1))
    # FFmpeg takes it wherever it stands; with every output, the manifest records it.
    for s in _output_sections(args):
        assert s[s.index("-filter_complex_threads") + 1] == "1"
    default = build_render_command(FF, Path("in.mp4"), info(), variations(3), outputs(3))
    assert "-filter_complex_threads" not in default


def test_rotated_source_filters_at_display_size():
    v = [VariationParams(zoom=1.05)]
    graph = filter_graph(info(w=1920, h=1080, rotation=90), v)
    assert "scale=1080:1920:" in graph


def test_command_rejects_mismatch_and_bad_preset():
    with pytest.raises(ValueError):
        build_render_command(FF, Path("in.mp4"), info(), variations(2), outputs(3))
    with pytest.raises(ValueError):
        Encoder(preset="; rm -rf /")
    with pytest.raises(ValueError):
        filter_graph(info(), [])


def test_output_graphs_one_per_variation():
    vs = variations(4)
    texts = output_graphs(info(), vs)
    assert len(texts) == 4
    assert all(t.startswith("video: ") and " | audio: " in t for t in texts)
    assert all(" | audio: " not in t for t in output_graphs(info(audio=False), vs))


# --- progress ------------------------------------------------------------------------------

BLOCKS = """\
frame=0
fps=0.00
out_time_us=N/A
out_time_ms=N/A
out_time=N/A
speed=N/A
progress=continue
frame=75
fps=30.1
out_time_us=2500000
out_time_ms=2500000
out_time=00:00:02.500000
speed=1.52x
progress=continue
frame=150
out_time_us=-23000
out_time=-00:00:00.023000
progress=continue
frame=309
out_time_us=10300000
speed=1.6x
progress=end
"""


def test_parse_progress_lines():
    ups = list(parse_progress(BLOCKS.splitlines(), total=10.3))
    assert [u.done for u in ups] == [False, False, False, True]
    assert ups[0] == Progress(out_time=0.0, percent=0.0, done=False, frame=0, speed=None)
    assert ups[1].out_time == 2.5
    assert ups[1].percent == pytest.approx(100 * 2.5 / 10.3, abs=0.01)
    assert ups[1].speed == 1.52 and ups[1].frame == 75
    assert ups[2].percent == ups[1].percent  # never goes back
    assert ups[3].percent == 100.0


def test_progress_parser_handles_split_chunks():
    data = BLOCKS.encode()
    parser = ProgressParser(total=10.3)
    got = []
    for i in range(0, len(data), 7):
        got += parser.feed(data[i:i + 7])
    assert got == list(parse_progress(BLOCKS.splitlines(), total=10.3))


def test_progress_clamps_at_100_before_end():
    parser = ProgressParser(total=5.0)
    parser.feed_line("out_time_us=6000000")
    assert parser.feed_line("progress=continue").percent == 100.0


def test_progress_total_is_longest_output():
    vs = [VariationParams(speed=1.05), VariationParams(speed=0.95), VariationParams()]
    assert progress_total(10.0, vs) == pytest.approx(10 / 0.95)


# --- real FFmpeg on tiny clips -------------------------------------------------------------


def _render(tmp_path, source, vs):
    src_info = probe(source)
    outs = [tmp_path / f"out_v{i + 1:02d}.mp4.part" for i in range(len(vs))]
    args = build_render_command(find_ffmpeg(), source, src_info, vs, outs, encoder=Encoder(threads=1))
    done = subprocess.run(args, stdin=subprocess.PIPE, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    progress = list(parse_progress(done.stdout.decode().splitlines(),
                                   progress_total(src_info.duration, vs)))
    assert progress and progress[-1].done and progress[-1].percent == 100.0
    return src_info, outs


def test_filter_threads_change_no_byte_of_any_output(tmp_path):
    source = make_clip(tmp_path, seconds=1.0, audio=True)
    vs = sample_variations("threads", 0, 3, EffectOptions.parse("+rotation,+hue"))
    src_info = probe(source)
    files = {}
    for n in (None, 1):
        outs = [tmp_path / f"t{n}_v{i}.mp4" for i in range(len(vs))]
        args = build_render_command(find_ffmpeg(), source, src_info, vs, outs,
                                    encoder=Encoder(threads=1, filter_threads=n))
        subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=60)
        files[n] = [p.read_bytes() for p in outs]
    assert files[None] == files[1]


def _tags(path):
    with av.open(str(path)) as c:
        return dict(c.metadata), [dict(s.metadata) for s in c.streams]


@pytest.mark.parametrize("audio", [True, False])
def test_render_three_outputs(tmp_path, audio):
    source = make_clip(tmp_path, seconds=1.0, audio=audio)
    vs = sample_variations("real", 0, 3, EffectOptions())
    src_info, outs = _render(tmp_path, source, vs)
    for v, out in zip(vs, outs, strict=True):
        got = probe(out)
        assert (got.width, got.height, got.rotation) == (160, 120, 0)
        assert got.video_codec == "h264"
        assert got.has_audio is audio
        assert got.duration == pytest.approx(expected_duration(src_info.duration, v), rel=0.02)
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert outs[0].read_bytes() != outs[1].read_bytes()


def test_taps_add_a_branch_per_output_and_one_for_the_source():
    from pipeline.media import distinct

    vs = variations(2)
    taps = distinct.Taps((1.0, 2.0), (320, 180), (Path("/o/v1.frames"), Path("/o/v2.frames")),
                         Path("/o/src.frames"))
    args = build_render_command(FF, Path("in.mp4"), info(), vs, outputs(2), taps=taps)
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:V:0]scale=1280:720,split=3[vs0][vs1][vs2];")
    for i, p in enumerate(vs):
        # Split off after the variation's own filters: the frames its encoder gets.
        assert f"format=yuv420p,split=2[v{i}][vt{i}];[vt{i}]select=" in graph
        t = distinct.output_times([1.0], p.speed)[0]
        assert f"gte(t\\,{t:.6f})" in graph.split(f"[vt{i}]")[2].split(f"[tap{i}]")[0]
    assert "[vs2]select=" in graph and "scale=320:180:flags=area,format=rgb24[tapsrc]" in graph
    maps = [args[j + 1] for j, a in enumerate(args) if a == "-map"]
    assert maps[-3:] == ["[tap0]", "[tap1]", "[tapsrc]"]
    assert args[-1] == "file:/o/src.frames" and "file:/o/v1.frames" in args
    # Output taps only, no source tap: no extra source branch.
    graph = filter_graph(info(), vs, distinct.Taps((1.0,), (320, 180), taps.outputs))
    assert "split=2[vs0][vs1]" in graph and "[tapsrc]" not in graph
    with pytest.raises(ValueError):
        filter_graph(info(), vs, distinct.Taps((1.0,), (320, 180), taps.outputs[:1]))


@pytest.mark.parametrize("n", [1, 3])
def test_render_taps_source_and_output_frames(tmp_path, n):
    from pipeline.media import distinct

    source = make_clip(tmp_path, seconds=1.0, fps=30)
    src_info = probe(source)
    vs = sample_variations("tap", 0, n, EffectOptions())
    outs = [tmp_path / f"v{i}.mp4.part" for i in range(n)]
    taps = distinct.Taps.plan(src_info.duration, src_info.fps, 160, 120,
                              [distinct.frames_path(o) for o in outs], tmp_path / "src.frames")
    assert taps.size == (320, 240) and len(taps.times) == 14
    args = build_render_command(find_ffmpeg(), source, src_info, vs, outs, taps=taps)
    done = subprocess.run(args, stdin=subprocess.PIPE, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    # The source's frames are those a separate decode of the source gives, byte for byte.
    separate = subprocess.run(distinct.sample_command(find_ffmpeg(), source, taps.times, taps.size),
                              capture_output=True, check=True).stdout
    assert len(separate) == len(taps.times) * 320 * 240 * 3
    assert taps.source.read_bytes() == separate
    # Each output's frames are its own (after its effects), before encoding: PDQ of the
    # encoded file's frames at the same moments is a few bits away.
    for v, out, tap in zip(vs, outs, taps.outputs, strict=True):
        tapped = distinct.frame_hashes(distinct.read_frames_file(tap, taps.size))
        raw = subprocess.run(distinct.sample_command(
            find_ffmpeg(), out, distinct.output_times(taps.times, v.speed), taps.size),
            capture_output=True, check=True).stdout
        encoded = distinct.frame_hashes(distinct.read_frames(raw, taps.size))
        assert len(tapped) == len(encoded) == len(taps.times)
        assert max(distinct.frame_distance(a, b) for a, b in zip(tapped, encoded, strict=True)) <= 10
    # The outputs are the same as without the taps.
    plain = [tmp_path / f"p{i}.mp4.part" for i in range(n)]
    subprocess.run(build_render_command(find_ffmpeg(), source, src_info, vs, plain),
                   stdin=subprocess.PIPE, capture_output=True, check=True, timeout=60)
    assert [o.read_bytes() for o in outs] == [p.read_bytes() for p in plain]


def test_rotated_source_gives_upright_output_without_metadata(tmp_path):
    source = make_clip(tmp_path, "phone.mov", size="160x120", rotation=90)
    src = probe(source)
    assert (src.width, src.height, src.rotation) == (160, 120, 90)
    assert _tags(source)[0].get("title") == "rotated test clip"

    vs = [VariationParams(zoom=1.06, rotation_deg=0.5, mirror=True, speed=1.04, noise=3,
                          noise_seed=7),
          VariationParams()]
    _, outs = _render(tmp_path, source, vs)
    for v, out in zip(vs, outs, strict=True):
        got = probe(out)
        # Upright: coded at the source's display size, no rotation flag left.
        assert (got.width, got.height, got.rotation) == (120, 160, 0)
        assert got.duration == pytest.approx(expected_duration(src.duration, v), rel=0.02)
        container_tags, stream_tags = _tags(out)
        assert "title" not in container_tags and "comment" not in container_tags
        assert not any("Lavf" in str(t) for t in container_tags.values())
        for tags in stream_tags:
            assert not any("Lavc" in str(t) for t in tags.values())
        assert b"x264 - core" not in out.read_bytes()  # encoder settings SEI removed


def test_speed_change_keeps_every_frame(tmp_path):
    source = make_clip(tmp_path, seconds=1.0, fps=15, audio=False)
    vs = [VariationParams(speed=1.06), VariationParams(speed=0.95)]
    _, outs = _render(tmp_path, source, vs)
    for out in outs:
        with av.open(str(out)) as c:
            frames = list(c.decode(video=0))
        assert len(frames) == 15
        gaps = {round(float(b.time - a.time), 4) for a, b in zip(frames, frames[1:], strict=False)}
        assert max(gaps) - min(gaps) < 0.001  # evenly spaced


@pytest.mark.parametrize("size, rotation", [("160x120", None), ("96x160", None),
                                            ("160x96", 90)])
def test_rotation_never_shows_corners(tmp_path, size, rotation):
    source = make_clip(tmp_path, seconds=0.2, size=size, audio=False, rotation=rotation,
                       pattern="color=white")
    vs = [VariationParams(zoom=1.0, rotation_deg=0.8, pan_x=0.0, pan_y=1.0),
          VariationParams(zoom=1.02, rotation_deg=-0.8, pan_x=1.0, pan_y=0.0, mirror=True)]
    _, outs = _render(tmp_path, source, vs)
    for out in outs:
        with av.open(str(out)) as c:
            frame = next(c.decode(video=0)).to_ndarray(format="gray")
        h, w = frame.shape
        corners = [frame[0, 0], frame[0, w - 1], frame[h - 1, 0], frame[h - 1, w - 1]]
        assert min(int(v) for v in corners) > 200, corners
