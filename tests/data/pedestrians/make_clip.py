"""Cut ``vtest_cut.mp4`` from OpenCV's sample ``vtest.avi`` (see ``tests/data/SOURCES.md``).

    python tests/data/pedestrians/make_clip.py /path/to/vtest.avi

Frames ``FIRST`` .. ``FIRST + FRAMES - 1`` of the sample, the region ``REGION`` (x, y, w, h)
where the pedestrians walk, at the source's own scale (people stay 60-110 px tall, tall enough
for the HOG detector), H.264 at 10 fps.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av

FIRST, FRAMES = 0, 16
REGION = (240, 128, 384, 256)
OUT = Path(__file__).resolve().parent / "vtest_cut.mp4"


def main(source: str) -> None:
    x, y, w, h = REGION
    with av.open(source) as src, av.open(str(OUT), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, 10)
        stream.options = {"crf": "26", "preset": "slow"}
        for index, frame in enumerate(src.decode(video=0)):
            if index >= FIRST + FRAMES:
                break
            if index < FIRST:
                continue
            cut = frame.to_ndarray(format="rgb24")[y : y + h, x : x + w]
            encoded = av.VideoFrame.from_ndarray(cut, format="rgb24")
            encoded.pts = index - FIRST
            out.mux(stream.encode(encoded))
        out.mux(stream.encode(None))
    print(f"{OUT}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
