"""The benchmark command measures and prints its table (tiny geometry, one short length)."""
import re

from emo_model import benchmark


def test_benchmark_prints_a_row_per_audio_length(capsys):
    benchmark.main(["--geometry", "tiny", "--resolution", "32", "--steps", "1", "--seconds", "0.3",
                    "--repeats", "1", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "geometry=tiny resolution=32 steps=1" in out
    row = re.search(r"^\| 0.3 \| 9 \| 2 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (-?\d+) \|$", out, re.M)
    assert row, out
    assert float(row.group(1)) > 0 and float(row.group(2)) > 0
