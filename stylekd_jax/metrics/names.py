"""Metric names as configs and the command line spell them: fid50k, kid10k, fdvgg2k, ppl_wend,
ppl_wfull, ppl_wend_stylekd, psnr, consistency (the digits: how many samples)."""

import argparse
import re


def parse_metrics(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    for name in names:
        if not re.fullmatch(r"(fid|kid|fdvgg)\d+k?|ppl_w(end|full)(_stylekd)?|psnr|consistency", name):
            raise argparse.ArgumentTypeError(
                f"unknown metric {name!r}: use fid50k, kid50k, fdvgg2k, ppl_wend, ppl_wfull, "
                f"ppl_wend_stylekd, psnr, consistency (see --help)")
    return names


def sample_count(name: str) -> int:
    digits = re.search(r"\d+k?", name).group()
    return int(digits[:-1]) * 1000 if digits.endswith("k") else int(digits)
