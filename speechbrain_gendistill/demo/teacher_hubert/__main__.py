"""``python -m speechbrain_gendistill.demo.teacher_hubert hparams/demo/teacher_hubert.yaml --data_folder=... ...``."""

from __future__ import annotations

import sys

from speechbrain_gendistill.demo.teacher_hubert.pretraining import train_hubert


def main(argv: list[str] | None = None) -> None:
    train_hubert(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
