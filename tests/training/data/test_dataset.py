"""Reading image files: through Python's `open`, so that an audit hook sees every image a process
reads, with the same pixels and errors as `cv2.imread`."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from training.data.dataset import read_image

HOOKED = """
import sys
opened = []
sys.addaudithook(lambda event, args: event == "open" and opened.append(args[0]))
from training.data.dataset import read_image
read_image(sys.argv[1], 8)
print(sys.argv[1] in opened)
"""


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_read_image_gives_cv2_imread_pixels_as_rgb(tmp_path, suffix):
    path = str(tmp_path / f"part{suffix}")
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 255, (6, 10, 3), dtype=np.uint8))
    expected = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    # the pixels are the ones cv2.imread decodes, in RGB order
    assert np.array_equal(read_image(path, None), expected)
    # a size resizes to size x size, a pair to (height, width)
    assert read_image(path, 4).shape == (4, 4, 3) and read_image(path, (3, 5)).shape == (3, 5, 3)


def test_read_image_is_seen_by_an_audit_hook(tmp_path):
    path = tmp_path / "part.png"
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))
    # the file goes through Python's open: a process's audit hook sees it (cv2.imread's C read would not)
    run = subprocess.run([sys.executable, "-c", HOOKED, str(path)], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "True"


@pytest.mark.parametrize("content", [None, b"", b"not an image"], ids=["missing", "empty", "garbage"])
def test_read_image_names_a_file_it_cannot_read(tmp_path, content):
    path = tmp_path / "broken.png"
    if content is not None:
        path.write_bytes(content)
    # a missing or undecodable file is one FileNotFoundError naming the file
    with pytest.raises(FileNotFoundError, match="cannot read image .*broken.png"):
        read_image(str(path), 8)
