"""Progress output: bars on a terminal, plain periodic lines in a log."""

from __future__ import annotations

import io

from s3fn.progress import LineProgress, Progress


def test_lines_print_counts_percent_and_time_left_without_carriage_returns():
    stream = io.StringIO()
    bar = LineProgress(4, "mapping scene.tif", "tile", interval=0.0, stream=stream)
    for _ in range(4):
        bar.update(1)
    bar.close()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0].startswith("mapping scene.tif: 1/4 tile (25%), ") and "left" in lines[0]
    assert lines[-1].startswith("mapping scene.tif: 4/4 tile (100%), ")
    assert len(lines) == 5  # one per update, one when closed (a second close prints nothing)


def test_lines_wait_for_the_interval():
    stream = io.StringIO()
    bar = LineProgress(None, "cutting windows", "image", interval=3600.0, stream=stream)
    for _ in range(10):
        bar.update(1)
    assert stream.getvalue() == ""
    bar.set_postfix_str("val_loss 0.2")
    bar.close()
    assert stream.getvalue() == "cutting windows: 10 image, 0s  val_loss 0.2\n"


def test_progress_picks_lines_off_a_terminal_and_nothing_when_quiet(capsys):
    assert isinstance(Progress(lines=True).bar(3, "x"), LineProgress)
    assert not isinstance(Progress(quiet=True, lines=True).bar(3, "x"), LineProgress)
    items = list(Progress(lines=True, interval=0.0).each([1, 2, 3], "reading", "cube"))
    assert items == [1, 2, 3]
    assert "reading: 3/3 cube (100%)" in capsys.readouterr().err


def test_embedding_descriptions_prints_lines_in_a_log(capsys):
    """`s3fn train` embeds the descriptions through a bar it renames; in a log that bar is a
    LineProgress, which must take the rename too."""
    from s3fn.semantics import Descriptions
    from s3fn.semantics.class_embeddings import encode

    descriptions = Descriptions(
        {"grass": ["Green leafy grass."], "asphalt": ["Dark road surface of bitumen."]}
    )
    embeddings, _ = encode(descriptions, ["asphalt", "grass"], Progress(lines=True, interval=0.0))
    assert embeddings.shape[0] == 2
    assert "embedding descriptions: 2/2 class (100%)" in capsys.readouterr().err
